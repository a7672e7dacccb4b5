/**
 * Idempotency-Key, as product.md describes it (anchors: Stripe's idempotent requests, the IETF
 * draft, and the Postgres "Stripe-like idempotency keys" design).
 *
 * It composes around a resource's write and never calls back up: the router turns the header into
 * a `KeyedRequest` (plain values); a write either runs in `keyedTransaction` (the key claimed
 * first, the response stored last, one transaction), or, for a create that needs no reads, its
 * resource's one statement includes the key (server/idempotency/idempotency.queries.ts,
 * claimAndStore) and `settleKeyedStatement` reads what it did. Whatever a write throws, the router
 * hands to `answerAfterFailure`: a replay, a 409, or the refusal stored for the next replay.
 */
import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import { stringify } from 'safe-stable-stringify';
import type { Database } from '../db/schema.js';
import { type BatchOptions, removeInBatches } from '../shared/batches.js';
import { ApiError } from '../shared/errors.js';
import { inSpan } from '../shared/tracing.js';
import * as queries from './idempotency.queries.js';
import type { KeyedStatementOutcome, KeyedStatementParams, KeyScope, StoredResponse } from './idempotency.queries.js';

export const KEY_LIFETIME_MS = 24 * 60 * 60 * 1000;

/**
 * With tracing on, each step that touches the key's storage is a span (server/shared/tracing.ts):
 * `idempotency.claim` and `idempotency.store` in a keyed transaction, `idempotency.keyed_statement`
 * around a one-statement write (with its `idempotency.outcome`: written, busy, stored, conflict),
 * `idempotency.find_stored` and `idempotency.store` after a failure.
 */
const NO_ATTRIBUTES = {};

/** A response as it goes out: its body already serialised, once. */
export interface SentResponse {
  status: number;
  text: string;
  headers: Record<string, string>;
}

/** What a write answers, and (when it differs: a secret shown once) what its key keeps for replays. */
export interface WriteResponse extends SentResponse {
  storedText?: string | undefined;
}

/** The pieces a keyed transaction uses; tests replace one to inject a failure inside the transaction. */
export interface IdempotencyStore {
  claimKey: typeof queries.claimKey;
  saveResponse: typeof queries.saveResponse;
}

export const defaultStore: IdempotencyStore = { claimKey: queries.claimKey, saveResponse: queries.saveResponse };

/** A request with an Idempotency-Key: plain values, made by the router. */
export interface KeyedRequest {
  scope: KeyScope;
  fingerprint: string;
  now: Date;
  expiresAt: Date;
  store: IdempotencyStore;
}

/** The header's value as stored: without structured-field quotes, lower case (UUIDs and ULIDs are case-insensitive). */
export function normalizeKey(header: string): string {
  return header.replace(/^"(.*)"$/, '$1').toLowerCase();
}

/** Method, path and the parsed body: key order and white space do not matter. */
export function fingerprintRequest(method: string, path: string, body: unknown): string {
  return createHash('sha256')
    .update(`${method} ${path}\n${stringify(body ?? null)}`)
    .digest('base64url');
}

export function keyedRequest(scope: KeyScope, fingerprint: string, now: Date, store: IdempotencyStore = defaultStore): KeyedRequest {
  return { scope, fingerprint, now, expiresAt: new Date(now.getTime() + KEY_LIFETIME_MS), store };
}

/** Another request holds the key. */
class KeyBusy extends Error {}
/** The key has a stored response: the answer is its replay. */
class KeyStored extends Error {
  constructor(readonly stored: StoredResponse) {
    super('stored');
  }
}
/** Another request stored a response for the key while this one ran. */
class KeyLostRace extends Error {}

const inProgress = () =>
  new ApiError('idempotency_request_in_progress', 'A request with this Idempotency-Key is still being processed; retry shortly.', {
    headers: { 'Retry-After': '1' },
  });

const reused = () =>
  new ApiError(
    'idempotency_key_reused',
    'This Idempotency-Key was used with a different request (method, path or body); use a new key for a new request.',
  );

