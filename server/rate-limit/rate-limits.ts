/**
 * Rate limits (docs/behaviour.md, "Rate limits"), counted by rate-limiter-flexible: in memory on the
 * embedded database (one process); in Redis when REDIS_URL is set (server/rate-limit/redis.ts);
 * otherwise in PostgreSQL, so that every server process on that database spends the same budgets.
 *
 * Two policies. `tenant`: requests made with a valid token, per tenant (the token's organisation
 * and environment), one budget shared by all of the tenant's tokens, so that minting tokens buys
 * no requests. `address`: requests without a valid token, per client address, a smaller budget so
 * that guessing tokens is slow. An address over its budget is refused outright, valid token or not,
 * until its window ends: were a valid token let through, a right guess would show itself among
 * the refusals.
 */
import type { Attributes } from '@opentelemetry/api';
import ipaddr from 'ipaddr.js';
import type pg from 'pg';
import { RateLimiterMemory, RateLimiterPostgres, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Caller } from '../shared/tenant.js';
import { ApiError } from '../shared/errors.js';
import { inSpan } from '../shared/tracing.js';
import type { RedisCounters } from './redis.js';

export interface RateLimitBudgets {
  /** Requests per window per tenant (organisation and environment), all of its tokens together. */
  perTenant: number;
  /** Requests per window per client address, for requests without a valid token. */
  perAddress: number;
  /** The window, in seconds; it starts with the first request that counts. */
  windowSeconds: number;
}

export const DEFAULT_RATE_LIMITS: Readonly<RateLimitBudgets> = { perTenant: 600, perAddress: 60, windowSeconds: 60 };

/** Which limit refused a request with 429: a policy's budget, or the concurrency limit (./concurrency.ts). */
export type Limiter = 'tenant' | 'address' | 'concurrency';

export interface RateLimitVerdict {
  /** `RateLimit-Policy` and `RateLimit`, for the answer whatever it turns out to be. */
  headers: Record<string, string>;
  /** The 429 to answer with when the request is over the budget. */
  refusal?: ApiError;
}

export interface RateLimits {
  /** Counts a request made with a valid token against its tenant's budget: its organisation and environment's. */
  countTenant(tenant: Pick<Caller, 'orgId' | 'env'>): Promise<RateLimitVerdict>;
  /** Counts a request without a valid token against its client address's budget. */
  countAddress(ip: string | undefined): Promise<RateLimitVerdict>;
  /**
   * The refusal of an address this process has seen go over its budget, until its window ends;
   * undefined for any other. Costs nothing while no address is over.
   */
  refuseBlockedAddress(ip: string | undefined): RateLimitVerdict | undefined;
}

interface Policy {
  name: 'tenant' | 'address';
  limiter: RateLimiterAbstract;
  /** Counts in this process's memory when `limiter`'s store fails (Redis), after telling `onStoreFailure`. */
  fallback?: RateLimiterAbstract;
  onStoreFailure?: (error: unknown) => void;
  /** Its count's span's attributes, built once; none when it counts in memory (no storage, no span). */
  spanAttributes?: Attributes;
  /** The `RateLimit-Policy` field: the same on every answer, so built once. */
  field: string;
  refusalMessage(retryAfter: number): string;
}

/** The table the PostgreSQL store counts in (see the rate_limits migration). */
const TABLE = 'rate_limits';

/** Where counters are kept: a PostgreSQL pool, Redis, or (undefined) this process's memory. */
export type CounterStore = pg.Pool | RedisCounters | undefined;

function isRedis(store: CounterStore): store is RedisCounters {
  return store !== undefined && 'onFailure' in store;
}

function createLimiter(
  keyPrefix: string,
  points: number,
  duration: number,
  store: CounterStore,
): Pick<Policy, 'limiter' | 'fallback' | 'onStoreFailure' | 'spanAttributes'> {
  const options = { keyPrefix, points, duration };
  if (!store) return { limiter: new RateLimiterMemory(options) };
  if (isRedis(store)) {
    return {
      spanAttributes: { 'rate_limit.policy': keyPrefix, 'rate_limit.store': 'redis' },
      // Not ready (reconnecting): fail at once rather than wait.
      limiter: new RateLimiterRedis({
        ...options,
        keyPrefix: `${store.keyPrefix}${keyPrefix}`,
        storeClient: store.client,
        rejectIfRedisNotReady: true,
      }),
      fallback: new RateLimiterMemory(options),
      onStoreFailure: store.onFailure,
    };
  }
  return {
    limiter: createPostgresLimiter(options, store),
    spanAttributes: { 'rate_limit.policy': keyPrefix, 'rate_limit.store': 'postgresql' },
  };
}

function createPostgresLimiter(options: { keyPrefix: string; points: number; duration: number }, pool: pg.Pool): RateLimiterAbstract {
  return new RateLimiterPostgres({
    ...options,
    storeClient: pool,
    tableName: TABLE,
    tableCreated: true,
    // Should the table fail for a moment, count in this process's memory rather than fail requests.
    insuranceLimiter: new RateLimiterMemory(options),
  });
}

