import { sql, type Kysely } from 'kysely';
import type { Database, Env } from '../db/schema.js';

export interface KeyScope {
  orgId: string;
  env: Env;
  key: string;
}

export interface StoredResponse {
  fingerprint: string;
  status: number;
  body: unknown;
  headers: Record<string, string>;
}

export interface Claim {
  /** False while another transaction holds the key: that request is still running. */
  locked: boolean;
  /** The response stored for a live (unexpired) key, if any. */
  stored: StoredResponse | undefined;
}

const lockName = (scope: KeyScope) => `idempotency:${scope.orgId}:${scope.env}:${scope.key}`;

/**
 * One round trip: read what is stored for the key and, only when nothing is, try the key's
 * transaction-scoped lock. The lock is held until the transaction ends, so a second request with
 * the same key meanwhile gets `locked: false` at once instead of waiting; replays of a stored key
 * take no lock, so any number of them can run at once.
 */
export async function claimKey(trx: Kysely<Database>, scope: KeyScope, now: Date): Promise<Claim> {
  const { rows } = await sql<{
    locked: boolean;
    fingerprint: string | null;
    response_status: number | null;
    response_body: unknown;
    response_headers: Record<string, string> | null;
  }>`
    select case when k.fingerprint is null then pg_try_advisory_xact_lock(hashtextextended(${lockName(scope)}, 0)) else true end as locked,
           k.fingerprint, k.response_status, k.response_body, k.response_headers
    from (select 1) as one
    left join idempotency_keys k
      on k.org_id = ${scope.orgId} and k.env = ${scope.env} and k.key = ${scope.key} and k.expires_at > ${now}
  `.execute(trx);
  const row = rows[0]!;
  const stored =
    row.fingerprint === null
      ? undefined
      : { fingerprint: row.fingerprint, status: row.response_status!, body: row.response_body, headers: row.response_headers ?? {} };
  return { locked: row.locked, stored };
}

/** Reads a live key's stored response outside any lock (after losing a race to store it). */
export async function findStoredResponse(db: Kysely<Database>, scope: KeyScope, now: Date): Promise<StoredResponse | undefined> {
  const row = await db
    .selectFrom('idempotency_keys')
    .select(['fingerprint', 'response_status', 'response_body', 'response_headers'])
    .where('org_id', '=', scope.orgId)
    .where('env', '=', scope.env)
    .where('key', '=', scope.key)
    .where('expires_at', '>', now)
    .executeTakeFirst();
  return row ? { fingerprint: row.fingerprint, status: row.response_status!, body: row.response_body, headers: row.response_headers ?? {} } : undefined;
}

/**
 * Stores the response with the key, in the request's transaction. Takes over an expired row of the
 * same key; returns false when a live row is already there (another request stored it first), in
 * which case the caller must roll back.
 */
export async function saveResponse(
  trx: Kysely<Database>,
  scope: KeyScope,
  response: StoredResponse,
  now: Date,
  expiresAt: Date,
): Promise<boolean> {
  const values = {
    fingerprint: response.fingerprint,
    response_status: response.status,
    response_body: JSON.stringify(response.body),
    response_headers: JSON.stringify(response.headers),
    created_at: now,
    expires_at: expiresAt,
  };
  const row = await trx
    .insertInto('idempotency_keys')
    .values({ org_id: scope.orgId, env: scope.env, key: scope.key, ...values })
    .onConflict((oc) =>
      oc
        .columns(['org_id', 'env', 'key'])
        .doUpdateSet(values)
        .where('idempotency_keys.expires_at', '<=', now),
    )
    .returning(sql<number>`1`.as('saved'))
    .executeTakeFirst();
  return row !== undefined;
}

/** Deletes up to `batchSize` expired keys; returns how many went. */
export async function purgeExpiredKeys(db: Kysely<Database>, now: Date, batchSize: number): Promise<number> {
  const result = await sql`
    delete from idempotency_keys
    where ctid in (select ctid from idempotency_keys where expires_at <= ${now} limit ${batchSize})
  `.execute(db);
  return Number(result.numAffectedRows ?? 0);
}
