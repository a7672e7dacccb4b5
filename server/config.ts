/** Configuration from the environment, read once at start-up. */
import { DEFAULT_REPLICA_MAX_LAG_MS, type DatabaseOptions } from './db/database.js';
import type { DatabasePooling } from './db/handle.js';
import { REPLICA_CHECK_INTERVAL_MS } from './db/replica.js';
import { DEFAULT_CONCURRENCY_LIMIT } from './rate-limit/concurrency.js';
import { DEFAULT_RATE_LIMITS, type RateLimitBudgets } from './rate-limit/rate-limits.js';
import { redisOptionsFromUrl } from './rate-limit/redis.js';

export interface Config {
  port: number;
  host: string;
  /** A PostgreSQL server; when unset the embedded PGlite under `dataDir` is used. */
  databaseUrl: string | undefined;
  dataDir: string;
  logLevel: string;
  /** Validate every response against the spec (on in tests, off in production). */
  validateResponses: boolean;
  /** Requests per window per tenant (RATE_LIMIT) and per client address; false: rate limiting is off. */
  rateLimits: RateLimitBudgets | false;
  /** CONCURRENCY_LIMIT: requests of one organisation in flight at once in this process; false (0): no limit. */
  concurrencyLimit: number | false;
  /** Express's `trust proxy`: which proxies may tell the client's address in X-Forwarded-For. */
  trustProxy: boolean | number | string;
  /** SHUTDOWN_DELAY: after SIGTERM, how long readiness is 503 while everything is still served. */
  shutdownDelayMs: number;
  /** SHUTDOWN_TIMEOUT: how long the drain may take before what still runs is cut (exit 1). */
  shutdownTimeoutMs: number;
  /**
   * KEEP_ALIVE_TIMEOUT: how long an idle keep-alive connection is kept, told to clients as
   * `Keep-Alive: timeout=N`; the drain waits that long for idle connections (server/lifecycle/drain.ts).
   */
  keepAliveTimeoutMs: number;
  /** METRICS_PORT: where `GET /metrics` is served, on its own listener; undefined: nowhere. */
  metricsPort: number | undefined;
  /** METRICS_HOST: the metrics listener's address (HOST when unset). */
  metricsHost: string;
  /**
   * DATABASE_POOLING: `transaction` when DATABASE_URL goes through a transaction-mode pooler
   * (PgBouncer): no named prepared statements, no session settings. `session` (the default): a
   * direct connection, or a pooler in session mode.
   */
  databasePooling: DatabasePooling;
  /**
   * DATABASE_STATEMENT_TIMEOUT_MS: how long one statement may run on PostgreSQL before it is
   * cancelled (the request is answered 503); 0: no limit. Migrations run without it.
   */
  databaseStatementTimeoutMs: number;
  /**
   * DATABASE_REPLICA_URL: a streaming replica of DATABASE_URL (or a balancer in front of several)
   * that lists, searches and the feed may read when the caller sends `Read-Consistency: eventual`.
   */
  databaseReplicaUrl: string | undefined;
  /**
   * DATABASE_REPLICA_MAX_LAG_MS: the staleness bound of an eventual read. A replica is read only
   * while it is proven to hold every write acknowledged longer ago than this; else the primary is.
   */
  databaseReplicaMaxLagMs: number;
  /** REDIS_URL: where rate-limit counters are kept when set (else PostgreSQL, or memory when embedded). */
  redisUrl: string | undefined;
  /** REDIS_KEY_PREFIX: before every counter's key in Redis (`clients-api:`), for deployments sharing one. */
  redisKeyPrefix: string;
  /**
   * WEBHOOK_SECRET_KEY: base64 of the 32-byte key that encrypts webhook signing secrets. Needed
   * on PostgreSQL (or WEBHOOK_SECRET_KEY_FILE): server/webhook-delivery/secret-key.ts.
   */
  webhookSecretKey: string | undefined;
  /**
   * WEBHOOK_SECRET_KEY_FILE: a file holding that key, outside DATA_DIR. Unset: on the embedded
   * database, `.secrets/webhook-secret.key` beside DATA_DIR, made on first start.
   */
  webhookSecretKeyFile: string | undefined;
  /** WEBHOOK_ALLOW_PRIVATE_NETWORKS=true: deliver to private and loopback addresses (development and tests only). */
  webhookAllowPrivateNetworks: boolean;
  /** WEBHOOK_WORKER=false: `npm start` serves the API only; deliveries are left to `npm run worker`. */
  webhookWorker: boolean;
  /** WEBHOOK_POLL_INTERVAL_MS: how often the worker looks for new events and due deliveries. */
  webhookPollIntervalMs: number;
  /** WEBHOOK_TIMEOUT_MS: how long one delivery attempt may take (10 s). */
  webhookTimeoutMs: number;
  /** WEBHOOK_CONCURRENCY: delivery attempts in flight at once per worker (128); one organisation gets at most half. */
  webhookConcurrency: number;
  /**
   * WEBHOOK_ENDPOINT_CONCURRENCY: the most delivery attempts in flight at once per endpoint, across all
   * workers (64); each endpoint's limit starts at 4 and adapts between 1 and this to its answers.
   */
  webhookEndpointConcurrency: number;
  /** SEARCH_INDEXER=false: `npm start` leaves the search table's indexing to `npm run worker` (server/clients/search-indexer.ts). */
  searchIndexer: boolean;
  /** SEARCH_INDEX_INTERVAL_MS: how often the search indexer looks for new events once caught up (200). */
  searchIndexIntervalMs: number;
  /** SEARCH_INDEX_BATCH: events the search indexer takes per statement (500). */
  searchIndexBatch: number;
}

