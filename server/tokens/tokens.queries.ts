import { type Kysely, sql } from 'kysely';
import type { ApiTokenRow, Database, Env, PlanName } from '../db/schema.js';
import { afterPosition, type KeysetPosition, positionOf } from '../shared/keyset-cursor.js';
import type { Tenant } from '../shared/tenant.js';

/** Every column but the secret's hash, which never leaves findTokenByPrefix. */
const LISTED_COLUMNS = [
  'id',
  'org_id',
  'env',
  'name',
  'prefix',
  'scopes',
  'created_at',
  'last_used_at',
  'expires_at',
  'revoked_at',
] as const;
export type ListedTokenRow = Pick<ApiTokenRow, (typeof LISTED_COLUMNS)[number]>;

export interface TokenForAuth {
  id: string;
  orgId: string;
  env: Env;
  plan: PlanName;
  secretHash: Uint8Array;
  scopes: string[];
  expiresAt: Date | null;
  revokedAt: Date | null;
}

export async function findTokenByPrefix(db: Kysely<Database>, prefix: string): Promise<TokenForAuth | undefined> {
  const row = await db
    .selectFrom('api_tokens')
    .innerJoin('organisations', 'organisations.id', 'api_tokens.org_id')
    .select(['api_tokens.id', 'org_id', 'env', 'plan', 'secret_hash', 'scopes', 'expires_at', 'revoked_at'])
    .where('prefix', '=', prefix)
    .executeTakeFirst();
  if (!row) return undefined;
  return {
    id: row.id,
    orgId: row.org_id,
    env: row.env,
    plan: row.plan,
    secretHash: row.secret_hash,
    scopes: row.scopes,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
  };
}

export interface NewToken {
  orgId: string;
  env: Env;
  name: string;
  prefix: string;
  secretHash: Buffer;
  scopes: string[];
  expiresAt?: Date | null;
}

export async function insertToken(db: Kysely<Database>, token: NewToken): Promise<ListedTokenRow> {
  return db
    .insertInto('api_tokens')
    .values({
      org_id: token.orgId,
      env: token.env,
      name: token.name,
      prefix: token.prefix,
      secret_hash: token.secretHash,
      scopes: token.scopes,
      expires_at: token.expiresAt ?? null,
    })
    .returning(LISTED_COLUMNS)
    .executeTakeFirstOrThrow();
}

/**
 * The tenant's active tokens (neither revoked nor expired at `now`), counted under a lock that
 * the transaction holds to its end: two mints for the last place queue here, and the second
 * counts the first's token.
 */
export async function countActiveTokensLocked(trx: Kysely<Database>, tenant: Pick<Tenant, 'orgId' | 'env'>, now: Date): Promise<number> {
  await sql`select pg_advisory_xact_lock(hashtextextended(${`api_tokens:${tenant.orgId}:${tenant.env}`}, 0))`.execute(trx);
  const { n } = await trx
    .selectFrom('api_tokens')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('org_id', '=', tenant.orgId)
    .where('env', '=', tenant.env)
    .where('revoked_at', 'is', null)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
    .executeTakeFirstOrThrow();
  return Number(n);
}

export type TokenPageRow = ListedTokenRow & { position: string };

/**
 * Newest first, by keyset: `(created_at, id)` below `after`, the last row of the page before;
 * `id` breaks ties between tokens minted in the same microsecond. Each row carries its exact
 * `position` (created_at with microseconds, in UTC), for the next cursor.
 */
export async function listTokenPage(
  db: Kysely<Database>,
  tenant: Tenant,
  page: { limit: number; after?: KeysetPosition | undefined },
): Promise<TokenPageRow[]> {
  let query = db
    .selectFrom('api_tokens')
    .select(LISTED_COLUMNS)
    .select(positionOf('created_at').as('position'))
    .where('org_id', '=', tenant.orgId)
    .where('env', '=', tenant.env);
  if (page.after) query = query.where(afterPosition(page.after, 'created_at', 'id'));
  return query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit).execute();
}

/** Every token of an organisation, both environments: for its administrator (the CLI). */
export async function listTokensOfOrganisation(db: Kysely<Database>, orgId: string): Promise<ListedTokenRow[]> {
  return db
    .selectFrom('api_tokens')
    .select(LISTED_COLUMNS)
    .where('org_id', '=', orgId)
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .execute();
}

/**
 * Revokes a token of the tenant, or of any organisation when `tenant` is 'any' (the CLI); a token
 * revoked before keeps its first revokedAt. Undefined when there is no such token.
 */
export async function revokeToken(db: Kysely<Database>, id: string, tenant: Tenant | 'any'): Promise<ListedTokenRow | undefined> {
  let query = db
    .updateTable('api_tokens')
    .set((eb) => ({ revoked_at: eb.fn.coalesce('revoked_at', eb.fn<Date>('now', [])) }))
    .where('id', '=', id);
  if (tenant !== 'any') query = query.where('org_id', '=', tenant.orgId).where('env', '=', tenant.env);
  return query.returning(LISTED_COLUMNS).executeTakeFirst();
}

/** Sets lastUsedAt, unless another request (or process) did less than `interval` ms before `at`. */
export async function touchTokenLastUsed(db: Kysely<Database>, id: string, at: Date, intervalMs: number): Promise<void> {
  await db
    .updateTable('api_tokens')
    .set({ last_used_at: at })
    .where('id', '=', id)
    .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<=', new Date(at.getTime() - intervalMs))]))
    .execute();
}
