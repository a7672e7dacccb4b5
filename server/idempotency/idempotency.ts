/**
 * Idempotency-Key, as docs/contract.md describes it (anchors: Stripe's idempotent requests, the
 * IETF draft, and the Postgres "Stripe-like idempotency keys" design).
 *
 * One entry: a resource's service hands its write to `runKeyedWrite`, which is the write's unit
 * of work. The service says only what the write is: several statements (`inTransaction`), one
 * statement that takes the key's claim as a piece of itself (`inOneStatement`: a create that needs
 * no reads, one round trip, no BEGIN), or a call outside the database between two transactions
 * (`aroundCall`). `runKeyedWrite` claims the key, stores the answer with it, and turns whatever
 * the write throws into a replay, a 409, or the refusal stored for the next replay. The router
 * only turns the header into a `KeyedRequest` (plain values) and counts what happened.
 */
import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import { stringify } from 'safe-stable-stringify';
import type { Database } from '../db/schema.js';
import { type BatchOptions, removeInBatches } from '../shared/batches.js';
import { ApiError } from '../shared/errors.js';
import type { Tenant } from '../shared/tenant.js';
import { inSpan } from '../shared/tracing.js';
import * as queries from './idempotency.queries.js';
import type { KeyedStatementOutcome, KeyedStatementParams, StoredAnswer } from './idempotency.queries.js';

export type { KeyedStatementOutcome, KeyedStatementParams } from './idempotency.queries.js';

export const KEY_LIFETIME_MS = 24 * 60 * 60 * 1000;

/**
 * With tracing on, each step that touches the key's storage is a span (server/shared/tracing.ts):
 * `idempotency.claim` and `idempotency.store` in a keyed transaction, `idempotency.keyed_statement`
 * around a one-statement write (with its `idempotency.outcome`: written, busy, stored, conflict),
 * `idempotency.find_stored` and `idempotency.store` after a failure.
 */
const NO_ATTRIBUTES = {};

/** An answer as it goes out: its body already serialised, once. */
export interface SentAnswer {
  status: number;
  text: string;
  headers: Record<string, string>;
}

/** What a write answers, and (when it differs: a secret shown once) what its key keeps for replays. */
export interface WriteAnswer extends SentAnswer {
  storedText?: string | undefined;
}

/** The pieces a keyed transaction uses; tests replace one to inject a failure inside the transaction. */
export interface IdempotencyStore {
  claimKey: typeof queries.claimKey;
  saveAnswer: typeof queries.saveAnswer;
}

export const defaultStore: IdempotencyStore = { claimKey: queries.claimKey, saveAnswer: queries.saveAnswer };

