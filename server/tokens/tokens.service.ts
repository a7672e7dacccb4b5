import type { Kysely } from 'kysely';
import type { components } from '../../generated/api.js';
import type { Database, Env, PlanName } from '../db/schema.js';
import { isCalendarDate } from '../shared/date-time.js';
import { isUuid } from '../shared/ids.js';
import { ApiError, notFound, validationFailed } from '../shared/errors.js';
import { decodeKeyset, keysetPage, type KeysetPage } from '../shared/keyset-cursor.js';
import { upsertOrganisation } from '../orgs/orgs.queries.js';
import type { Caller, Tenant } from '../shared/tenant.js';
import { parameterDefault, parameterMessage, SCOPES, type Scope } from '../shared/spec-values.js';
import { generateToken, hashSecret } from './token-format.js';
import { toToken, type Token } from './tokens.mapper.js';
import {
  countActiveTokensLocked,
  insertToken,
  listTokenPage,
  revokeToken as revokeTenantToken,
  type ListedTokenRow,
} from './tokens.queries.js';
import { inTransaction, type KeyedRequest, runKeyedWrite, type WriteAnswer } from '../idempotency/idempotency.js';

/**
 * Active tokens (neither revoked nor expired) a tenant may have at once. Tokens share their
 * tenant's rate-limit budget, so the bound is not about requests: it keeps the list of tokens one
 * that a person can still review, and a leaked `tokens:manage` token from minting without end.
 */
export const MAX_ACTIVE_TOKENS = 100;

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

/**
 * Generates a token and stores only the hash of its secret; the whole token is returned, once.
 * In a transaction (`trx`): the tenant's count of active tokens is locked until it ends.
 */
async function issueToken(trx: Kysely<Database>, request: NewTokenRequest, now: Date): Promise<{ token: string; row: ListedTokenRow }> {
  if ((await countActiveTokensLocked(trx, request, now)) >= MAX_ACTIVE_TOKENS) {
    throw new ApiError(
      'token_limit_reached',
      `This organisation has ${MAX_ACTIVE_TOKENS} active tokens in its ${request.env} environment, the most it can have; revoke one first.`,
    );
  }
  const generated = generateToken(request.env);
  const row = await insertToken(trx, { ...request, prefix: generated.prefix, secretHash: hashSecret(generated.secret) });
  return { token: generated.token, row };
}

/**
 * "Settings → API": creates the organisation if needed and mints a token for it, in one
 * transaction; within MAX_ACTIVE_TOKENS like the API's.
 */
export async function mintTokenForOrganisation(db: Kysely<Database>, request: MintForOrganisation): Promise<MintedToken> {
  const env = request.env ?? 'test';
  const scopes = request.scopes ?? [...SCOPES];
  return db.transaction().execute(async (trx) => {
    const org = await upsertOrganisation(trx, request.orgName, request.plan);
    const { token, row } = await issueToken(
      trx,
      { orgId: org.id, env, name: request.tokenName ?? 'CLI', scopes, expiresAt: null },
      new Date(),
    );
    return { token, tokenId: row.id, orgId: org.id, env, scopes, plan: org.plan };
  });
}

export type TokenInput = components['schemas']['TokenCreate'];

/**
 * POST /tokens: a token can grant only scopes it holds, in its own organisation and environment,
 * and cannot outlive itself (without an expiry of its own asked for, the new one gets the caller's).
 */
export function createToken<A extends WriteAnswer>(
  db: Kysely<Database>,
  caller: Caller,
  input: TokenInput,
  now: Date,
  key: KeyedRequest | undefined,
  answer: (minted: { data: Token; token: string }) => A,
): Promise<A> {
  return runKeyedWrite(db, key, () => inTransaction(async (trx) => answer(await mintForCaller(trx, caller, input, now))));
}

async function mintForCaller(trx: Kysely<Database>, caller: Caller, input: TokenInput, now: Date): Promise<{ data: Token; token: string }> {
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
  const { token, row } = await issueToken(
    trx,
    { orgId: caller.orgId, env: caller.env, name: input.name.trim(), scopes: input.scopes, expiresAt: asked ?? caller.expiresAt },
    now,
  );
  return { data: toToken(row), token };
}

/** The spec's own words for a cursor this API did not give out, and its page size when none is asked for. */
const CURSOR_ERROR = parameterMessage('listTokens', 'cursor');
const DEFAULT_LIMIT = parameterDefault('listTokens', 'limit') as number;

/** GET /tokens: a page of the tenant's tokens, newest first. */
export async function listTokens(
  db: Kysely<Database>,
  tenant: Tenant,
  query: { limit?: number | undefined; cursor?: string | undefined },
): Promise<KeysetPage<Token>> {
  // The validator fills in the spec's default; the fallback only satisfies the optional type.
  const limit = query.limit ?? DEFAULT_LIMIT;
  const after = query.cursor === undefined ? undefined : decodeKeyset(query.cursor, () => validationFailed({ cursor: CURSOR_ERROR }));
  // One row more than the page tells whether another page follows.
  return keysetPage(await listTokenPage(db, tenant, { limit: limit + 1, after }), limit, toToken);
}

/**
 * DELETE /tokens/{id}: revokes the token, and `forget`s it in this process's cache (before the
 * commit: the cache does not trust the prefix again until well after it), so that it is refused
 * here at once.
 */
export function revokeToken<A extends WriteAnswer>(
  db: Kysely<Database>,
  caller: Caller,
  id: string,
  key: KeyedRequest | undefined,
  forget: (prefix: string) => void,
  answer: (revoked: Token) => A,
): Promise<A> {
  return runKeyedWrite(db, key, () =>
    inTransaction(async (trx) => {
      // Not a UUID as the API writes it: no token has it, and the database would refuse the comparison.
      const row = isUuid(id) ? await revokeTenantToken(trx, id, caller) : undefined;
      if (!row) throw notFound('No such token.');
      forget(row.prefix);
      return answer(toToken(row));
    }),
  );
}
