/** Configuration from the environment, read once at start-up. */
import type { DatabasePooling } from './db/handle.js';
import { DEFAULT_RATE_LIMITS, type RateLimitBudgets } from './rate-limit/rate-limits.js';

export interface Config {
  port: number;
  host: string;
  /** A PostgreSQL server; when unset the embedded PGlite under `dataDir` is used. */
  databaseUrl: string | undefined;
  dataDir: string;
  logLevel: string;
  /** Validate every response against the spec (on in tests, off in production). */
  validateResponses: boolean;
  /** Requests per window per token and per client address; false: rate limiting is off. */
  rateLimits: RateLimitBudgets | false;
  /** Express's `trust proxy`: which proxies may tell the client's address in X-Forwarded-For. */
  trustProxy: boolean | number | string;
  /** SHUTDOWN_DELAY: after SIGTERM, how long readiness is 503 while everything is still served. */
  shutdownDelayMs: number;
  /** SHUTDOWN_TIMEOUT: how long the drain may take before what still runs is cut (exit 1). */
  shutdownTimeoutMs: number;
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
  /** REDIS_URL: where rate-limit counters are kept when set (else PostgreSQL, or memory when embedded). */
  redisUrl: string | undefined;
  /** REDIS_KEY_PREFIX: before every counter's key in Redis (`clients-api:`), for deployments sharing one. */
  redisKeyPrefix: string;
  /** WEBHOOK_SECRET_KEY: base64 of the 32-byte key that encrypts webhook signing secrets. */
  webhookSecretKey: string | undefined;
  /** WEBHOOK_SECRET_KEY_FILE: where that key is kept when WEBHOOK_SECRET_KEY is unset (made on first start). */
  webhookSecretKeyFile: string;
  /** WEBHOOK_ALLOW_PRIVATE_NETWORKS=true: deliver to private and loopback addresses (development and tests only). */
  webhookAllowPrivateNetworks: boolean;
  /** WEBHOOK_WORKER=false: `npm start` serves the API only; deliveries are left to `npm run worker`. */
  webhookWorker: boolean;
  /** WEBHOOK_POLL_INTERVAL_MS: how often the worker looks for new events and due deliveries. */
  webhookPollIntervalMs: number;
  /** WEBHOOK_TIMEOUT_MS: how long one delivery attempt may take (10 s). */
  webhookTimeoutMs: number;
  /** WEBHOOK_CONCURRENCY: delivery attempts in flight at once per worker (16); one organisation gets at most half. */
  webhookConcurrency: number;
  /** WEBHOOK_ENDPOINT_CONCURRENCY: delivery attempts in flight at once per endpoint, across all workers (4). */
  webhookEndpointConcurrency: number;
}

function databasePooling(raw: string | undefined): DatabasePooling {
  if (raw === undefined || raw === '' || raw === 'session') return 'session';
  if (raw === 'transaction') return 'transaction';
  throw new Error(`DATABASE_POOLING must be "session" or "transaction", not "${raw}"`);
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
  const perToken = integer('RATE_LIMIT', DEFAULT_RATE_LIMITS.perToken, env);
  if (perToken === 0) return false;
  const windowSeconds = integer('RATE_LIMIT_WINDOW', DEFAULT_RATE_LIMITS.windowSeconds, env);
  const perAddress = integer('RATE_LIMIT_UNAUTHENTICATED', DEFAULT_RATE_LIMITS.perAddress, env);
  if (windowSeconds === 0) throw new Error('RATE_LIMIT_WINDOW must be at least 1 (seconds)');
  if (perAddress === 0) throw new Error('RATE_LIMIT_UNAUTHENTICATED must be at least 1 (use RATE_LIMIT=0 to switch limiting off)');
  return { perToken, perAddress, windowSeconds };
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
    trustProxy: trustProxy(env.TRUST_PROXY),
    shutdownDelayMs: integer('SHUTDOWN_DELAY', 0, env) * 1000,
    shutdownTimeoutMs: integer('SHUTDOWN_TIMEOUT', 10, env) * 1000,
    metricsPort: env.METRICS_PORT === undefined || env.METRICS_PORT === '' ? undefined : integer('METRICS_PORT', 0, env),
    metricsHost: env.METRICS_HOST || env.HOST || '127.0.0.1',
    databasePooling: databasePooling(env.DATABASE_POOLING),
    redisUrl: env.REDIS_URL || undefined,
    redisKeyPrefix: env.REDIS_KEY_PREFIX ?? 'clients-api:',
    webhookSecretKey: env.WEBHOOK_SECRET_KEY || undefined,
    webhookSecretKeyFile: env.WEBHOOK_SECRET_KEY_FILE || `${env.DATA_DIR || './data'}/webhook-secret.key`,
    webhookAllowPrivateNetworks: flag('WEBHOOK_ALLOW_PRIVATE_NETWORKS', false, env),
    webhookWorker: flag('WEBHOOK_WORKER', true, env),
    webhookPollIntervalMs: Math.max(1, integer('WEBHOOK_POLL_INTERVAL_MS', 1000, env)),
    webhookTimeoutMs: Math.max(1, integer('WEBHOOK_TIMEOUT_MS', 10_000, env)),
    webhookConcurrency: Math.max(1, integer('WEBHOOK_CONCURRENCY', 16, env)),
    webhookEndpointConcurrency: Math.max(1, integer('WEBHOOK_ENDPOINT_CONCURRENCY', 4, env)),
  };
}
