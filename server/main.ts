/**
 * `npm start`: migrate, listen, and on a brand-new embedded database print a demo token. Serves
 * metrics on METRICS_PORT when set, and drains on SIGTERM or SIGINT (server/lifecycle/shutdown.ts).
 */
// First: production mode before any package loads (see the file).
import './production-mode.js';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { createApp } from './app.js';
import { mintTokenForOrganisation } from './tokens/tokens.service.js';
import { orExit, orExitAsync } from './lifecycle/start-up.js';
import { databaseOptions, loadConfig } from './config.js';
import { openDatabase } from './db/database.js';
import { migrateOrThrow } from './db/migrate.js';
import { createReadiness } from './health/readiness.js';
import { scheduleHousekeeping } from './lifecycle/housekeeping.js';
import { createShutdown } from './lifecycle/shutdown.js';
import { createLogger } from './logger.js';
import { startTracing, tracingSettingsFromEnv } from './telemetry.js';
import { openRedisCounters } from './rate-limit/redis.js';
import { createMetrics, startMetricsServer } from './metrics/metrics.js';
import { countOrganisations } from './orgs/orgs.queries.js';
import { PLAN_ORDER, PLANS } from './plans/plans.js';
import { webhookSettingsFromConfig } from './webhook-delivery/settings.js';
import { startWebhookWorker } from './webhook-delivery/worker.js';
import { startSearchIndexer } from './clients/search-indexer.js';
import { searchIndexLag } from './clients/client-search.queries.js';

const config = orExit(() => loadConfig());
// Tracing, when the OTEL_* variables ask for it (server/telemetry.ts), before anything that makes spans.
const tracingSettings = orExit(() => tracingSettingsFromEnv(process.env));
const logger = createLogger(config.logLevel, { traceIds: tracingSettings !== undefined });
const tracing = tracingSettings ? await startTracing({ settings: tracingSettings, logger }) : undefined;
// The key that seals webhook secrets, before anything else: without one on PostgreSQL, or with one
// inside the data directory, the process says what to do and stops (server/webhook-delivery/secret-key.ts).
const webhooks = orExit(() => webhookSettingsFromConfig(config, logger));

const metrics = config.metricsPort === undefined ? undefined : createMetrics();
const database = await orExitAsync(
  openDatabase({
    ...databaseOptions(config),
    // A connection lost while idle or between statements: the pool drops it; the process goes on.
    onConnectionError: (error) => logger.warn({ err: error }, 'database connection lost'),
    replicaUrl: config.databaseReplicaUrl,
    replicaMaxLagMs: config.databaseReplicaMaxLagMs,
    // Eventual reads go to the primary meanwhile: a warning, not an error.
    onReplicaChange: ({ state, lagMs, error }) =>
      state === 'usable'
        ? logger.info({ lagMs }, 'read replica in use for eventual reads')
        : logger.warn({ state, lagMs, err: error }, 'read replica out of use: eventual reads go to the primary'),
    onEventualRead: metrics?.countEventualRead,
  }),
);
if (metrics && database.pool) metrics.watchPool('main', database.pool);
// The search table's lag, read from the database at each scrape: it rises whichever process indexes, or none.
metrics?.watchSearchIndex(() => searchIndexLag(database.db));
if (metrics && database.counterPool) metrics.watchPool('counters', database.counterPool);
if (metrics && database.replica) {
  metrics.watchPool('replica', database.replica.pool);
  metrics.watchReplica(database.replica);
}
if (config.databaseReplicaUrl && !database.replica)
  logger.info('DATABASE_REPLICA_URL is ignored on the embedded database: every read is from it');
// Counters in Redis when REDIS_URL is set, for a database server; the embedded database is one
// process, which counts in memory.
const redis =
  config.redisUrl && database.kind === 'postgres'
    ? openRedisCounters(config.redisUrl, logger, {
        keyPrefix: config.redisKeyPrefix,
        countFailure: () => metrics?.countCounterStoreFailure(),
      })
    : undefined;
if (config.redisUrl && !redis) logger.info('REDIS_URL is ignored on the embedded database: rate limits are counted in memory');
const readiness = createReadiness();
const { createServer, warmUp } = createApp({
  db: database.db,
  reads: database.replica,
  pool: database.counterPool,
  redis,
  logger,
  validateResponses: config.validateResponses,
  rateLimits: config.rateLimits,
  concurrencyLimit: config.concurrencyLimit,
  trustProxy: config.trustProxy,
  readiness,
  metrics,
  webhooks,
});
/**
 * The demo organisation is on the top plan, like a test mode: a newcomer can try every feature
 * (more than a few clients, webhooks) before any plan matters.
 */
