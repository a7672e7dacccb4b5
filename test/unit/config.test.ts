/** What production runs with when the environment says nothing: the checks that cost per request stay off. */
import { expect, it } from 'vitest';
import { loadConfig } from '../../server/config.js';

it('validates responses only when VALIDATE_RESPONSES=true (tests pass it to createApp themselves)', () => {
  expect(loadConfig({}).validateResponses).toBe(false);
  expect(loadConfig({ VALIDATE_RESPONSES: 'false' }).validateResponses).toBe(false);
  expect(loadConfig({ VALIDATE_RESPONSES: 'true' }).validateResponses).toBe(true);
});

it('drains with no delay and a 10 s timeout, and serves no metrics, unless told otherwise', () => {
  expect(loadConfig({})).toMatchObject({ shutdownDelayMs: 0, shutdownTimeoutMs: 10_000, metricsPort: undefined });
  expect(loadConfig({ SHUTDOWN_DELAY: '5', SHUTDOWN_TIMEOUT: '30', METRICS_PORT: '9464', HOST: '0.0.0.0' })).toMatchObject({
    shutdownDelayMs: 5_000,
    shutdownTimeoutMs: 30_000,
    metricsPort: 9464,
    metricsHost: '0.0.0.0',
  });
  expect(loadConfig({ METRICS_PORT: '9464', METRICS_HOST: '10.0.0.5' }).metricsHost).toBe('10.0.0.5');
  expect(() => loadConfig({ SHUTDOWN_TIMEOUT: 'soon' })).toThrow(/SHUTDOWN_TIMEOUT/);
});

it('keeps idle connections for 5 s, as Node does, unless KEEP_ALIVE_TIMEOUT says otherwise; never for ever', () => {
  expect(loadConfig({}).keepAliveTimeoutMs).toBe(5_000);
  expect(loadConfig({ KEEP_ALIVE_TIMEOUT: '65' }).keepAliveTimeoutMs).toBe(65_000);
  expect(() => loadConfig({ KEEP_ALIVE_TIMEOUT: '0' })).toThrow(/KEEP_ALIVE_TIMEOUT must be at least 1/);
});

it('expects a direct connection unless DATABASE_POOLING=transaction, and keeps counters in Redis only with REDIS_URL', () => {
  expect(loadConfig({})).toMatchObject({ databasePooling: 'session', redisUrl: undefined });
  expect(loadConfig({ DATABASE_POOLING: 'transaction', REDIS_URL: 'redis://127.0.0.1:6379' })).toMatchObject({
    databasePooling: 'transaction',
    redisUrl: 'redis://127.0.0.1:6379',
  });
  expect(() => loadConfig({ DATABASE_POOLING: 'statement' })).toThrow(/DATABASE_POOLING/);
});

it('cuts any statement after 10 s unless DATABASE_STATEMENT_TIMEOUT_MS says otherwise (0: no limit)', () => {
  expect(loadConfig({}).databaseStatementTimeoutMs).toBe(10_000);
  expect(loadConfig({ DATABASE_STATEMENT_TIMEOUT_MS: '2500' }).databaseStatementTimeoutMs).toBe(2500);
  expect(loadConfig({ DATABASE_STATEMENT_TIMEOUT_MS: '0' }).databaseStatementTimeoutMs).toBe(0);
  expect(() => loadConfig({ DATABASE_STATEMENT_TIMEOUT_MS: '10s' })).toThrow(/DATABASE_STATEMENT_TIMEOUT_MS must be a whole number/);
});