/**
 * Far above the slowest statement the server sends on purpose (a purge batch, a claim of
 * deliveries, a bounded search: all batched), so that only a statement stuck behind a lock or a
 * database in trouble meets it; and under a load balancer's usual 30 s, so that the client gets
 * the 503 rather than a cut connection.
 */
const DEFAULT_STATEMENT_TIMEOUT_MS = 10_000;

function databasePooling(raw: string | undefined): DatabasePooling {
  if (raw === undefined || raw === '' || raw === 'session') return 'session';
  if (raw === 'transaction') return 'transaction';
  throw new Error(`DATABASE_POOLING must be "session" or "transaction", not "${raw}"`);
}

/**
 * The lag is measured once a second: a bound below that would put the replica in and out of use
 * within every second, whatever its real lag.
 */
function replicaMaxLag(env: NodeJS.ProcessEnv): number {
  const value = integer('DATABASE_REPLICA_MAX_LAG_MS', DEFAULT_REPLICA_MAX_LAG_MS, env);
  if (value < REPLICA_CHECK_INTERVAL_MS)
    throw new Error(
      `DATABASE_REPLICA_MAX_LAG_MS must be at least ${REPLICA_CHECK_INTERVAL_MS} (the replica's lag is measured once a second), not "${value}"`,
    );
  return value;
}

