/**
 * The one module that writes `idempotency_keys`; only server/idempotency/idempotency.ts calls it,
 * but for `claimAndStore` and `readKeyedStatement`, the piece a resource's one-statement write
 * includes (its queries file puts it in its statement). A key is its tenant's: the same text sent
 * by two organisations or environments is two keys.
 */
import { type Compilable, type Kysely, type RawBuilder, sql } from 'kysely';
import type { Database, Env } from '../db/schema.js';
import type { Tenant } from '../shared/tenant.js';

export interface StoredAnswer {
  fingerprint: string;
  status: number;
  /** The body as the JSON text that was sent: stored and replayed byte for byte. */
  bodyText: string;
  headers: Record<string, string>;
}

export interface Claim {
  /** False while another transaction holds the key: that request is still running. */
  locked: boolean;
  /** The answer stored for a live (unexpired) key, if any. */
  stored: StoredAnswer | undefined;
}

/** A key's row as the statements here read it (its body as JSON text, byte for byte). */
interface StoredRow {
  fingerprint: string | null;
  response_status: number | null;
  response_body: string | null;
  response_headers: Record<string, string> | null;
}

/** The one mapping of a key's row to its stored answer; undefined when the row has none. */
function toStoredAnswer(row: StoredRow | undefined): StoredAnswer | undefined {
  if (!row || row.fingerprint === null) return undefined;
  return {
    fingerprint: row.fingerprint,
    status: row.response_status!,
    bodyText: row.response_body ?? 'null',
    headers: row.response_headers ?? {},
  };
}

const lockName = (tenant: Tenant, key: string) => `idempotency:${tenant.orgId}:${tenant.env}:${key}`;

/**
 * One round trip: read what is stored for the key and, only when nothing is, try the key's
 * transaction-scoped lock. The lock is held until the transaction ends, so a second request with
 * the same key meanwhile gets `locked: false` at once instead of waiting; replays of a stored key
 * take no lock, so any number of them can run at once.
 */
export async function claimKey(trx: Kysely<Database>, tenant: Tenant, key: string, now: Date): Promise<Claim> {
  const { rows } = await sql<StoredRow & { locked: boolean }>`
    select case when k.fingerprint is null then pg_try_advisory_xact_lock(hashtextextended(${lockName(tenant, key)}, 0)) else true end as locked,
           k.fingerprint, k.response_status, k.response_body::text as response_body, k.response_headers
    from (select 1) as one
    left join idempotency_keys k
      on k.org_id = ${tenant.orgId} and k.env = ${tenant.env} and k.key = ${key} and k.expires_at > ${now}
  `.execute(trx);
  const row = rows[0]!;
  return { locked: row.locked, stored: toStoredAnswer(row) };
}

/** Reads a live key's stored answer outside any lock (after losing a race to store it). */
export async function findStoredAnswer(db: Kysely<Database>, tenant: Tenant, key: string, now: Date): Promise<StoredAnswer | undefined> {
  const row = await db
    .selectFrom('idempotency_keys')
    .select(['fingerprint', 'response_status', sql<string | null>`response_body::text`.as('response_body'), 'response_headers'])
    .where('org_id', '=', tenant.orgId)
    .where('env', '=', tenant.env)
    .where('key', '=', key)
    .where('expires_at', '>', now)
    .executeTakeFirst();
  return toStoredAnswer(row);
}

/**
 * Stores the answer with the key, in the request's transaction. Takes over an expired row of the
 * same key; returns false when a live row is already there (another request stored it first), in
 * which case the caller must roll back.
 */
export async function saveAnswer(
  trx: Kysely<Database>,
  tenant: Tenant,
  key: string,
  answer: StoredAnswer,
  now: Date,
  expiresAt: Date,
): Promise<boolean> {
  const values = {
    fingerprint: answer.fingerprint,
    response_status: answer.status,
    response_body: answer.bodyText,
    response_headers: JSON.stringify(answer.headers),
    created_at: now,
    expires_at: expiresAt,
  };
  const row = await trx
    .insertInto('idempotency_keys')
    .values({ org_id: tenant.orgId, env: tenant.env, key, ...values })
    .onConflict((oc) => oc.columns(['org_id', 'env', 'key']).doUpdateSet(values).where('idempotency_keys.expires_at', '<=', now))
    .returning(sql<number>`1`.as('saved'))
    .executeTakeFirst();
  return row !== undefined;
}

/**
 * Deletes up to `batchSize` expired keys; returns how many went. Rows another transaction holds
 * (a purge in another process, a request re-claiming an expired key) are skipped, not waited for:
 * purges running at once take disjoint rows and never deadlock.
 */
