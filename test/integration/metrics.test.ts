/**
 * Metrics (server/metrics/metrics.ts) after real traffic through the app: the request histogram
 * per operation, idempotency outcomes, rate-limit refusals, webhook attempts, the pools
 * (PostgreSQL), the event loop; label values bounded (no id, no token); and `promtool check metrics` (Debian's
 * `prometheus` package, installed by .ci/run) finds nothing wrong with any of it.
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createMetrics, startMetricsServer, type Metrics } from '../../server/metrics/metrics.js';
import { pino } from 'pino';
import { ephemeralWebhookSettings } from '../../server/webhook-delivery/settings.js';
import { startWebhookWorker } from '../../server/webhook-delivery/worker.js';
import { usingPostgres } from '../support/database.js';
import { insertEndpoint, insertEvent, startReceiver, waitFor } from '../support/webhook-worker-fixtures.js';
import { startTestServer, type TestServer } from '../support/server.js';

const PROMTOOL = '/usr/bin/promtool';

let server: TestServer;
let metrics: Metrics;
let metricsServer: Server;
let scrape: string;
let clientId: string;
let tokenText: string;

const webhookSettings = ephemeralWebhookSettings({ allowPrivateNetworks: true });

/** A webhook worker stepped by the test (`tick()`), reporting to `observer`. */
const steppedWorker = (observer: Metrics['webhooks']) =>
  startWebhookWorker({
    db: server.database.db,
    settings: webhookSettings,
    logger: pino({ level: 'silent' }),
    pollIntervalMs: 10,
    timeoutMs: 5000,
    loop: false,
    observer,
  });

beforeAll(async () => {
  metrics = createMetrics();
  server = await startTestServer({
    metrics,
    rateLimits: { perTenant: 8, perAddress: 1_000, windowSeconds: 60 },
    webhooks: webhookSettings,
  });
  if (usingPostgres) {
    metrics.watchPool('main', server.database.pool!);
    metrics.watchPool('counters', server.database.counterPool!);
  }
  metricsServer = await startMetricsServer(metrics, 0, '127.0.0.1');

  const { api, token } = await server.tenant({ plan: 'studio' });
  tokenText = token.token;
  const key = randomUUID();
  const created = await api.POST('/clients', { body: { name: 'Measured' }, headers: { 'Idempotency-Key': key } });
  clientId = created.data!.data.id;
  await api.POST('/clients', { body: { name: 'Measured' }, headers: { 'Idempotency-Key': key } }); // replayed
  await api.POST('/clients', { body: { name: 'Other' }, headers: { 'Idempotency-Key': key } }); // reused: 422
  await api.GET('/clients/{id}', { params: { path: { id: clientId } } });
  await api.GET('/clients/{id}', { params: { path: { id: randomUUID() } } }); // 404
  await api.GET('/clients');
  // Over this tenant's budget of 8.
  for (let i = 0; i < 4; i++) await api.GET('/clients');

  // Two webhook attempts, one answered 204 and one 500, by a worker that reports to the metrics.
  const receiver = await startReceiver();
  try {
    receiver.answer = (_request, index) => ({ status: index === 0 ? 204 : 500 });
    const { orgId } = await server.mint({ orgName: `metrics-webhooks-${randomUUID()}`, plan: 'pro' });
    await insertEndpoint(server.database.db, webhookSettings, { orgId, url: receiver.url });
    await insertEvent(server.database.db, { orgId });
    await insertEvent(server.database.db, { orgId });
    const worker = steppedWorker(metrics.webhooks);
    await waitFor(async () => {
      await worker.tick();
      return receiver.requests.length >= 2;
    }, 'two attempts');
    await worker.stop();
  } finally {
    await receiver.close();
  }

  // What server/db/replica.ts tells (test/integration/read-replica.test.ts scrapes a real one).
  metrics.watchReplica({ stalenessSeconds: () => 0.25 });
  metrics.countEventualRead('eventual');
  for (let i = 0; i < 2; i++) metrics.countEventualRead('strong');

  const { port } = metricsServer.address() as AddressInfo;
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  scrape = await response.text();
});

afterAll(async () => {
  await new Promise((closed) => metricsServer?.close(closed));
  await server?.close();
});

