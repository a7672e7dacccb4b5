/**
 * `npm run worker`: webhook deliveries and the search indexer alone, beside API servers started with
 * WEBHOOK_WORKER=false and SEARCH_INDEXER=false
 * (or beside ones that deliver too: any number of workers share one database safely). It reads
 * the same configuration as `npm start`, and needs DATABASE_URL: the embedded database belongs to
 * the one process that opened it, whose own worker (inside `npm start`) delivers. SIGTERM or
 * SIGINT: stop claiming, let the attempts in flight be recorded, close the database, exit 0.
 */
// First: production mode before any package loads (see the file).
import './production-mode.js';
import { orExit, orExitAsync } from './lifecycle/start-up.js';
import { databaseOptions, loadConfig } from './config.js';
import { openDatabase } from './db/database.js';
import { migrateOrThrow } from './db/migrate.js';
import { createLogger } from './logger.js';
import { startTracing, tracingSettingsFromEnv } from './telemetry.js';
import { createMetrics, startMetricsServer } from './metrics/metrics.js';
import { webhookSettingsFromConfig } from './webhook-delivery/settings.js';
import { startWebhookWorker } from './webhook-delivery/worker.js';
import { startSearchIndexer } from './clients/search-indexer.js';
import { searchIndexLag } from './clients/client-search.queries.js';

const config = orExit(() => loadConfig());
if (!config.databaseUrl) {
  console.error(
    'npm run worker needs DATABASE_URL (a PostgreSQL server). On the embedded database, deliveries run inside `npm start` (unless WEBHOOK_WORKER=false).',
  );
  process.exit(1);
}
// Tracing, when the OTEL_* variables ask for it (server/telemetry.ts): each attempt's delivery span.
const tracingSettings = orExit(() => tracingSettingsFromEnv(process.env));
const logger = createLogger(config.logLevel, { traceIds: tracingSettings !== undefined });
const tracing = tracingSettings ? await startTracing({ settings: tracingSettings, logger, serviceName: 'clients-api-worker' }) : undefined;
// The same key as every server's (server/webhook-delivery/secret-key.ts): without one, say so and stop.
const settings = orExit(() => webhookSettingsFromConfig(config, logger));

const database = await orExitAsync(
  openDatabase({
    ...databaseOptions(config),
    poolSize: 5,
    onConnectionError: (error) => logger.warn({ err: error }, 'database connection lost'),
  }),
);
// The same migrations as the server's (they take a lock): a worker started first finds its tables.
const applied = await migrateOrThrow(database.db);
if (applied.length > 0) logger.info({ migrations: applied }, 'migrated');

// METRICS_PORT: its attempts and its pool, as `npm start` serves them.
const metrics = config.metricsPort === undefined ? undefined : createMetrics();
if (metrics && database.pool) metrics.watchPool('main', database.pool);
metrics?.watchSearchIndex(() => searchIndexLag(database.db));
const metricsServer =
  metrics && config.metricsPort !== undefined ? await startMetricsServer(metrics, config.metricsPort, config.metricsHost) : undefined;

const worker = startWebhookWorker({
  db: database.db,
  settings,
  logger,
  pollIntervalMs: config.webhookPollIntervalMs,
  timeoutMs: config.webhookTimeoutMs,
  concurrency: config.webhookConcurrency,
  endpointConcurrency: config.webhookEndpointConcurrency,
  observer: metrics?.webhooks,
});
// The search table, kept from the events (any number of indexers share one database safely).
const searchIndexer = startSearchIndexer({
  db: database.db,
  logger,
  intervalMs: config.searchIndexIntervalMs,
  batchSize: config.searchIndexBatch,
});
logger.info(
  {
    pollIntervalMs: config.webhookPollIntervalMs,
    timeoutMs: config.webhookTimeoutMs,
    concurrency: config.webhookConcurrency,
    endpointConcurrency: config.webhookEndpointConcurrency,
  },
  'webhook worker started',
);

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'webhook worker stopping');
  await Promise.all([worker.stop(), searchIndexer.stop()]);
  if (metricsServer) {
    const closed = new Promise<void>((resolve) => metricsServer.close(() => resolve()));
    metricsServer.closeAllConnections();
    await closed;
  }
  await database.close();
  await tracing?.shutdown();
  logger.info('stopped');
  logger.flushNow();
  process.exit(0);
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => void shutdown(signal));
