import { sql, type Kysely } from 'kysely';
import type { Database, Env } from '../db/schema.js';
import { statement } from '../db/statements.js';

export interface KeyScope {
  orgId: string;
  env: Env;
  key: string;
}

export interface StoredResponse {
  fingerprint: string;
  status: number;
  /** The body as the JSON text that was sent: stored and replayed byte for byte. */
  bodyText: string;
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
    response_body: string | null;
    response_headers: Record<string, string> | null;
  }>`
    select case when k.fingerprint is null then pg_try_advisory_xact_lock(hashtextextended(${lockName(scope)}, 0)) else true end as locked,
           k.fingerprint, k.response_status, k.response_body::text as response_body, k.response_headers
    from (select 1) as one
    left join idempotency_keys k
      on k.org_id = ${scope.orgId} and k.env = ${scope.env} and k.key = ${scope.key} and k.expires_at > ${now}
  `.execute(trx);
  const row = rows[0]!;
  const stored =
    row.fingerprint === null
      ? undefined
      : { fingerprint: row.fingerprint, status: row.response_status!, bodyText: row.response_body ?? 'null', headers: row.response_headers ?? {} };
  return { locked: row.locked, stored };
}

/** Reads a live key's stored response outside any lock (after losing a race to store it). */
export async function findStoredResponse(db: Kysely<Database>, scope: KeyScope, now: Date): Promise<StoredResponse | undefined> {
  const row = await db
    .selectFrom('idempotency_keys')
    .select(['fingerprint', 'response_status', sql<string | null>`response_body::text`.as('response_body'), 'response_headers'])
    .where('org_id', '=', scope.orgId)
    .where('env', '=', scope.env)
    .where('key', '=', scope.key)
    .where('expires_at', '>', now)
    .executeTakeFirst();
  return row ? { fingerprint: row.fingerprint, status: row.response_status!, bodyText: row.response_body ?? 'null', headers: row.response_headers ?? {} } : undefined;
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
    response_body: response.bodyText,
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

/** A row a handler wants inserted, as data: every column, so the response was computed from it. */
export interface DeferredInsert {
  table: 'clients' | 'api_tokens';
  row: Record<string, unknown>;
}

/** The row as JSON for json_populate_record: PostgreSQL casts each value to its column's type. */
const rowJson = (insert: DeferredInsert) =>
  insert.table === 'clients'
    ? JSON.stringify(insert.row)
    : JSON.stringify(insert.row, (_key, value: unknown) => (Buffer.isBuffer(value) ? `\\x${value.toString('hex')}` : value));

/** The insert alone, as one statement (its own transaction). */
export async function insertDeferred(db: Kysely<Database>, insert: DeferredInsert): Promise<void> {
  await sql`insert into ${sql.table(insert.table)} select * from json_populate_record(null::${sql.table(insert.table)}, ${rowJson(insert)}::json)`.execute(db);
}

/**
 * Inside a transaction that already holds the key's lock: the insert and the stored response in
 * one statement. Returns false when a live key row is there already (the caller rolls back).
 */
export async function insertDeferredAndSave(
  trx: Kysely<Database>,
  insert: DeferredInsert,
  scope: KeyScope,
  response: StoredResponse,
  now: Date,
  expiresAt: Date,
): Promise<boolean> {
  const { rows } = await sql<{ saved: number }>`
    with written as (
      insert into ${sql.table(insert.table)} select * from json_populate_record(null::${sql.table(insert.table)}, ${rowJson(insert)}::json)
      returning 1
    )
    insert into idempotency_keys (org_id, env, key, fingerprint, response_status, response_body, response_headers, created_at, expires_at)
    select ${scope.orgId}, ${scope.env}, ${scope.key}, ${response.fingerprint}, ${response.status},
           ${response.bodyText}::json, ${JSON.stringify(response.headers)}::json, ${now}, ${expiresAt}
    from written
    on conflict (org_id, env, key) do update
      set fingerprint = excluded.fingerprint, response_status = excluded.response_status, response_body = excluded.response_body,
          response_headers = excluded.response_headers, created_at = excluded.created_at, expires_at = excluded.expires_at
      where idempotency_keys.expires_at <= ${now}
    returning 1 as saved
  `.execute(trx);
  return rows.length === 1;
}

export type OneStatementOutcome =
  | { kind: 'written' }
  | { kind: 'busy' }
  | { kind: 'stored'; stored: StoredResponse }
  /** A key row (live or expired) blocked the insert: nothing was written. */
  | { kind: 'conflict' };

/**
 * The whole idempotent insert as one statement, so one round trip and no explicit transaction:
 * read what is stored for the key; if nothing, try the key's lock; if it was free, insert the row
 * and the stored response. The key row is inserted without ON CONFLICT on purpose: a row committed
 * by a racing request (or an expired one) fails the statement, which then writes nothing at all.
 */
export async function insertDeferredWithKey(
  db: Kysely<Database>,
  insert: DeferredInsert,
  scope: KeyScope,
  response: StoredResponse,
  now: Date,
  expiresAt: Date,
): Promise<OneStatementOutcome> {
  try {
    const { rows } = await insertWithKey[insert.table](db, [
      scope.orgId,
      scope.env,
      scope.key,
      now,
      lockName(scope),
      rowJson(insert),
      response.fingerprint,
      response.status,
      response.bodyText,
      JSON.stringify(response.headers),
      expiresAt,
    ]);
    const row = rows[0]!;
    if (row.fingerprint !== null) {
      return { kind: 'stored', stored: { fingerprint: row.fingerprint, status: row.response_status!, bodyText: row.response_body ?? 'null', headers: row.response_headers ?? {} } };
    }
    if (row.locked === false) return { kind: 'busy' };
    return { kind: 'written' };
  } catch (error) {
    if ((error as { code?: string }).code === '23505' && (error as { table?: string; constraint?: string }).constraint === 'idempotency_keys_pk') {
      return { kind: 'conflict' };
    }
    throw error;
  }
}

interface OneStatementRow {
  locked: boolean | null;
  written: number;
  fingerprint: string | null;
  response_status: number | null;
  response_body: string | null;
  response_headers: Record<string, string> | null;
}

/**
 * The statement of insertDeferredWithKey, one per table, written once (server/db/statements.ts).
 * $1 org, $2 env, $3 key, $4 now, $5 the key's lock name, $6 the row as JSON, $7 fingerprint,
 * $8 status, $9 body, $10 headers, $11 expiry.
 */
const insertWithKeySql = (table: DeferredInsert['table']) => `
  with existing as (
    select fingerprint, response_status, response_body::text as response_body, response_headers from idempotency_keys
    where org_id = $1::uuid and env = $2::text and key = $3::text and expires_at > $4::timestamptz
  ),
  claim as (
    select case when exists (select 1 from existing) then null
                else pg_try_advisory_xact_lock(hashtextextended($5::text, 0)) end as locked
  ),
  written as (
    insert into ${table}
    select * from json_populate_record(null::${table}, $6::json)
    where (select locked from claim)
    returning 1
  ),
  saved as (
    insert into idempotency_keys (org_id, env, key, fingerprint, response_status, response_body, response_headers, created_at, expires_at)
    select $1::uuid, $2::text, $3::text, $7::text, $8::integer, $9::json, $10::json, $4::timestamptz, $11::timestamptz
    from written
    returning 1
  )
  select (select locked from claim) as locked, (select count(*) from saved)::int as written,
         e.fingerprint, e.response_status, e.response_body, e.response_headers
  from (select 1) as one left join existing e on true`;

const insertWithKey = {
  clients: statement<OneStatementRow>('insert_client_with_key', insertWithKeySql('clients')),
  api_tokens: statement<OneStatementRow>('insert_token_with_key', insertWithKeySql('api_tokens')),
};

/** Removes the key's row if it has expired (so a new request may take the key). */
export async function deleteExpiredKey(db: Kysely<Database>, scope: KeyScope, now: Date): Promise<void> {
  await db
    .deleteFrom('idempotency_keys')
    .where('org_id', '=', scope.orgId)
    .where('env', '=', scope.env)
    .where('key', '=', scope.key)
    .where('expires_at', '<=', now)
    .execute();
}
