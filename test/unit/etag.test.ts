import { describe, expect, it } from 'vitest';
import { ifMatchPasses, strongEtag } from '../../server/shared/etag.js';

describe('strongEtag', () => {
  it('is a quoted tag that follows the representation', () => {
    const tag = strongEtag({ id: 1, name: 'a' });
    expect(tag).toMatch(/^"[A-Za-z0-9_-]{22}"$/);
    expect(strongEtag({ id: 1, name: 'a' })).toBe(tag);
    expect(strongEtag({ id: 1, name: 'b' })).not.toBe(tag);
  });
});

describe('ifMatchPasses', () => {
  const current = '"abc"';
  it.each([
    [undefined, true],
    ['*', true],
    [' * ', true],
    ['"abc"', true],
    ['"x", "abc"', true],
    ['"x","abc" ', true],
    ['W/"abc"', false],
    ['"abcd"', false],
    ['"ab"', false],
    ['"x", W/"abc"', false],
  ])('%j → %s', (header, passes) => {
    expect(ifMatchPasses(header, current)).toBe(passes);
  });
});
