/**
 * How every write request (POST, PATCH, DELETE) reaches the database: one transaction at most, and
 * as few round trips as the guarantees allow.
 *
 * A handler asks for the transaction only when it needs one (`await ctx.transaction()`: reads,
 * locks, updates); it may hand back the one row it creates as data (`insert`), computed in full so
 * that its response needs nothing back from the database. Then:
 *  - no transaction, no key:    the insert alone, one statement;
 *  - no transaction, a key:     claim + insert + stored response, one statement;
 *  - a transaction:             BEGIN, the key's claim first (when there is a key), the handler's
 *                               work, the insert and the stored response together, COMMIT.
 * Idempotency-Key rules (replay, 409, 422, what is stored) are product.md's; see
 * server/idempotency/idempotency.ts.
 */
import type { ControlledTransaction, Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { inProgress, KEY_LIFETIME_MS, replay, type IdempotencyStore, type IdempotentResponse, type SentResponse } from '../idempotency/idempotency.js';
import type { DeferredInsert, KeyScope, StoredResponse } from '../idempotency/idempotency.queries.js';
import { ApiError } from './errors.js';

export interface WriteResult extends IdempotentResponse {
  insert?: DeferredInsert | undefined;
  /** Kept for replays instead of `body`, when the body holds what must be shown only once. */
  storedBody?: unknown;
}

export interface WriteOutcome extends SentResponse {
  replayed: boolean;
}

export interface IdempotencyRequest extends KeyScope {
  fingerprint: string;
}

class Busy extends Error {}
class Stored extends Error {
  constructor(readonly stored: StoredResponse) {
    super('stored');
  }
}
class LostRace extends Error {}

export interface WriteUnitDeps {
  db: Kysely<Database>;
  clock: () => Date;
  store: IdempotencyStore;
}

export function createWriteRunner(deps: WriteUnitDeps) {
  const { db, store } = deps;

  return async function runWrite(
    key: IdempotencyRequest | undefined,
    handler: (transaction: () => Promise<Kysely<Database>>, now: Date) => Promise<WriteResult>,
  ): Promise<WriteOutcome> {
    const now = deps.clock();
    const expiresAt = new Date(now.getTime() + KEY_LIFETIME_MS);
    let trx: ControlledTransaction<Database> | undefined;
    let done = false;
    const transaction = async (): Promise<Kysely<Database>> => {
      if (trx) return trx;
      trx = await db.startTransaction().execute();
      if (key) {
        const claim = await store.claimKey(trx, key, now);
        if (!claim.locked) throw new Busy();
        if (claim.stored) throw new Stored(claim.stored);
      }
      return trx;
    };
    const toStore = (result: SentResponse): StoredResponse => ({
      fingerprint: key!.fingerprint,
      status: result.status,
      bodyText: result.text,
      headers: result.headers,
    });

    try {
      const result = await handler(transaction, now);
      // Serialised once: the same text is sent and, unless the handler keeps another body, stored.
      const response = { status: result.status, text: JSON.stringify(result.body), headers: result.headers };
      const kept = result.storedBody === undefined ? response : { ...response, text: JSON.stringify(result.storedBody) };
      if (trx) {
        if (key) {
          const saved = result.insert
            ? await store.insertDeferredAndSave(trx, result.insert, key, toStore(kept), now, expiresAt)
            : await store.saveResponse(trx, key, toStore(kept), now, expiresAt);
          if (!saved) throw new LostRace();
        } else if (result.insert) {
          await store.insertDeferred(trx, result.insert);
        }
        await trx.commit().execute();
        done = true;
        return { ...response, replayed: false };
      }
      if (!key) {
        if (result.insert) await store.insertDeferred(db, result.insert);
        return { ...response, replayed: false };
      }
      if (!result.insert) {
        if (await store.saveResponse(db, key, toStore(kept), now, expiresAt)) return { ...response, replayed: false };
        throw new LostRace();
      }
      for (let attempt = 0; attempt < 2; attempt++) {
        const outcome = await store.insertDeferredWithKey(db, result.insert, key, toStore(kept), now, expiresAt);
        if (outcome.kind === 'written') return { ...response, replayed: false };
        if (outcome.kind === 'busy') throw new Busy();
        if (outcome.kind === 'stored') throw new Stored(outcome.stored);
        // A key row blocked the insert: an expired one is removed and the statement tried once more.
        await store.deleteExpiredKey(db, key, now);
      }
      throw new LostRace();
    } catch (error) {
      if (trx && !done) await trx.rollback().execute().catch(() => undefined);
      if (error instanceof Busy) throw inProgress();
      if (error instanceof Stored) return replay(error.stored, key!.fingerprint);
      if (error instanceof LostRace) {
        const stored = await store.findStoredResponse(db, key!, now);
        if (stored) return replay(stored, key!.fingerprint);
        throw inProgress();
      }
      if (key && error instanceof ApiError && error.status < 500) {
        // The handler's own refusal (402, 404, 409, 412...): nothing it wrote stays; its answer is kept for replays.
        const refusal = { status: error.status, text: JSON.stringify(error.toBody()), headers: error.details.headers ?? {} };
        if (!(await store.saveResponse(db, key, toStore(refusal), now, expiresAt))) {
          const stored = await store.findStoredResponse(db, key, now);
          if (stored) return replay(stored, key.fingerprint);
        }
      }
      throw error;
    }
  };
}

export type WriteRunner = ReturnType<typeof createWriteRunner>;
