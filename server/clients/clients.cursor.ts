/**
 * The opaque cursor of GET /clients: the position of the last row of a page, base64url-encoded.
 * The position keeps `created_at` to the microsecond, as PostgreSQL stores it: a cursor built from
 * a JS Date (milliseconds) would skip or repeat rows created within the same millisecond.
 */
import { validationFailed } from '../shared/errors.js';
import { parameterMessage } from '../shared/spec-values.js';
import type { ListPosition } from './clients.queries.js';

const CURSOR_ERROR = parameterMessage('listClients', 'cursor');

const POSITION_TIME = /^(?!0000)\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function encodeCursor(position: ListPosition): string {
  return Buffer.from(JSON.stringify([position.createdAt, position.id])).toString('base64url');
}

/** A cursor that this API did not give out is a 400 naming `cursor`, never a database error. */
export function decodeCursor(cursor: string): ListPosition {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw validationFailed({ cursor: CURSOR_ERROR });
  }
  if (Array.isArray(value) && value.length === 2) {
    const [createdAt, id] = value as unknown[];
    if (typeof createdAt === 'string' && typeof id === 'string' && isRealInstant(createdAt) && UUID.test(id)) {
      return { createdAt, id };
    }
  }
  throw validationFailed({ cursor: CURSOR_ERROR });
}

/** The shape alone lets 2026-02-30 through, which PostgreSQL would refuse. */
function isRealInstant(text: string): boolean {
  if (!POSITION_TIME.test(text)) return false;
  const time = Date.parse(text);
  return !Number.isNaN(time) && new Date(time).toISOString().slice(0, 23) === text.slice(0, 23);
}