function verdictOf(policy: Policy, outcome: RateLimiterRes, refused: boolean): RateLimitVerdict {
  const seconds = Math.ceil(Math.max(outcome.msBeforeNext, 0) / 1000);
  if (!refused) {
    return { headers: { 'RateLimit-Policy': policy.field, RateLimit: `"${policy.name}";r=${outcome.remainingPoints};t=${seconds}` } };
  }
  const retryAfter = Math.max(seconds, 1);
  return {
    headers: { 'RateLimit-Policy': policy.field, RateLimit: `"${policy.name}";r=0;t=${retryAfter}` },
    refusal: new ApiError('rate_limited', policy.refusalMessage(retryAfter), { headers: { 'Retry-After': String(retryAfter) } }),
  };
}

/**
 * Counts one request of `key`. Where the counters are in a store (PostgreSQL, Redis) the count is
 * a `rate_limit.count` span when tracing is on (server/shared/tracing.ts), with
 * `rate_limit.policy`, `rate_limit.store` and whether it was refused; in memory it touches no
 * storage and is no span.
 */
function consume(policy: Policy, key: string): Promise<{ verdict: RateLimitVerdict; msBeforeNext: number }> {
  if (!policy.spanAttributes) return count(policy, key);
  return inSpan('rate_limit.count', policy.spanAttributes, async (span) => {
    const counted = await count(policy, key);
    span?.setAttribute('rate_limit.refused', counted.verdict.refusal !== undefined);
    return counted;
  });
}

async function count(policy: Policy, key: string): Promise<{ verdict: RateLimitVerdict; msBeforeNext: number }> {
  try {
    const outcome = await policy.limiter.consume(key).catch((error: unknown) => {
      // The store failed (Redis away): fail open, counting in this process's memory.
      if (error instanceof RateLimiterRes || !policy.fallback) throw error;
      policy.onStoreFailure?.(error);
      return policy.fallback.consume(key);
    });
    return { verdict: verdictOf(policy, outcome, false), msBeforeNext: outcome.msBeforeNext };
  } catch (outcome) {
    // The library rejects with its result when over the budget, and with an Error when it failed.
    if (!(outcome instanceof RateLimiterRes)) throw outcome;
    return { verdict: verdictOf(policy, outcome, true), msBeforeNext: outcome.msBeforeNext };
  }
}

/**
 * The key of a client address: an IPv4 address as such (also when it arrives IPv4-mapped), an
 * IPv6 address by its /64, since one subscriber commonly holds a whole /64.
 */
export function addressKey(ip: string | undefined): string {
  if (!ip || !ipaddr.isValid(ip)) return `unknown:${ip ?? ''}`;
  const address = ipaddr.process(ip);
  if (address.kind() === 'ipv4') return address.toString();
  return `${ipaddr.IPv6.networkAddressFromCIDR(`${address.toString()}/64`).toString()}/64`;
}

/** Blocked addresses are pruned of ended windows once there are this many. */
const BLOCKED_PRUNE_AT = 10_000;

export function createRateLimits(budgets: RateLimitBudgets, store?: CounterStore): RateLimits {
  const { perTenant, perAddress, windowSeconds } = budgets;
  const tenant: Policy = {
    name: 'tenant',
    ...createLimiter('tenant', perTenant, windowSeconds, store),
    field: `"tenant";q=${perTenant};w=${windowSeconds}`,
    refusalMessage: (retryAfter) =>
      `This organisation has made more than ${perTenant} requests in ${windowSeconds} seconds in this environment, ` +
      `the limit for all of its tokens together; retry in ${retryAfter} seconds.`,
  };
  const address: Policy = {
    name: 'address',
    ...createLimiter('address', perAddress, windowSeconds, store),
    field: `"address";q=${perAddress};w=${windowSeconds}`,
    refusalMessage: (retryAfter) =>
      `This address has made more than ${perAddress} requests without a valid token in ${windowSeconds} seconds, its limit; ` +
      `every request from it is refused for ${retryAfter} seconds.`,
  };

  /** Address key → when its window ends (ms since the epoch). */
  const blocked = new Map<string, number>();
  const block = (key: string, until: number) => {
    if (blocked.size >= BLOCKED_PRUNE_AT) {
      const now = Date.now();
      for (const [k, end] of blocked) if (end <= now) blocked.delete(k);
    }
    blocked.set(key, until);
  };

  return {
    countTenant: async ({ orgId, env }) => (await consume(tenant, `${orgId}:${env}`)).verdict,

    countAddress: async (ip) => {
      const key = addressKey(ip);
      const { verdict, msBeforeNext } = await consume(address, key);
      if (verdict.refusal) block(key, Date.now() + msBeforeNext);
      return verdict;
    },

    refuseBlockedAddress: (ip) => {
      if (blocked.size === 0) return undefined;
      const key = addressKey(ip);
      const until = blocked.get(key);
      if (until === undefined) return undefined;
      const msBeforeNext = until - Date.now();
      if (msBeforeNext <= 0) {
        blocked.delete(key);
        return undefined;
      }
      return verdictOf(address, new RateLimiterRes(0, msBeforeNext, perAddress + 1), true);
    },
  };
}