it('reads everything from the primary unless DATABASE_REPLICA_URL is set; an eventual read tolerates 2 s of staleness unless told otherwise', () => {
  expect(loadConfig({})).toMatchObject({ databaseReplicaUrl: undefined, databaseReplicaMaxLagMs: 2000 });
  expect(loadConfig({ DATABASE_REPLICA_URL: 'postgres://app@replica:5432/clients', DATABASE_REPLICA_MAX_LAG_MS: '5000' })).toMatchObject({
    databaseReplicaUrl: 'postgres://app@replica:5432/clients',
    databaseReplicaMaxLagMs: 5000,
  });
  // The lag is measured once a second: a smaller bound would flap, and is refused with the reason.
  expect(() => loadConfig({ DATABASE_REPLICA_MAX_LAG_MS: '500' })).toThrow(/at least 1000 .*measured once a second/);
  expect(() => loadConfig({ DATABASE_REPLICA_MAX_LAG_MS: '2s' })).toThrow(/DATABASE_REPLICA_MAX_LAG_MS must be a whole number/);
});

it('delivers webhooks inside the server, every second, 10 s per attempt, to public addresses only, unless told otherwise', () => {
  expect(loadConfig({})).toMatchObject({
    webhookWorker: true,
    webhookPollIntervalMs: 1000,
    webhookTimeoutMs: 10_000,
    webhookAllowPrivateNetworks: false,
    webhookSecretKey: undefined,
    // Unset: server/webhook-delivery/secret-key.ts decides (test/unit/webhook-secret-key.test.ts).
    webhookSecretKeyFile: undefined,
  });
  expect(
    loadConfig({
      WEBHOOK_WORKER: 'false',
      WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
      WEBHOOK_TIMEOUT_MS: '2000',
      WEBHOOK_SECRET_KEY_FILE: '/etc/clients/webhook.key',
    }),
  ).toMatchObject({
    webhookWorker: false,
    webhookAllowPrivateNetworks: true,
    webhookTimeoutMs: 2000,
    webhookSecretKeyFile: '/etc/clients/webhook.key',
  });
  expect(() => loadConfig({ WEBHOOK_WORKER: 'no' })).toThrow(/WEBHOOK_WORKER must be true or false/);
  expect(() => loadConfig({ WEBHOOK_ALLOW_PRIVATE_NETWORKS: '1' })).toThrow(/WEBHOOK_ALLOW_PRIVATE_NETWORKS/);
});

it('sends 128 webhook attempts at once per worker and at most 64 per endpoint, unless told otherwise', () => {
  expect(loadConfig({})).toMatchObject({ webhookConcurrency: 128, webhookEndpointConcurrency: 64 });
  expect(loadConfig({ WEBHOOK_CONCURRENCY: '32', WEBHOOK_ENDPOINT_CONCURRENCY: '1' })).toMatchObject({
    webhookConcurrency: 32,
    webhookEndpointConcurrency: 1,
  });
  expect(loadConfig({ WEBHOOK_CONCURRENCY: '0', WEBHOOK_ENDPOINT_CONCURRENCY: '0' })).toMatchObject({
    webhookConcurrency: 1,
    webhookEndpointConcurrency: 1,
  });
  expect(() => loadConfig({ WEBHOOK_CONCURRENCY: 'many' })).toThrow(/WEBHOOK_CONCURRENCY/);
  expect(() => loadConfig({ WEBHOOK_ENDPOINT_CONCURRENCY: '-1' })).toThrow(/WEBHOOK_ENDPOINT_CONCURRENCY/);
});

it('indexes search inside the server, every 200 ms once caught up, 500 events a statement, unless told otherwise', () => {
  expect(loadConfig({})).toMatchObject({ searchIndexer: true, searchIndexIntervalMs: 200, searchIndexBatch: 500 });
  expect(loadConfig({ SEARCH_INDEXER: 'false', SEARCH_INDEX_INTERVAL_MS: '50', SEARCH_INDEX_BATCH: '2000' })).toMatchObject({
    searchIndexer: false,
    searchIndexIntervalMs: 50,
    searchIndexBatch: 2000,
  });
  expect(() => loadConfig({ SEARCH_INDEXER: 'no' })).toThrow(/SEARCH_INDEXER must be true or false/);
  expect(() => loadConfig({ SEARCH_INDEX_BATCH: 'many' })).toThrow(/SEARCH_INDEX_BATCH must be a whole number/);
});
