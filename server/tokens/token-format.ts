/**
 * Personal Access Tokens: `hsk_<env>_<prefix12>_<secret32>`, both parts base62 so that `_` only
 * ever separates and a double-click selects the whole token.
 */
import { createHash, randomInt, timingSafeEqual } from 'node:crypto';
import type { Env } from '../db/schema.js';

const BASE62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const TOKEN_SHAPE = /^hsk_(live|test)_([A-Za-z0-9]{12})_([A-Za-z0-9]{32})$/;

export interface ParsedToken {
  env: Env;
  prefix: string;
  secret: string;
}

/** Uniformly random base62 text (randomInt has no modulo bias). */
function randomBase62(length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) out += BASE62[randomInt(62)];
  return out;
}

export function generateToken(env: Env): ParsedToken & { token: string } {
  const prefix = randomBase62(12);
  const secret = randomBase62(32);
  return { env, prefix, secret, token: `hsk_${env}_${prefix}_${secret}` };
}

export function parseToken(token: string): ParsedToken | undefined {
  const match = TOKEN_SHAPE.exec(token);
  if (!match) return undefined;
  return { env: match[1] as Env, prefix: match[2]!, secret: match[3]! };
}

/** The secret has 190 bits of entropy, so a fast hash is enough: nothing to brute-force. */
export function hashSecret(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}

/** A hash no secret has, compared against when the prefix is unknown, so both cases take as long. */
const DECOY_HASH = hashSecret(randomBase62(32));

export function secretMatches(secret: string, storedHash: Uint8Array | undefined): boolean {
  const actual = hashSecret(secret);
  const expected = storedHash && storedHash.length === actual.length ? storedHash : DECOY_HASH;
  return timingSafeEqual(actual, expected) && expected !== DECOY_HASH;
}
