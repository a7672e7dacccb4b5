/**
 * The first checks of every request, in product.md's order: the token (401, then 403 for a
 * missing scope), then the rate limit (429); validation and the handler come after. The two are
 * one middleware because which budget a request spends depends on the token check: a valid
 * token's own, or its client address's. Every request counts, whatever its answer; only the
 * operations that need no token (GET /healthz) are neither checked nor counted.
 */
import type { RequestHandler, Response } from 'express';
import { authenticate, requireScopes, type AuthContext } from '../auth/auth.js';
import type { LastUsedRecorder } from '../auth/last-used.js';
import type { TokenLookup } from '../auth/token-lookup.js';
import type { RateLimits, RateLimitVerdict } from '../rate-limit/rate-limits.js';
import { ApiError } from '../shared/errors.js';

export interface AuthorizeAndLimitDeps {
  tokens: TokenLookup;
  /** Undefined when rate limiting is switched off. */
  limits: RateLimits | undefined;
  recordLastUsed: LastUsedRecorder;
}

/** Puts the verdict's fields on the answer, whatever it will be. */
function setFields(res: Response, verdict: RateLimitVerdict | undefined): void {
  for (const [name, value] of Object.entries(verdict?.headers ?? {})) res.setHeader(name, value);
}

/** The same, then throws the verdict's 429 if it has one. */
function apply(res: Response, verdict: RateLimitVerdict | undefined): void {
  setFields(res, verdict);
  if (verdict?.refusal) throw verdict.refusal;
}

export function authorizeAndLimit({ tokens, limits, recordLastUsed }: AuthorizeAndLimitDeps): RequestHandler {
  return async (req, res, next) => {
    const op = req.operation;
    if (op && !op.authenticated) return next();
    apply(res, limits?.refuseBlockedAddress(req.ip));
    if (!op) {
      // Not an operation of the API (the validator answers 404 or 405): no token is checked.
      apply(res, await limits?.countAddress(req.ip));
      return next();
    }

    let auth: AuthContext;
    try {
      auth = await authenticate(tokens, req.headers.authorization);
    } catch (error) {
      if (error instanceof ApiError) apply(res, await limits?.countAddress(req.ip));
      throw error;
    }
    req.auth = auth;
    recordLastUsed(auth.tokenId, res);
    const verdict = await limits?.countToken(auth);
    setFields(res, verdict);
    requireScopes(auth, op.scopes);
    if (verdict?.refusal) throw verdict.refusal;
    next();
  };
}
