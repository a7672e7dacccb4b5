/**
 * The first checks of every request, in the order docs/architecture.md gives: the token (401, then 403 for a
 * missing scope), then the rate limit (429), then the concurrency limit (429); validation and the
 * handler come after. They are one middleware because which budget a request spends depends on
 * the token check: its tenant's, or its client address's. Every request counts, whatever its
 * answer; only the operations that need no token (GET /healthz) are neither checked nor counted.
 */
import type { RequestHandler, Response } from 'express';
import { authenticate, requireScopes } from '../auth/auth.js';
import type { Caller } from '../shared/tenant.js';
import type { LastUsedRecorder } from '../auth/last-used.js';
import type { TokenLookup } from '../auth/token-lookup.js';
import type { ConcurrencyLimit } from '../rate-limit/concurrency.js';
import type { Limiter, RateLimits, RateLimitVerdict } from '../rate-limit/rate-limits.js';
import { ApiError } from '../shared/errors.js';

export interface AuthorizeAndLimitDeps {
  tokens: TokenLookup;
  /** Undefined when rate limiting is switched off. */
  limits: RateLimits | undefined;
  /** Undefined when the concurrency limit is switched off. */
  concurrency: ConcurrencyLimit | undefined;
  recordLastUsed: LastUsedRecorder;
  /** Told of every 429, by the limit that refused it (metrics). */
  countRefusal?: ((limiter: Limiter) => void) | undefined;
}

/** Puts the verdict's fields on the answer, whatever it will be. */
function setFields(res: Response, verdict: RateLimitVerdict | undefined): void {
  for (const [name, value] of Object.entries(verdict?.headers ?? {})) res.setHeader(name, value);
}

export function authorizeAndLimit({ tokens, limits, concurrency, recordLastUsed, countRefusal }: AuthorizeAndLimitDeps): RequestHandler {
  /** Throws the verdict's 429, if it has one. */
  const refuseOver = (verdict: RateLimitVerdict | undefined, limiter: Limiter) => {
    if (!verdict?.refusal) return;
    countRefusal?.(limiter);
    throw verdict.refusal;
  };
  /** The verdict's fields on the answer, then its 429 if it has one. */
  const apply = (res: Response, verdict: RateLimitVerdict | undefined, limiter: Limiter) => {
    setFields(res, verdict);
    refuseOver(verdict, limiter);
  };

  /** Takes one of the organisation's slots until the answer is sent or the connection closes, whichever comes first. */
  const enter = (orgId: string, res: Response) => {
    let release: () => void;
    try {
      release = concurrency!.enter(orgId);
    } catch (error) {
      countRefusal?.('concurrency');
      throw error;
    }
    // 'close' comes after the answer is sent, after an error's answer too, or when the client
    // goes away first; a connection that closed while the token was being checked is over already.
    if (res.closed) release();
    else res.once('close', release);
  };

  return async (req, res, next) => {
    const op = req.operation;
    if (op && !op.authenticated) return next();
    apply(res, limits?.refuseBlockedAddress(req.ip), 'address');
    if (!op) {
      // Not an operation of the API (the validator answers 404 or 405): no token is checked.
      apply(res, await limits?.countAddress(req.ip), 'address');
      return next();
    }

    let auth: Caller;
    try {
      auth = await authenticate(tokens, req.headers.authorization);
    } catch (error) {
      if (error instanceof ApiError) apply(res, await limits?.countAddress(req.ip), 'address');
      throw error;
    }
    req.auth = auth;
    recordLastUsed(auth.tokenId, res);
    const verdict = await limits?.countTenant(auth);
    setFields(res, verdict);
    requireScopes(auth, op.scopes);
    refuseOver(verdict, 'tenant');
    if (concurrency) enter(auth.orgId, res);
    next();
  };
}
