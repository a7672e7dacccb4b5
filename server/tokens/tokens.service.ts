import type { Kysely } from 'kysely';
import type { components } from '../../generated/api.js';
import type { Database, Env, PlanName } from '../db/schema.js';
import { isCalendarDate } from '../shared/date-time.js';
import { isUuid } from '../shared/ids.js';
import { ApiError, notFound, validationFailed } from '../shared/errors.js';
import { upsertOrganisation } from '../orgs/orgs.queries.js';
import type { AuthContext } from '../auth/auth.js';
import { SCOPES, type Scope } from '../shared/spec-values.js';
import { generateToken, hashSecret } from './token-format.js';
import { toToken, type Token } from './tokens.mapper.js';
import { insertToken, listTokens as listTenantTokens, revokeToken as revokeTenantToken, type ListedTokenRow } from './tokens.queries.js';

export interface MintedToken {
  /** The whole token: shown once, never stored. */
  token: string;
  tokenId: string;
  orgId: string;
  env: Env;
  scopes: Scope[];
  plan: PlanName;
}

export interface MintForOrganisation {
  orgName: string;
  plan?: PlanName | undefined;
  env?: Env | undefined;
  scopes?: Scope[] | undefined;
  tokenName?: string | undefined;
}

interface NewTokenRequest {
  orgId: string;
  env: Env;
  name: string;
  scopes: Scope[];
  expiresAt: Date | null;
}

/** Generates a token and stores only the hash of its secret; the whole token is returned, once. */
async function issueToken(db: Kysely<Database>, request: NewTokenRequest): Promise<{ token: string; row: ListedTokenRow }> {
  const generated = generateToken(request.env);
  const row = await insertToken(db, { ...request, prefix: generated.prefix, secretHash: hashSecret(generated.secret) });
  return { token: generated.token, row };
}

/** "Settings → API": creates the organisation if needed and mints a token for it, in one transaction. */
export async function mintTokenForOrganisation(db: Kysely<Database>, request: MintForOrganisation): Promise<MintedToken> {
  const env = request.env ?? 'test';
  const scopes = request.scopes ?? [...SCOPES];
  return db.transaction().execute(async (trx) => {
    const org = await upsertOrganisation(trx, request.orgName, request.plan);
    const { token, row } = await issueToken(trx, { orgId: org.id, env, name: request.tokenName ?? 'CLI', scopes, expiresAt: null });
    return { token, tokenId: row.id, orgId: org.id, env, scopes, plan: org.plan };
  });
}

export type TokenInput = components['schemas']['TokenCreate'];

/**
 * POST /tokens: a token can grant only scopes it holds, in its own organisation and environment,
 * and cannot outlive itself (without an expiry of its own asked for, the new one gets the caller's).
 */
export async function createToken(
  db: Kysely<Database>,
  caller: AuthContext,
  input: TokenInput,
  now = new Date(),
): Promise<{ data: Token; token: string }> {
  const lacking = input.scopes.find((scope) => !caller.scopes.includes(scope));
  if (lacking) {
    throw new ApiError('forbidden', `This token cannot grant the scope ${lacking}: a token can grant only scopes it holds itself.`);
  }
  if (input.expiresAt && !isCalendarDate(input.expiresAt))
    throw validationFailed({ expiresAt: 'must be a date-time of a day that exists' });
  const asked = input.expiresAt ? new Date(input.expiresAt) : null;
  if (asked && asked <= now) throw validationFailed({ expiresAt: 'must be in the future' });
  if (asked && caller.expiresAt && asked > caller.expiresAt) {
    throw validationFailed({ expiresAt: `must not be later than this token's own expiry, ${caller.expiresAt.toISOString()}` });
  }
  const { token, row } = await issueToken(db, {
    orgId: caller.orgId,
    env: caller.env,
    name: input.name.trim(),
    scopes: input.scopes,
    expiresAt: asked ?? caller.expiresAt,
  });
  return { data: toToken(row), token };
}

export async function listTokens(db: Kysely<Database>, caller: AuthContext): Promise<Token[]> {
  return (await listTenantTokens(db, caller)).map(toToken);
}

export async function revokeToken(db: Kysely<Database>, caller: AuthContext, id: string): Promise<Token> {
  // Not a UUID as the API writes it: no token has it, and the database would refuse the comparison.
  const row = isUuid(id) ? await revokeTenantToken(db, id, caller) : undefined;
  if (!row) throw notFound('No such token.');
  return toToken(row);
}