const sample = (name: string, labels: Record<string, string>) => {
  const line = scrape
    .split('\n')
    .find((l) => l.startsWith(`${name}{`) && Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
};

it('has the request duration histogram per operation, method and status', () => {
  expect(scrape).toContain('# TYPE http_server_request_duration_seconds histogram');
  expect(
    sample('http_server_request_duration_seconds_count', {
      operation: 'createClient',
      http_request_method: 'POST',
      http_response_status_code: '201',
    }),
  ).toBe(2); // and its replay
  expect(sample('http_server_request_duration_seconds_count', { operation: 'createClient', http_response_status_code: '422' })).toBe(1);
  expect(sample('http_server_request_duration_seconds_count', { operation: 'getClient', http_response_status_code: '404' })).toBe(1);
  expect(
    sample('http_server_request_duration_seconds_bucket', { operation: 'getClient', http_response_status_code: '200', le: '+Inf' }),
  ).toBe(1);
});

it('counts idempotency outcomes and rate-limit refusals', () => {
  expect(sample('idempotency_requests_total', { outcome: 'stored' })).toBe(1);
  expect(sample('idempotency_requests_total', { outcome: 'replayed' })).toBe(1);
  expect(sample('idempotency_requests_total', { outcome: 'reused' })).toBe(1);
  expect(sample('idempotency_requests_total', { outcome: 'in_progress' })).toBe(0);
  expect(sample('rate_limit_refusals_total', { limiter: 'tenant' })).toBeGreaterThanOrEqual(1);
  expect(sample('rate_limit_refusals_total', { limiter: 'concurrency' })).toBe(0);
  expect(
    sample('http_server_request_duration_seconds_count', { operation: 'listClients', http_response_status_code: '429' }),
  ).toBeGreaterThanOrEqual(1);
});

it('counts webhook attempts by outcome, and times them', () => {
  expect(sample('webhook_attempts_total', { outcome: 'succeeded' })).toBe(1);
  expect(sample('webhook_attempts_total', { outcome: 'failed' })).toBe(1);
  expect(scrape).toMatch(/^webhook_attempt_duration_seconds_count 2$/m);
});

it('has the event loop, the process, and (on PostgreSQL) the pools', () => {
  expect(scrape).toMatch(/^nodejs_eventloop_lag_seconds \d/m);
  expect(scrape).toMatch(/^process_cpu_seconds_total \d/m);
  // Left out: gauges named like counters, which promtool rejects.
  expect(scrape).not.toContain('nodejs_active_handles_total');
  if (usingPostgres) {
    expect(sample('db_pool_connections', { pool: 'main' })).toBeGreaterThan(0);
    for (const name of ['db_pool_idle_connections', 'db_pool_waiting_requests']) {
      expect(sample(name, { pool: 'main' })).toBeGreaterThanOrEqual(0);
      expect(sample(name, { pool: 'counters' })).toBeGreaterThanOrEqual(0);
    }
  } else {
    expect(scrape).not.toMatch(/^db_pool_connections\{/m);
  }
});

it('says how stale an eventual read could be now, and where eventual reads were served', () => {
  expect(scrape).toMatch(/^db_replica_staleness_seconds 0\.25$/m);
  expect(sample('db_eventual_reads_total', { served: 'replica' })).toBe(1);
  expect(sample('db_eventual_reads_total', { served: 'primary' })).toBe(2);
});

it('never carries an id or a token in a label', () => {
  expect(scrape).not.toContain(clientId);
  expect(scrape).not.toContain(tokenText.split('_')[2]!);
  expect(scrape).not.toContain('/clients');
});

it.runIf(existsSync(PROMTOOL))('passes promtool check metrics', () => {
  const result = spawnSync(PROMTOOL, ['check', 'metrics'], { input: scrape, encoding: 'utf8' });
  expect({ status: result.status, problems: `${result.stdout}${result.stderr}`.trim() }).toEqual({ status: 0, problems: '' });
});

it('webhook fairness: circuits opened, attempts in flight, endpoints and deliveries held by the plan or a circuit', async () => {
  const own = createMetrics();
  const receiver = await startReceiver();
  try {
    receiver.answer = () => ({ status: 500 });
    const failing = await server.mint({ orgName: `metrics-circuit-${randomUUID()}`, plan: 'pro' });
    const held = await server.mint({ orgName: `metrics-plan-${randomUUID()}`, plan: 'pro' });
    await insertEndpoint(server.database.db, webhookSettings, { orgId: failing.orgId, url: `${receiver.url}/failing` });
    await insertEndpoint(server.database.db, webhookSettings, { orgId: held.orgId, url: `${receiver.url}/held` });
    for (let i = 0; i < 10; i++) await insertEvent(server.database.db, { orgId: failing.orgId });
    await insertEvent(server.database.db, { orgId: held.orgId });
    const worker = steppedWorker(own.webhooks);
    // Five failures in a row open the first endpoint's circuit; the second's one delivery has failed once.
    await waitFor(async () => {
      await worker.tick();
      return (
        receiver.requests.filter((r) => r.path === '/hooks/failing').length >= 5 && receiver.requests.some((r) => r.path === '/hooks/held')
      );
    }, 'the attempts');
    await server.database.db.updateTable('organisations').set({ plan: 'free' }).where('id', '=', held.orgId).execute();
    await worker.tick();
    await worker.stop();
    const text = await own.registry.metrics();
    const value = (line: string) => Number(new RegExp(`^${line.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1]);
    expect(value('webhook_circuits_opened_total')).toBe(1);
    expect(value('webhook_attempts_in_flight')).toBe(0);
    expect(value('webhook_endpoints_paused{reason="circuit_open"}')).toBeGreaterThanOrEqual(1);
    expect(value('webhook_deliveries_held{reason="circuit_open"}')).toBeGreaterThanOrEqual(1);
    expect(value('webhook_endpoints_paused{reason="plan"}')).toBeGreaterThanOrEqual(1);
    expect(value('webhook_deliveries_held{reason="plan"}')).toBeGreaterThanOrEqual(1);
    if (existsSync(PROMTOOL)) {
      const result = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8' });
      expect({ status: result.status, problems: `${result.stdout}${result.stderr}`.trim() }).toEqual({ status: 0, problems: '' });
    }
  } finally {
    await receiver.close();
  }
});