const demoPlan = PLAN_ORDER[PLAN_ORDER.length - 1]!;
/** Migrations, and on a brand-new embedded database a demo organisation with a token. */
async function prepareDatabase() {
  const applied = await migrateOrThrow(database.db);
  if (applied.length > 0) logger.info({ migrations: applied }, 'migrated');
  const freshEmbedded = database.kind === 'pglite' && (await countOrganisations(database.db)) === 0;
  return freshEmbedded ? mintTokenForOrganisation(database.db, { orgName: 'Demo', tokenName: 'demo', plan: demoPlan }) : undefined;
}
/** What the demo's plan allows, in the banner's words, from the plans table. */
function demoPlanAllows(): string {
  const { maxActiveClients, features } = PLANS[demoPlan];
  const clients = maxActiveClients === null ? 'unlimited active clients' : `up to ${maxActiveClients} active clients`;
  return [clients, ...[...features].sort()].join(', ');
}
// The validator compiles the spec while the database is being readied: neither waits for the other.
const [demo] = await Promise.all([prepareDatabase(), warmUp()]);
const stopPurge = scheduleHousekeeping(database.db, {
  clock: () => new Date(),
  onError: (error) => logger.error({ err: error }, 'purge failed'),
  onPurged: (purged) => {
    if (purged.keys + purged.events > 0) logger.info({ purged }, 'purged expired idempotency keys and events');
  },
});
// Webhook deliveries, in this process unless WEBHOOK_WORKER=false (then `npm run worker` sends them).
const webhookWorker = config.webhookWorker
  ? startWebhookWorker({
      db: database.db,
      settings: webhooks,
      logger,
      pollIntervalMs: config.webhookPollIntervalMs,
      timeoutMs: config.webhookTimeoutMs,
      concurrency: config.webhookConcurrency,
      endpointConcurrency: config.webhookEndpointConcurrency,
      observer: metrics?.webhooks,
    })
  : undefined;
// The search table (q, email), kept from the events in this process unless SEARCH_INDEXER=false
// (then `npm run worker` keeps it); searches never wait for it (server/clients/search-indexer.ts).
const searchIndexer = config.searchIndexer
  ? startSearchIndexer({ db: database.db, logger, intervalMs: config.searchIndexIntervalMs, batchSize: config.searchIndexBatch })
  : undefined;
/**
 * Called as the signal comes, so attempts in flight finish while requests drain, and awaited in
 * the cleanup, before the database closes. An attempt cut by the shutdown's deadline is not lost:
 * its lease runs out and a worker sends it again.
 */
let webhookWorkerStopped: Promise<void> | undefined;
const stopWebhookWorker = () => (webhookWorkerStopped ??= webhookWorker?.stop() ?? Promise.resolve());
const metricsServer =
  metrics && config.metricsPort !== undefined ? await startMetricsServer(metrics, config.metricsPort, config.metricsHost) : undefined;
const server = createServer({ keepAliveTimeout: config.keepAliveTimeoutMs }).listen(config.port, config.host, () => {
  const { port } = server.address() as AddressInfo;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  const metricsAddress = metricsServer?.address() as AddressInfo | undefined;
  logger.info(
    {
      url,
      database: database.kind,
      nodeEnv: process.env.NODE_ENV,
      ...(tracingSettings && { tracing: tracingSettings.exporters }),
      ...(metricsAddress && { metricsPort: metricsAddress.port }),
      startupMs: Math.round(performance.now()) /* since the process started, module loading included */,
    },
    'listening',
  );
  if (demo) {
    console.log(`
A new embedded database was created in ${config.dataDir}.
Organisation "Demo" is on the ${demo.plan} plan, to try every feature: ${demoPlanAllows()}.
Its test-mode token, with every scope (shown once):

  ${demo.token}

Create a client:

  curl -X POST "${url}/clients" \\
    -H "Authorization: Bearer ${demo.token}" \\
    -H "Idempotency-Key: ${randomUUID()}" \\
    -H "Content-Type: application/json" \\
    -d '{ "name": "string" }'

Mint more tokens through the API (this token has tokens:manage; a new one gets only scopes it holds):

  curl -X POST "${url}/tokens" \\
    -H "Authorization: Bearer ${demo.token}" \\
    -H "Idempotency-Key: ${randomUUID()}" \\
    -H "Content-Type: application/json" \\
    -d '{ "name": "my script", "scopes": ["clients:read", "clients:write"] }'

Webhooks: POST /webhook-endpoints with a url and enabledEvents (docs/webhooks.md); a receiver on this
machine needs the server started with WEBHOOK_ALLOW_PRIVATE_NETWORKS=true. The API reference: ${url}/docs
`);
  }
});

const stop = createShutdown({
  server,
  readiness,
  logger,
  delayMs: config.shutdownDelayMs,
  timeoutMs: config.shutdownTimeoutMs,
  cleanup: async () => {
    await Promise.all([stopPurge(), stopWebhookWorker(), searchIndexer?.stop()]);
    if (metricsServer) {
      const closed = new Promise<void>((resolve) => metricsServer.close(() => resolve()));
      metricsServer.closeAllConnections(); // a scraper's keep-alive connection would hold it open
      await closed;
    }
    await redis?.close();
    await database.close();
    // The spans of the last requests and deliveries, exported before the exit.
    await tracing?.shutdown();
  },
  exit: (code) => {
    logger.flushNow();
    process.exit(code);
  },
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    void stopWebhookWorker();
    void stop(signal);
  });
}
