import type { Kysely } from 'kysely';
import type { Database, Env, PlanName } from '../db/schema.js';

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

export async function insertToken(db: Kysely<Database>, token: NewToken): Promise<{ id: string; createdAt: Date }> {
  const row = await db
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
    .returning(['id', 'created_at'])
    .executeTakeFirstOrThrow();
  return { id: row.id, createdAt: row.created_at };
}