/** A request with an Idempotency-Key: plain values, made by the router. */
export interface KeyedRequest {
  tenant: Tenant;
  /** The header's value, normalised (normalizeKey). */
  key: string;
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

export function keyedRequest(
  tenant: Tenant,
  key: string,
  fingerprint: string,
  now: Date,
  store: IdempotencyStore = defaultStore,
): KeyedRequest {
  return { tenant, key, fingerprint, now, expiresAt: new Date(now.getTime() + KEY_LIFETIME_MS), store };
}

/** Another request holds the key. */
class KeyBusy extends Error {}
/** The key has a stored answer: the answer is its replay. */
class KeyStored extends Error {
  constructor(readonly stored: StoredAnswer) {
    super('stored');
  }
}
/** Another request stored an answer for the key while this one ran. */
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
function replay(stored: StoredAnswer, fingerprint: string): SentAnswer {
  if (stored.fingerprint !== fingerprint) throw reused();
  return { status: stored.status, text: stored.bodyText, headers: { ...stored.headers, 'Idempotent-Replayed': 'true' } };
}

const toStore = (keyed: KeyedRequest, answer: SentAnswer & { storedText?: string | undefined }): StoredAnswer => ({
  fingerprint: keyed.fingerprint,
  status: answer.status,
  bodyText: answer.storedText ?? answer.text,
  headers: answer.headers,
});

/** Inside a transaction, first: takes the key, or throws (another request holds it, or it has an answer). */
async function takeKey(trx: Kysely<Database>, keyed: KeyedRequest): Promise<void> {
  const claim = await keyed.store.claimKey(trx, keyed.tenant, keyed.key, keyed.now);
  if (!claim.locked) throw new KeyBusy();
  if (claim.stored) throw new KeyStored(claim.stored);
}

/** Inside the same transaction, last: keeps the answer with the key. */
async function keepAnswer(trx: Kysely<Database>, keyed: KeyedRequest, answer: WriteAnswer): Promise<void> {
  const saved = await keyed.store.saveAnswer(trx, keyed.tenant, keyed.key, toStore(keyed, answer), keyed.now, keyed.expiresAt);
  if (!saved) throw new KeyLostRace();
}

/** A write as one transaction: the key claimed first (when there is one), the write, its answer kept last, COMMIT. */
function transaction<A extends WriteAnswer>(
  db: Kysely<Database>,
  keyed: KeyedRequest | undefined,
  write: (trx: Kysely<Database>) => Promise<A>,
) {
  return db.transaction().execute(async (trx) => {
    if (keyed) await inSpan('idempotency.claim', NO_ATTRIBUTES, () => takeKey(trx, keyed));
    const answer = await write(trx);
    if (keyed) await inSpan('idempotency.store', NO_ATTRIBUTES, () => keepAnswer(trx, keyed, answer));
    return answer;
  });
}

/**
 * What a write is, as its service describes it to `runKeyedWrite`: made by `inTransaction`,
 * `inOneStatement` or `aroundCall`.
 */
export interface UnitOfWork<A extends WriteAnswer> {
  readonly run: (db: Kysely<Database>, keyed: KeyedRequest | undefined) => Promise<A>;
}

/** Several statements, in one transaction that the key's claim opens and its stored answer closes. */
export function inTransaction<A extends WriteAnswer>(write: (trx: Kysely<Database>) => Promise<A>): UnitOfWork<A> {
  return { run: (db, keyed) => transaction(db, keyed, write) };
}

/**
 * One statement, no explicit transaction: `statement` runs the resource's write, and, when it is
 * given a claim (the request has a key), includes it (server/idempotency/idempotency.queries.ts,
 * claimAndStore: the key's claim, and `answer` stored with it). Its outcome says whether it wrote,
 * or another request's answer stands (409, replay). A key row that blocked the insert is removed
 * if it has expired, and the statement tried once more.
 */
export function inOneStatement<A extends WriteAnswer>(
  answer: A,
  statement: (claim: KeyedStatementParams | undefined) => Promise<KeyedStatementOutcome>,
): UnitOfWork<A> {
  return {
    async run(db, keyed) {
      if (!keyed) {
        await statement(undefined);
        return answer;
      }
      const claim = queries.keyedStatementParams(keyed.tenant, keyed.key, toStore(keyed, answer), keyed.now, keyed.expiresAt);
      for (let attempt = 0; attempt < 2; attempt++) {
        const outcome = await inSpan('idempotency.keyed_statement', NO_ATTRIBUTES, async (span) => {
          const ran = await statement(claim);
          span?.setAttribute('idempotency.outcome', ran.kind);
          return ran;
        });
        if (outcome.kind === 'written') return answer;
        if (outcome.kind === 'busy') throw new KeyBusy();
        if (outcome.kind === 'stored') throw new KeyStored(outcome.stored);
        await queries.deleteExpiredKey(db, keyed.tenant, keyed.key, keyed.now);
      }
      throw new KeyLostRace();
    },
  };
}

/**
 * A write whose answer comes from a call outside the database (a test delivery: a receiver may
 * take seconds, and no transaction stays open while it is called). Three steps: `prepare`, in a
 * transaction that claims the key first (a stored answer replays, a held key is 409); `call`,
 * outside any transaction; `finish`, in a second keyed transaction that stores the answer with the
 * key. Between the two the key's lock is not held, so `prepare` must write a row that only the
 * key's first request can write (its id is `firstRequestId`, derived from the key) and throw
 * `keyInProgress()` when it finds it already written. Without a key: the same steps, unkeyed, and
 * no `firstRequestId`.
 */
export function aroundCall<Prepared, Outcome, A extends WriteAnswer>(steps: {
  prepare: (trx: Kysely<Database>, firstRequestId: string | undefined) => Promise<Prepared>;
  call: (prepared: Prepared) => Promise<Outcome>;
  finish: (trx: Kysely<Database>, outcome: Outcome) => Promise<A>;
}): UnitOfWork<A> {
  return {
    async run(db, keyed) {
      const prepared = await db.transaction().execute(async (trx) => {
        if (keyed) await takeKey(trx, keyed);
        return steps.prepare(trx, keyed && keyedId(keyed));
      });
      const outcome = await steps.call(prepared);
      return transaction(db, keyed, (trx) => steps.finish(trx, outcome));
    },
  };
}

/** What a step of `aroundCall` throws when the key's first request is still running: 409, never stored. */
export function keyInProgress(): Error {
  return new KeyBusy();
}

/**
 * A UUID that only this key gives (per organisation and environment), in the API's spelling: the
 * id of the row that marks an `aroundCall` as begun.
 */
function keyedId(keyed: KeyedRequest): string {
  const hex = createHash('sha256').update(`keyed-id:${keyed.tenant.orgId}:${keyed.tenant.env}:${keyed.key}`).digest('hex');
  // RFC 9562's version 8 (custom) and variant bits: a valid UUID, not mistaken for a random one.
  const variant = ((Number.parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/**
 * The one entry of every write: `write` checks what needs no transaction (a plan's feature, a
 * URL's host) and says what the write is (a UnitOfWork); this runs it with the request's key,
 * when there is one. Whatever `write` or its unit throws, with a key, becomes the stored answer's
 * replay, 409 while another request holds the key, or the write's own refusal (402, 404, 409,
 * 412...) stored for replays (answerAfterFailure). A replay is the stored form of an earlier
 * answer of the same operation.
 */
export async function runKeyedWrite<A extends WriteAnswer>(
  db: Kysely<Database>,
  keyed: KeyedRequest | undefined,
  write: () => UnitOfWork<A> | Promise<UnitOfWork<A>>,
): Promise<A> {
  try {
    const unit = await write();
    return await unit.run(db, keyed);
  } catch (error) {
    if (!keyed) throw error;
    return (await answerAfterFailure(db, keyed, error)) as A;
  }
}

/**
 * What a keyed write that threw answers: the stored answer's replay, 409 while another request
 * holds the key, or the write's own refusal (402, 404, 409, 412...), stored for replays outside
 * the rolled-back transaction. A 400 or a 5xx stores nothing, so a retry runs afresh.
 */
async function answerAfterFailure(db: Kysely<Database>, keyed: KeyedRequest, error: unknown): Promise<SentAnswer> {
  if (error instanceof KeyBusy) throw inProgress();
  if (error instanceof KeyStored) return replay(error.stored, keyed.fingerprint);
  if (error instanceof KeyLostRace) {
    const stored = await inSpan('idempotency.find_stored', NO_ATTRIBUTES, () =>
      queries.findStoredAnswer(db, keyed.tenant, keyed.key, keyed.now),
    );
    if (stored) return replay(stored, keyed.fingerprint);
    throw inProgress();
  }
  // A 400 says the request itself is wrong (a handler's own check, such as a webhook URL that does
  // not resolve): like the validator's, it is not stored, so the caller can fix it and retry.
  if (error instanceof ApiError && error.status < 500 && error.status !== 400) {
    const refusal = { status: error.status, text: JSON.stringify(error.toBody()), headers: error.details.headers ?? {} };
    const saved = await inSpan('idempotency.store', NO_ATTRIBUTES, () =>
      keyed.store.saveAnswer(db, keyed.tenant, keyed.key, toStore(keyed, refusal), keyed.now, keyed.expiresAt),
    );
    if (!saved) {
      const stored = await queries.findStoredAnswer(db, keyed.tenant, keyed.key, keyed.now);
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

/** The outcome of a keyed write that ended in `error` (runKeyedWrite's refusal); none for a 400 or a 5xx. */
export function keyedOutcomeOfRefusal(error: unknown): KeyedOutcome | undefined {
  if (!(error instanceof ApiError) || error.status >= 500 || error.status === 400) return undefined;
  if (error.code === 'idempotency_request_in_progress') return 'in_progress';
  if (error.code === 'idempotency_key_reused') return 'reused';
  return 'stored';
}

/** Removes every expired key, in bounded batches (server/shared/batches.ts); returns how many went. */
export function purgeExpiredKeys(db: Kysely<Database>, now: Date, options?: BatchOptions): Promise<number> {
  return removeInBatches((batchSize) => queries.deleteExpiredKeyBatch(db, now, batchSize), options);
}
