import { forbidden, unauthenticated } from '../shared/errors.js';
import { parseToken, secretMatches } from '../tokens/token-format.js';
import type { TokenLookup } from './token-lookup.js';
import type { Caller } from '../shared/tenant.js';

/**
 * Resolves an Authorization header to its token, or throws 401 saying which check failed. An
 * unknown prefix and a wrong secret get the same answer, so nobody learns which prefixes exist.
 */
export async function authenticate(tokens: TokenLookup, header: string | undefined, now: Date = new Date()): Promise<Caller> {
  if (!header) throw unauthenticated('No token: send the header "Authorization: Bearer <token>".');
  const match = /^Bearer +(\S+) *$/i.exec(header);
  if (!match) throw unauthenticated('The Authorization header must be "Bearer <token>".');
  const parsed = parseToken(match[1]!);
  if (!parsed) throw unauthenticated('The token is malformed: expected hsk_<env>_<prefix12>_<secret32>.');
  const token = await tokens.find(parsed.prefix);
  const valid = secretMatches(parsed.secret, token?.secretHash) && token!.env === parsed.env;
  if (!valid || !token) throw unauthenticated('The token is not valid.');
  if (token.revokedAt) throw unauthenticated('The token has been revoked.');
  if (token.expiresAt && token.expiresAt <= now) throw unauthenticated('The token has expired.');
  return { tokenId: token.id, orgId: token.orgId, env: token.env, plan: token.plan, scopes: token.scopes, expiresAt: token.expiresAt };
}

export function requireScopes(auth: Caller, needed: readonly string[]): void {
  const missing = needed.find((scope) => !auth.scopes.includes(scope));
  if (missing) throw forbidden(missing);
}