export async function deleteExpiredKeyBatch(db: Kysely<Database>, now: Date, batchSize: number): Promise<number> {
  const result = await sql`
    delete from idempotency_keys
    where ctid in (select ctid from idempotency_keys where expires_at <= ${now} limit ${batchSize} for update skip locked)
  `.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

/** What one statement stores with a key (the parameters of `claimAndStore`). */
export interface KeyedStatementParams {
  keyOrgId: string;
  keyEnv: Env;
  key: string;
  keyLock: string;
  keyNow: Date;
  keyExpiresAt: Date;
  fingerprint: string;
  responseStatus: number;
  responseBody: string;
  responseHeaders: string;
}

/** A key and the answer to store with it, as the parameters of a keyed statement. */
export function keyedStatementParams(tenant: Tenant, key: string, answer: StoredAnswer, now: Date, expiresAt: Date): KeyedStatementParams {
  return {
    keyOrgId: tenant.orgId,
    keyEnv: tenant.env,
    key,
    keyLock: lockName(tenant, key),
    keyNow: now,
    keyExpiresAt: expiresAt,
    fingerprint: answer.fingerprint,
    responseStatus: answer.status,
    responseBody: answer.bodyText,
    responseHeaders: JSON.stringify(answer.headers),
  };
}

interface KeyedStatementRow extends StoredRow {
  locked: boolean | null;
  written: number;
}

/**
 * The piece a resource's insert statement includes to be idempotent in one round trip, with no
 * explicit transaction: read what is stored for the key; if nothing, try the key's lock; if it was
 * free, the resource's insert runs (`write` gets the condition to put in its WHERE and must
 * return a row per row written) and the answer is stored with the key. `alongside`, a statement
 * that reads `written` (its event: server/events/events.queries.ts), is part of the same statement. The key row is inserted
 * without ON CONFLICT on purpose: a row committed by a racing request (or an expired one) fails the
 * statement, which then writes nothing at all. Read the row with `readKeyedStatement`.
 */
export function claimAndStore(
  p: KeyedStatementParams,
  write: (claimed: RawBuilder<boolean>) => Compilable<unknown>,
  alongside?: Compilable<unknown> | RawBuilder<unknown>,
): RawBuilder<KeyedStatementRow> {
  return sql<KeyedStatementRow>`
  with existing as (
    select fingerprint, response_status, response_body::text as response_body, response_headers from idempotency_keys
    where org_id = ${p.keyOrgId}::uuid and env = ${p.keyEnv}::text and key = ${p.key}::text and expires_at > ${p.keyNow}::timestamptz
  ),
  claim as (
    select case when exists (select 1 from existing) then null
                else pg_try_advisory_xact_lock(hashtextextended(${p.keyLock}::text, 0)) end as locked
  ),
  written as (${write(sql<boolean>`(select locked from claim)`)}),${
    alongside
      ? sql`
  alongside as (${alongside}),`
      : sql``
  }
  saved as (
    insert into idempotency_keys (org_id, env, key, fingerprint, response_status, response_body, response_headers, created_at, expires_at)
    select ${p.keyOrgId}::uuid, ${p.keyEnv}::text, ${p.key}::text, ${p.fingerprint}::text, ${p.responseStatus}::integer,
           ${p.responseBody}::json, ${p.responseHeaders}::json, ${p.keyNow}::timestamptz, ${p.keyExpiresAt}::timestamptz
    from written
    returning 1
  )
  select (select locked from claim) as locked, (select count(*) from saved)::int as written,
         e.fingerprint, e.response_status, e.response_body, e.response_headers
  from (select 1) as one left join existing e on true`;
}

export type KeyedStatementOutcome =
  | { kind: 'written' }
  | { kind: 'busy' }
  | { kind: 'stored'; stored: StoredAnswer }
  /** A key row (live or expired) blocked the insert: nothing was written. */
  | { kind: 'conflict' };

/** What a statement built with `claimAndStore` did. */
export async function readKeyedStatement(run: Promise<{ rows: KeyedStatementRow[] }>): Promise<KeyedStatementOutcome> {
  try {
    const row = (await run).rows[0]!;
    const stored = toStoredAnswer(row);
    if (stored) return { kind: 'stored', stored };
    if (row.locked === false) return { kind: 'busy' };
    return { kind: 'written' };
  } catch (error) {
    if ((error as { code?: string }).code === '23505' && (error as { constraint?: string }).constraint === 'idempotency_keys_pk')
      return { kind: 'conflict' };
    throw error;
  }
}

/** Removes the key's row if it has expired (so a new request may take the key). */
export async function deleteExpiredKey(db: Kysely<Database>, tenant: Tenant, key: string, now: Date): Promise<void> {
  await db
    .deleteFrom('idempotency_keys')
    .where('org_id', '=', tenant.orgId)
    .where('env', '=', tenant.env)
    .where('key', '=', key)
    .where('expires_at', '<=', now)
    .execute();
}