/** The stored answer, marked as replayed; 422 when the key was used for a different request. */
function replay(stored: StoredResponse, fingerprint: string): SentResponse {
  if (stored.fingerprint !== fingerprint) throw reused();
  return { status: stored.status, text: stored.bodyText, headers: { ...stored.headers, 'Idempotent-Replayed': 'true' } };
}

const toStore = (keyed: KeyedRequest, response: WriteResponse): StoredResponse => ({
  fingerprint: keyed.fingerprint,
  status: response.status,
  bodyText: response.storedText ?? response.text,
  headers: response.headers,
});

/** The parameters a resource's keyed statement takes (idempotency.queries.ts, claimAndStore). */
export function keyedStatementParams(keyed: KeyedRequest, response: WriteResponse): KeyedStatementParams {
  return queries.keyedStatementParams(keyed.scope, toStore(keyed, response), keyed.now, keyed.expiresAt);
}

/** Inside a transaction, first: takes the key, or throws (another request holds it, or it has an answer). */
async function claimKey(trx: Kysely<Database>, keyed: KeyedRequest): Promise<void> {
  const claim = await keyed.store.claimKey(trx, keyed.scope, keyed.now);
  if (!claim.locked) throw new KeyBusy();
  if (claim.stored) throw new KeyStored(claim.stored);
}

/** Inside the same transaction, last: stores the response with the key. */
async function saveResponse(trx: Kysely<Database>, keyed: KeyedRequest, response: WriteResponse): Promise<void> {
  if (!(await keyed.store.saveResponse(trx, keyed.scope, toStore(keyed, response), keyed.now, keyed.expiresAt))) throw new KeyLostRace();
}

/**
 * A write as one transaction: the key claimed first (when there is one), `write`'s work, its
 * response stored last, COMMIT. Without a key, just the transaction.
 */
export async function keyedTransaction(
  db: Kysely<Database>,
  keyed: KeyedRequest | undefined,
  write: (trx: Kysely<Database>) => Promise<WriteResponse>,
): Promise<WriteResponse> {
  return db.transaction().execute(async (trx) => {
    if (keyed) await inSpan('idempotency.claim', NO_ATTRIBUTES, () => claimKey(trx, keyed));
    const response = await write(trx);
    if (keyed) await inSpan('idempotency.store', NO_ATTRIBUTES, () => saveResponse(trx, keyed, response));
    return response;
  });
}

/**
 * A keyed write whose answer comes from a call outside the database (a test delivery: a receiver
 * may take seconds, and no transaction stays open while it is called). Three steps: `prepare`, in
 * a transaction that claims the key first (a stored answer replays, a held key is 409); `call`,
 * outside any transaction; `finish`, in a second keyed transaction that stores the answer with the
 * key. Between the two the key's lock is not held, so `prepare` must write a row that only the
 * key's first request can write (its id from `keyedId`) and throw `keyInProgress()` when it finds it
 * already written. Without a key: the same steps, unkeyed.
 */
export async function keyedCall<Prepared, Outcome>(
  db: Kysely<Database>,
  keyed: KeyedRequest | undefined,
  steps: {
    prepare: (trx: Kysely<Database>) => Promise<Prepared>;
    call: (prepared: Prepared) => Promise<Outcome>;
    finish: (trx: Kysely<Database>, outcome: Outcome) => Promise<WriteResponse>;
  },
): Promise<WriteResponse> {
  const prepared = await db.transaction().execute(async (trx) => {
    if (keyed) await claimKey(trx, keyed);
    return steps.prepare(trx);
  });
  const outcome = await steps.call(prepared);
  return keyedTransaction(db, keyed, (trx) => steps.finish(trx, outcome));
}

/** What a step of `keyedCall` throws when the key's first request is still running: 409, never stored. */
export function keyInProgress(): Error {
  return new KeyBusy();
}

/**
 * A UUID that only this key gives (per organisation and environment), in the API's spelling: the
 * id of the row that marks a `keyedCall` as begun.
 */
