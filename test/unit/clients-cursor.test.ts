import { describe, expect, it } from 'vitest';
import { decodeCursor, encodeCursor } from '../../server/clients/clients.cursor.js';
import { ApiError } from '../../server/shared/errors.js';

const position = { at: '2026-03-01T12:00:00.000987Z', id: '497f6eca-6276-4993-bfeb-53cbbbba6f08' };

describe('list cursors', () => {
  it('round-trip the position exactly, microseconds included, as base64url', () => {
    const cursor = encodeCursor(position);
    expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeCursor(cursor)).toEqual(position);
  });

  const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  it.each([
    ['not JSON', Buffer.from('nope').toString('base64url')],
    ['an object', encode(position)],
    ['three parts', encode([position.at, position.id, 1])],
    ['milliseconds only', encode(['2026-03-01T12:00:00.000Z', position.id])],
    ['a day that does not exist', encode(['2026-02-30T12:00:00.000000Z', position.id])],
    ['year zero', encode(['0000-01-01T00:00:00.000000Z', position.id])],
    ['an id that is not a UUID', encode([position.at, "1' or '1'='1"])],
    ['a number for the time', encode([1, position.id])],
  ])('refuse %s with a 400 naming cursor', (_label, cursor) => {
    let thrown: unknown;
    try {
      decodeCursor(cursor);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ApiError);
    expect((thrown as ApiError).status).toBe(400);
    expect(Object.keys((thrown as ApiError).details.fields!)).toEqual(['cursor']);
  });
});
