/**
 * Idempotency-Key, as product.md describes it (anchors: Stripe's idempotent requests, the IETF
 * draft, and the Postgres "Stripe-like idempotency keys" design). Every operation that declares
 * the header in the spec gets this from the router; no handler knows about it.
 *
 * One transaction per request: claim the key (try its lock, read what is stored) → run the
 * handler → store its response with the key → commit. A crash anywhere leaves nothing or all.
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

/** The queries the mechanism uses; tests replace one to inject a failure inside the transaction. */
export type IdempotencyStore = Pick<typeof queries, 'claimKey' | 'saveResponse' | 'findStoredResponse'>;

/** The header's value as stored: without structured-field quotes, lower case (UUIDs and ULIDs are case-insensitive). */
export function normalizeKey(header: string): string {
  return header.replace(/^"(.*)"$/, '$1').toLowerCase();
}

/** Method, path and the parsed body: key order and white space do not matter. */
export function fingerprintRequest(method: string, path: string, body: unknown): string {
  return createHash('sha256').update(`${method} ${path}\n${stringify(body ?? null)}`).digest('base64url');
}

const inProgress = () =>
  new ApiError(409, 'idempotency_request_in_progress', 'A request with this Idempotency-Key is still being processed; retry shortly.', {
    headers: { 'Retry-After': '1' },
  });

const reused = () =>
  new ApiError(
    422,
    'idempotency_key_reused',
    'This Idempotency-Key was used with a different request (method, path or body); use a new key for a new request.',
  );

/** Thrown inside the transaction to roll it back when another request stored the key first. */
class LostRace extends Error {}
/** Carries a handler's own 4xx out of the rolled-back transaction, so it can be stored. */
class HandlerRefused extends Error {
  constructor(readonly error: ApiError) {
    super(error.message);
  }
}

function replay(stored: StoredResponse, fingerprint: string): IdempotentResponse & { replayed: true } {
  if (stored.fingerprint !== fingerprint) throw reused();
  return { status: stored.status, body: stored.body, headers: { ...stored.headers, 'Idempotent-Replayed': 'true' }, replayed: true };
}

export interface IdempotencyDeps {
  db: Kysely<Database>;
  clock: () => Date;
  store?: Partial<IdempotencyStore>;
}

export function createIdempotency(deps: IdempotencyDeps) {
  const store: IdempotencyStore = { ...queries, ...deps.store };

  /**
   * Runs `execute` at most once per key: a repeat gets the stored response, a concurrent repeat
   * 409, a different request with the same key 422. A handler's own 4xx is stored and replayed
   * too; a 5xx (any other error) rolls everything back and stores nothing, so a retry runs afresh.
   */
  async function run(
    scope: KeyScope,
    fingerprint: string,
    execute: (trx: Kysely<Database>) => Promise<IdempotentResponse>,
  ): Promise<IdempotentResponse & { replayed: boolean }> {
    const now = deps.clock();
    const expiresAt = new Date(now.getTime() + KEY_LIFETIME_MS);
    try {
      return await deps.db.transaction().execute(async (trx) => {
        const claim = await store.claimKey(trx, scope, now);
        if (!claim.locked) throw inProgress();
        if (claim.stored) return replay(claim.stored, fingerprint);
        let response: IdempotentResponse;
        try {
          response = await execute(trx);
        } catch (error) {
          if (error instanceof ApiError && error.status < 500) throw new HandlerRefused(error);
          throw error;
        }
        if (!(await store.saveResponse(trx, scope, { fingerprint, ...response }, now, expiresAt))) throw new LostRace();
        return { ...response, replayed: false };
      });
    } catch (error) {
      if (error instanceof LostRace) {
        const stored = await store.findStoredResponse(deps.db, scope, now);
        if (stored) return replay(stored, fingerprint);
        throw inProgress();
      }
      if (error instanceof HandlerRefused) {
        // Its transaction is rolled back (nothing it wrote stays); keep its answer for replays.
        const refusal = error.error;
        const saved = await store.saveResponse(
          deps.db,
          scope,
          { fingerprint, status: refusal.status, body: refusal.toBody(), headers: refusal.details.headers ?? {} },
          now,
          expiresAt,
        );
        if (!saved) {
          const stored = await store.findStoredResponse(deps.db, scope, now);
          if (stored) return replay(stored, fingerprint);
        }
        throw refusal;
      }
      throw error;
    }
  }

  return { run };
}

export type Idempotency = ReturnType<typeof createIdempotency>;

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