export function keyedId(keyed: KeyedRequest): string {
  const hex = createHash('sha256').update(`keyed-id:${keyed.scope.orgId}:${keyed.scope.env}:${keyed.scope.key}`).digest('hex');
  // RFC 9562's version 8 (custom) and variant bits: a valid UUID, not mistaken for a random one.
  const variant = ((Number.parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/**
 * Runs a resource's keyed one-statement write and reads its outcome: written, or another
 * request's (409, replay). A key row that blocked the insert is removed if it has expired, and
 * the statement tried once more.
 */
export async function settleKeyedStatement(
  db: Kysely<Database>,
  keyed: KeyedRequest,
  run: () => Promise<KeyedStatementOutcome>,
): Promise<void> {
  for (let attempt = 0; attempt < 2; attempt++) {
    const outcome = await inSpan('idempotency.keyed_statement', NO_ATTRIBUTES, async (span) => {
      const ran = await run();
      span?.setAttribute('idempotency.outcome', ran.kind);
      return ran;
    });
    if (outcome.kind === 'written') return;
    if (outcome.kind === 'busy') throw new KeyBusy();
    if (outcome.kind === 'stored') throw new KeyStored(outcome.stored);
    await queries.deleteExpiredKey(db, keyed.scope, keyed.now);
  }
  throw new KeyLostRace();
}

/**
 * What a keyed write that threw answers: the stored response's replay, 409 while another request
 * holds the key, or the write's own refusal (402, 404, 409, 412...), stored for replays outside
 * the rolled-back transaction. A 400 or a 5xx stores nothing, so a retry runs afresh.
 */
export async function answerAfterFailure(db: Kysely<Database>, keyed: KeyedRequest, error: unknown): Promise<SentResponse> {
  if (error instanceof KeyBusy) throw inProgress();
  if (error instanceof KeyStored) return replay(error.stored, keyed.fingerprint);
  if (error instanceof KeyLostRace) {
    const stored = await inSpan('idempotency.find_stored', NO_ATTRIBUTES, () => queries.findStoredResponse(db, keyed.scope, keyed.now));
    if (stored) return replay(stored, keyed.fingerprint);
    throw inProgress();
  }
  // A 400 says the request itself is wrong (a handler's own check, such as a webhook URL that does
  // not resolve): like the validator's, it is not stored, so the caller can fix it and retry.
  if (error instanceof ApiError && error.status < 500 && error.status !== 400) {
    const refusal = { status: error.status, text: JSON.stringify(error.toBody()), headers: error.details.headers ?? {} };
    const saved = await inSpan('idempotency.store', NO_ATTRIBUTES, () =>
      keyed.store.saveResponse(db, keyed.scope, toStore(keyed, refusal), keyed.now, keyed.expiresAt),
    );
    if (!saved) {
      const stored = await queries.findStoredResponse(db, keyed.scope, keyed.now);
      if (stored) return replay(stored, keyed.fingerprint);
    }
  }
  throw error;
}

/**
 * What happened to a keyed request, for metrics: its answer stored (a success, or its own refusal
 * such as a 402), a replay, 409 while another request held the key, or 422 for another request's key.
 */
export type KeyedOutcome = 'stored' | 'replayed' | 'in_progress' | 'reused';

/** The outcome of a keyed write that ended in `error` (thrown by the write or by answerAfterFailure); none for a 400 or a 5xx. */
export function keyedOutcomeOfRefusal(error: unknown): KeyedOutcome | undefined {
  if (!(error instanceof ApiError) || error.status >= 500 || error.status === 400) return undefined;
  if (error.code === 'idempotency_request_in_progress') return 'in_progress';
  if (error.code === 'idempotency_key_reused') return 'reused';
  return 'stored';
}

/** Removes every expired key, in bounded batches (server/shared/batches.ts); returns how many went. */
export function purgeExpiredKeys(db: Kysely<Database>, now: Date, options?: BatchOptions): Promise<number> {
  return removeInBatches((batchSize) => queries.purgeExpiredKeys(db, now, batchSize), options);
}
