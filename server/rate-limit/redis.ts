/**
 * Rate-limit counters in Redis (REDIS_URL): what a deployment of several processes keeps them in,
 * a round trip to Redis rather than a statement on PostgreSQL per request.
 *
 * When Redis goes away the service fails open: requests are not refused for want of a counter.
 * Each process then counts in its own memory (so every budget still holds per process, up to N
 * times looser across N processes), logs a warning (at most one every WARN_EVERY_MS), and counts
 * `rate_limit_store_failures_total`; once Redis answers again, counting goes back to it. A command
 * never waits for a reconnection: with no offline queue and a command timeout, a Redis that is
 * down or stuck costs a request at most COMMAND_TIMEOUT_MS.
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';

/** How long one counter command may take before the request is counted in memory instead. */
const COMMAND_TIMEOUT_MS = 500;
/** At most one warning this often while Redis is away. */
const WARN_EVERY_MS = 10_000;

export interface RedisCounters {
  client: Redis;
  /** Put before every counter's key (REDIS_KEY_PREFIX): deployments sharing one Redis keep apart. */
  keyPrefix: string;
  /** Told of every count Redis could not make (the request is then counted in memory). */
  onFailure(error: unknown): void;
  close(): Promise<void>;
}

/**
 * REDIS_URL (`redis://` or `rediss://`, with a user, a password and a database number) as
 * ioredis's options, read with the WHATWG URL parser: given the URL itself, ioredis reads it with
 * `url.parse`, which Node 24 deprecates with a warning (DEP0169) at every start.
 */
export function redisOptionsFromUrl(url: string): RedisOptions {
  const parsed = new URL(url);
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') throw new Error('REDIS_URL must be a redis:// or rediss:// URL');
  const db = parsed.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d+$/.test(db)) throw new Error('REDIS_URL: the path must be a database number (redis://host:6379/0)');
  return {
    // An IPv6 host comes in brackets.
    host: parsed.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    port: parsed.port === '' ? 6379 : Number(parsed.port),
    ...(parsed.username && { username: decodeURIComponent(parsed.username) }),
    ...(parsed.password && { password: decodeURIComponent(parsed.password) }),
    db: db === '' ? 0 : Number(db),
    ...(parsed.protocol === 'rediss:' && { tls: { servername: parsed.hostname } }),
  };
}

export function openRedisCounters(
  url: string,
  logger: Logger,
  options: { keyPrefix?: string; countFailure?: () => void } = {},
): RedisCounters {
  const { keyPrefix = 'clients-api:', countFailure = () => {} } = options;
  const client = new Redis({
    ...redisOptionsFromUrl(url),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: COMMAND_TIMEOUT_MS,
    connectTimeout: 2_000,
    // Reconnect forever, at most a second apart.
    retryStrategy: (attempt) => Math.min(attempt * 100, 1_000),
  });
  let failures = 0;
  let warnedAt = 0;
  // Connection errors are reported through onFailure when a count needs Redis; the listener keeps
  // ioredis from printing each reconnection attempt.
  client.on('error', () => {});
  client.on('ready', () => {
    if (failures > 0) logger.info({ failures }, 'rate-limit counters are back in Redis');
    failures = 0;
    warnedAt = 0;
  });
  return {
    client,
    keyPrefix,
    onFailure(error) {
      failures++;
      countFailure();
      const now = Date.now();
      if (now - warnedAt >= WARN_EVERY_MS) {
        warnedAt = now;
        logger.warn({ err: error, failures }, 'Redis is unreachable: rate limits are counted in this process only until it is back');
      }
    },
    close: async () => {
      await client.quit().catch(() => client.disconnect());
    },
  };
}
