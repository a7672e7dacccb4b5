/**
 * Idempotency-Key, as product.md describes it (anchors: Stripe's idempotent requests, the IETF
 * draft, and the Postgres "Stripe-like idempotency keys" design). Every operation that declares
 * the header in the spec gets this from the router; no handler knows about it.
 *
 * The orchestration (claim → handler → store, in one transaction or one statement) is in
 * server/http/write-unit.ts; this module has the rules' parts and the purge.
 */
import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import { stringify } from 'safe-stable-stringify';
import type { Database } from '../db/schema.js';
import { ApiError } from '../http/errors.js';
import * as queries from './idempotency.queries.js';
import type { KeyScope, StoredResponse } from './idempotency.queries.js';

export const KEY_LIFETIME_MS = 24 * 60 * 60 * 1000;

export interface IdempotentResponse {
  status: number;
  body: unknown;
  headers: Record<string, string>;
}

/** A response as it goes out: its body already serialised, once. */
export interface SentResponse {
  status: number;
  text: string;
  headers: Record<string, string>;
}

/** The queries the mechanism uses; tests replace one to inject a failure inside the transaction. */
export type IdempotencyStore = Omit<typeof queries, 'purgeExpiredKeys'>;

export const defaultStore: IdempotencyStore = queries;

/** The header's value as stored: without structured-field quotes, lower case (UUIDs and ULIDs are case-insensitive). */
export function normalizeKey(header: string): string {
  return header.replace(/^"(.*)"$/, '$1').toLowerCase();
}

/** Method, path and the parsed body: key order and white space do not matter. */
export function fingerprintRequest(method: string, path: string, body: unknown): string {
  return createHash('sha256').update(`${method} ${path}\n${stringify(body ?? null)}`).digest('base64url');
}

export const inProgress = () =>
  new ApiError(409, 'idempotency_request_in_progress', 'A request with this Idempotency-Key is still being processed; retry shortly.', {
    headers: { 'Retry-After': '1' },
  });

const reused = () =>
  new ApiError(
    422,
    'idempotency_key_reused',
    'This Idempotency-Key was used with a different request (method, path or body); use a new key for a new request.',
  );

/** The stored answer, marked as replayed; 422 when the key was used for a different request. */
export function replay(stored: StoredResponse, fingerprint: string): SentResponse & { replayed: true } {
  if (stored.fingerprint !== fingerprint) throw reused();
  return { status: stored.status, text: stored.bodyText, headers: { ...stored.headers, 'Idempotent-Replayed': 'true' }, replayed: true };
}

/**
 * Removes expired keys in bounded batches, so one purge never holds locks for long. Returns the
 * number removed.
 */
export async function purgeExpiredKeys(
  db: Kysely<Database>,
  now: Date,
  { batchSize = 1000, maxBatches = Number.POSITIVE_INFINITY } = {},
): Promise<number> {
  let total = 0;
  for (let batch = 0; batch < maxBatches; batch++) {
    const removed = await queries.purgeExpiredKeys(db, now, batchSize);
    total += removed;
    if (removed < batchSize) break;
  }
  return total;
}

/** Purges on a schedule inside the server; the timer never keeps the process alive. */
export function schedulePurge(
  db: Kysely<Database>,
  clock: () => Date,
  onError: (error: unknown) => void,
  intervalMs = 10 * 60 * 1000,
): () => void {
  const timer = setInterval(() => {
    purgeExpiredKeys(db, clock(), { batchSize: 1000, maxBatches: 10 }).catch(onError);
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
