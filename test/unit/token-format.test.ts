import { expect, it } from 'vitest';
import { generateToken, hashSecret, parseToken, secretMatches } from '../../server/tokens/token-format.js';

it('mints tokens of the documented shape, base62 only', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const { token, prefix, secret } = generateToken(i % 2 ? 'live' : 'test');
    expect(token).toMatch(/^hsk_(live|test)_[A-Za-z0-9]{12}_[A-Za-z0-9]{32}$/);
    expect(parseToken(token)).toEqual({ env: i % 2 ? 'live' : 'test', prefix, secret });
    seen.add(prefix);
  }
  expect(seen.size).toBe(200);
});

it.each([
  ['hsk_test_short_secret'],
  ['hsk_prod_AAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB'],
  ['hsk_test_AAAAAAAAAAA-_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB'],
  [''],
])('refuses %j', (token) => expect(parseToken(token)).toBeUndefined());

it('matches a secret only against its own hash', () => {
  const hash = hashSecret('a'.repeat(32));
  expect(secretMatches('a'.repeat(32), hash)).toBe(true);
  expect(secretMatches('b'.repeat(32), hash)).toBe(false);
  expect(secretMatches('a'.repeat(32), undefined)).toBe(false);
  expect(secretMatches('a'.repeat(32), new Uint8Array(3))).toBe(false);
});