function integer(name: string, fallback: number, env: NodeJS.ProcessEnv): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a whole number, not "${raw}"`);
  return value;
}

function flag(name: string, fallback: boolean, env: NodeJS.ProcessEnv): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (raw === 'true') return true;
  if (raw === 'false') return false;
  throw new Error(`${name} must be true or false, not "${raw}"`);
}

function trustProxy(raw: string | undefined): boolean | number | string {
  if (raw === undefined || raw === '' || raw === 'false') return false;
  if (raw === 'true') return true;
  return /^\d+$/.test(raw) ? Number(raw) : raw;
}

function rateLimits(env: NodeJS.ProcessEnv): RateLimitBudgets | false {
  const perTenant = integer('RATE_LIMIT', DEFAULT_RATE_LIMITS.perTenant, env);
  if (perTenant === 0) return false;
  const windowSeconds = integer('RATE_LIMIT_WINDOW', DEFAULT_RATE_LIMITS.windowSeconds, env);
  const perAddress = integer('RATE_LIMIT_UNAUTHENTICATED', DEFAULT_RATE_LIMITS.perAddress, env);
  if (windowSeconds === 0) throw new Error('RATE_LIMIT_WINDOW must be at least 1 (seconds)');
  if (perAddress === 0) throw new Error('RATE_LIMIT_UNAUTHENTICATED must be at least 1 (use RATE_LIMIT=0 to switch limiting off)');
  return { perTenant, perAddress, windowSeconds };
}

function keepAliveTimeoutMs(env: NodeJS.ProcessEnv): number {
  const seconds = integer('KEEP_ALIVE_TIMEOUT', 5, env);
  // 0 would be Node's "no timeout": idle connections kept for ever, announced to nobody.
  if (seconds === 0) throw new Error('KEEP_ALIVE_TIMEOUT must be at least 1 (seconds)');
  return seconds * 1000;
}

/** REDIS_URL, refused at start-up when it is not one (rather than at the first request's count). */
function redisUrl(raw: string | undefined): string | undefined {
  if (!raw) return undefined;
  redisOptionsFromUrl(raw);
  return raw;
}

/**
 * How every process opens the database from its configuration (server/db/database.ts): the server,
 * the worker and the CLI each add only what is theirs (a pool size, a replica, callbacks).
 */
export function databaseOptions(config: Config): DatabaseOptions {
  return {
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    pooling: config.databasePooling,
    statementTimeoutMs: config.databaseStatementTimeoutMs,
  };
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  return {
    port: integer('PORT', 3000, env),
    host: env.HOST || '127.0.0.1',
    databaseUrl: env.DATABASE_URL || undefined,
    dataDir: env.DATA_DIR || './data',
    logLevel: env.LOG_LEVEL || 'info',
    validateResponses: env.VALIDATE_RESPONSES === 'true',
    rateLimits: rateLimits(env),
    concurrencyLimit: integer('CONCURRENCY_LIMIT', DEFAULT_CONCURRENCY_LIMIT, env) || false,
    trustProxy: trustProxy(env.TRUST_PROXY),
    shutdownDelayMs: integer('SHUTDOWN_DELAY', 0, env) * 1000,
    shutdownTimeoutMs: integer('SHUTDOWN_TIMEOUT', 10, env) * 1000,
    keepAliveTimeoutMs: keepAliveTimeoutMs(env),
    metricsPort: env.METRICS_PORT === undefined || env.METRICS_PORT === '' ? undefined : integer('METRICS_PORT', 0, env),
    metricsHost: env.METRICS_HOST || env.HOST || '127.0.0.1',
    databasePooling: databasePooling(env.DATABASE_POOLING),
    databaseStatementTimeoutMs: integer('DATABASE_STATEMENT_TIMEOUT_MS', DEFAULT_STATEMENT_TIMEOUT_MS, env),
    databaseReplicaUrl: env.DATABASE_REPLICA_URL || undefined,
    databaseReplicaMaxLagMs: replicaMaxLag(env),
    redisUrl: redisUrl(env.REDIS_URL),
    redisKeyPrefix: env.REDIS_KEY_PREFIX ?? 'clients-api:',
    webhookSecretKey: env.WEBHOOK_SECRET_KEY || undefined,
    webhookSecretKeyFile: env.WEBHOOK_SECRET_KEY_FILE || undefined,
    webhookAllowPrivateNetworks: flag('WEBHOOK_ALLOW_PRIVATE_NETWORKS', false, env),
    webhookWorker: flag('WEBHOOK_WORKER', true, env),
    webhookPollIntervalMs: Math.max(1, integer('WEBHOOK_POLL_INTERVAL_MS', 1000, env)),
    webhookTimeoutMs: Math.max(1, integer('WEBHOOK_TIMEOUT_MS', 10_000, env)),
    webhookConcurrency: Math.max(1, integer('WEBHOOK_CONCURRENCY', 128, env)),
    webhookEndpointConcurrency: Math.max(1, integer('WEBHOOK_ENDPOINT_CONCURRENCY', 64, env)),
    searchIndexer: flag('SEARCH_INDEXER', true, env),
    searchIndexIntervalMs: Math.max(1, integer('SEARCH_INDEX_INTERVAL_MS', 200, env)),
    searchIndexBatch: Math.max(1, integer('SEARCH_INDEX_BATCH', 500, env)),
  };
}
