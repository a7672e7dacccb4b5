/**
 * Metrics in Prometheus' text format (prom-client), served on their own listener
 * (`METRICS_PORT`, see startMetricsServer) and never on the API's port. Every label value is from
 * a bounded set: an operationId (or `unmatched`), an HTTP method Node's parser knows, a status
 * code, an outcome, a pool's name. Never an id, a path or a token.
 *
 * prom-client's default metrics are all kept except `nodejs_active_handles_total`,
 * `nodejs_active_requests_total` and `nodejs_active_resources_total`: gauges whose `_total` suffix
 * `promtool check metrics` rejects (a suffix reserved for counters). The same figures remain,
 * per type, in `nodejs_active_handles`, `nodejs_active_requests` and `nodejs_active_resources`.
 */
import http from 'node:http';
import type { Request, Response } from 'express';
import type pg from 'pg';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ReadConsistency, Replica } from '../db/reads.js';
import type { KeyedOutcome } from '../idempotency/idempotency.js';
import type { Limiter } from '../rate-limit/rate-limits.js';
import type { WebhookWorkerObserver } from '../webhook-delivery/worker.js';

const MISNAMED_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/** Seconds; from a cached replay (a millisecond) to a write stuck behind a slow database. */
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface Metrics {
  registry: Registry;
  /** Called once per answered (or abandoned) request, by server/http/request-log.ts. */
  observeRequest(req: Request, res: Response, seconds: number): void;
  /** Counts what happened to a request that carried an Idempotency-Key (told by the router). */
  countKeyed(outcome: KeyedOutcome): void;
  /** Counts a request refused with 429, by the limit that refused it (told by server/http/authorize-and-limit.ts). */
  countRateLimitRefusal(limiter: Limiter): void;
  /** Counts a request whose rate-limit count Redis could not make (counted in memory instead). */
  countCounterStoreFailure(): void;
  /** Gauges of a pg pool's connections, read at each scrape. */
  watchPool(name: string, pool: pg.Pool): void;
  /** The replica's staleness bound now, read at each scrape (DATABASE_REPLICA_URL). */
  watchReplica(replica: Pick<Replica, 'stalenessSeconds'>): void;
  /**
   * The search table's lag behind the events (server/clients/client-search.queries.ts), read at each
   * scrape: what `search_index_lag_seconds` and `search_index_lag_events` show.
   */
  watchSearchIndex(read: () => Promise<{ seconds: number; events: number }>): void;
  /** Counts a read that accepted `eventual`, by where it was served (told by server/db/replica.ts). */
  countEventualRead(served: ReadConsistency): void;
  /** What the webhook worker tells: attempts, circuits opened, attempts in flight, what is held back. */
  webhooks: WebhookWorkerObserver;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  for (const name of MISNAMED_DEFAULTS) registry.removeSingleMetric(name);

  const duration = new Histogram({
    name: 'http_server_request_duration_seconds',
    help: 'Time from a request arriving to its answer being sent, per operation.',
    labelNames: ['operation', 'http_request_method', 'http_response_status_code'],
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  const idempotency = new Counter({
    name: 'idempotency_requests_total',
    help: 'Requests that carried an Idempotency-Key, by outcome: stored (ran, answer kept), replayed, in_progress (409), reused (422).',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const refusals = new Counter({
    name: 'rate_limit_refusals_total',
    help:
      'Requests refused with 429 rate_limited, by limiter: tenant (the budget of an organisation and environment), ' +
      'address (requests without a valid token), concurrency (too many of an organisation in flight at once in this process).',
    labelNames: ['limiter'],
    registers: [registry],
  });
  for (const limiter of ['tenant', 'address', 'concurrency'] satisfies Limiter[]) refusals.inc({ limiter }, 0);
  const storeFailures = new Counter({
    name: 'rate_limit_store_failures_total',
    help: 'Requests whose rate-limit count Redis could not make; each was counted in this process only (failing open).',
    registers: [registry],
  });
  for (const outcome of ['stored', 'replayed', 'in_progress', 'reused'] satisfies KeyedOutcome[]) idempotency.inc({ outcome }, 0);
  const webhookAttempts = new Counter({
    name: 'webhook_attempts_total',
    help: 'Webhook delivery attempts made by this process, by outcome: succeeded (a 2xx) or failed (anything else, no answer included).',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const webhookDuration = new Histogram({
    name: 'webhook_attempt_duration_seconds',
    help: 'Time a webhook delivery attempt took, to its answer or its failure (10 s at most).',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  for (const outcome of ['succeeded', 'failed']) webhookAttempts.inc({ outcome }, 0);
  const circuitsOpened = new Counter({
    name: 'webhook_circuits_opened_total',
    help: 'Webhook endpoints whose circuit this process opened: after five failed attempts in a row, or again after a failed probe.',
    registers: [registry],
  });
  const webhookInFlight = new Gauge({
    name: 'webhook_attempts_in_flight',
    help: 'Webhook delivery attempts this process has in flight (at most WEBHOOK_CONCURRENCY; an organisation at most half).',
    registers: [registry],
  });
  const endpointLimits = new Gauge({
    name: 'webhook_endpoint_concurrency_limit',
    help: "The adaptive limits of attempts in flight per endpoint in this process's worker (1 to WEBHOOK_ENDPOINT_CONCURRENCY; they start at 4, grow while an endpoint answers quickly, halve on timeouts and 5xx), over the endpoints it has attempted lately: stat min, max or mean.",
    labelNames: ['stat'],
    registers: [registry],
  });
  const limitedEndpoints = new Gauge({
    name: 'webhook_endpoints_limited',
    help: "Endpoints this process's worker keeps an adaptive limit for (attempted within the last ten minutes or so).",
    registers: [registry],
  });
  const heldEndpoints = new Gauge({
    name: 'webhook_endpoints_paused',
    help: "Webhook endpoints whose deliveries are held, by reason: plan (the organisation's plan has no webhooks) or circuit_open (cooling down after failures). Counted every 10 s by the worker, across all workers.",
    labelNames: ['reason'],
    registers: [registry],
  });
  const heldDeliveries = new Gauge({
    name: 'webhook_deliveries_held',
    help: 'Webhook deliveries waiting, not attempted, by reason: plan (every pending one of those endpoints) or circuit_open (the due ones). Counted every 10 s by the worker, across all workers.',
    labelNames: ['reason'],
    registers: [registry],
  });
  const oldestDue = new Gauge({
    name: 'webhook_deliveries_oldest_due_seconds',
    help: 'How long the oldest due webhook delivery has waited, among endpoints that may be sent to (enabled, plan allows, circuit closed); 0 when none is due. Measured every 10 s by the worker, across all workers.',
    registers: [registry],
  });
  for (const reason of ['plan', 'circuit_open']) {
    heldEndpoints.set({ reason }, 0);
    heldDeliveries.set({ reason }, 0);
  }

  const pools = new Map<string, pg.Pool>();
  const poolGauge = (name: string, help: string, read: (pool: pg.Pool) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['pool'],
      registers: [registry],
      collect() {
        for (const [pool, handle] of pools) this.set({ pool }, read(handle));
      },
    });
  poolGauge('db_pool_connections', 'Connections a database pool holds (idle and in use).', (pool) => pool.totalCount);
  poolGauge('db_pool_idle_connections', 'Connections a database pool holds unused.', (pool) => pool.idleCount);
  poolGauge('db_pool_waiting_requests', 'Queries waiting for a connection of a database pool.', (pool) => pool.waitingCount);

  const eventualReads = new Counter({
    name: 'db_eventual_reads_total',
    help: 'Reads that accepted Read-Consistency: eventual, by where they were served: replica, or primary (no replica, or it was behind or unreachable).',
    labelNames: ['served'],
    registers: [registry],
  });
  for (const served of ['replica', 'primary']) eventualReads.inc({ served }, 0);

  // Read once per scrape for both gauges (each collect() asks; the second gets the first's answer).
  let readSearchLag: (() => Promise<{ seconds: number; events: number }>) | undefined;
  let searchLag: Promise<{ seconds: number; events: number } | undefined> | undefined;
  const currentSearchLag = () => {
    if (!readSearchLag) return Promise.resolve(undefined);
    searchLag ??= readSearchLag()
      .catch(() => undefined)
      .finally(() => setTimeout(() => (searchLag = undefined), 0).unref());
    return searchLag;
  };
  new Gauge({
    name: 'search_index_lag_seconds',
    help: "How far the search table (q, email) is behind the events: the age of the oldest change not yet indexed, 0 when none. Searches stay exact meanwhile (the changed clients are read live), each paying for its tenant's share of the lag. Read from the database at each scrape.",
    registers: [registry],
    async collect() {
      const lag = await currentSearchLag();
      if (lag) this.set(lag.seconds);
    },
  });
  new Gauge({
    name: 'search_index_lag_events',
    help: 'Events the search indexer has not yet passed (counted up to 100,000). Read from the database at each scrape.',
    registers: [registry],
    async collect() {
      const lag = await currentSearchLag();
      if (lag) this.set(lag.events);
    },
  });

  const methods = new Set(http.METHODS);
  return {
    registry,
    observeRequest(req, res, seconds) {
      const operation = req.operation?.operationId ?? 'unmatched';
      const method = methods.has(req.method) ? req.method : '_OTHER';
      duration.observe({ operation, http_request_method: method, http_response_status_code: res.statusCode }, seconds);
    },
    countRateLimitRefusal(limiter) {
      refusals.inc({ limiter });
    },
    countKeyed(outcome) {
      idempotency.inc({ outcome });
    },
    countCounterStoreFailure() {
      storeFailures.inc();
    },
    watchPool(name, pool) {
      pools.set(name, pool);
    },
    watchReplica(replica) {
      // Only with a replica: a gauge of 0 would say a replica is there and current.
      new Gauge({
        name: 'db_replica_staleness_seconds',
        help:
          'At most how far behind the primary an eventual read served now would be: the time since a check last proved the replica ' +
          'held every write acknowledged before it (+Inf while it is out of use). Over DATABASE_REPLICA_MAX_LAG_MS, eventual reads go to the primary.',
        registers: [registry],
        collect() {
          this.set(replica.stalenessSeconds());
        },
      });
    },
    watchSearchIndex(read) {
      readSearchLag = read;
    },
    countEventualRead(served) {
      eventualReads.inc({ served: served === 'eventual' ? 'replica' : 'primary' });
    },
    webhooks: {
      attempt(succeeded, seconds) {
        webhookAttempts.inc({ outcome: succeeded ? 'succeeded' : 'failed' });
        webhookDuration.observe(seconds);
      },
      circuitOpened() {
        circuitsOpened.inc();
      },
      inFlight(count) {
        webhookInFlight.set(count);
      },
      endpointLimits(summary) {
        endpointLimits.set({ stat: 'min' }, summary.min);
        endpointLimits.set({ stat: 'max' }, summary.max);
        endpointLimits.set({ stat: 'mean' }, summary.mean);
        limitedEndpoints.set(summary.endpoints);
      },
      heldBack(held) {
        heldEndpoints.set({ reason: 'plan' }, held.planEndpoints);
        heldEndpoints.set({ reason: 'circuit_open' }, held.circuitEndpoints);
        heldDeliveries.set({ reason: 'plan' }, held.planDeliveries);
        heldDeliveries.set({ reason: 'circuit_open' }, held.circuitDeliveries);
        oldestDue.set(held.oldestDueSeconds);
      },
    },
  };
}

/** `GET /metrics` on its own port; anything else is 404. Resolves once listening. */
export function startMetricsServer(metrics: Metrics, port: number, host: string): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('Not found: metrics are at GET /metrics\n');
      return;
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'Content-Type': metrics.registry.contentType }).end(text),
      () => res.writeHead(500, { 'Content-Type': 'text/plain' }).end('metrics could not be collected\n'),
    );
  });
  return new Promise((listening, fail) => {
    server.once('error', fail);
    server.listen(port, host, () => listening(server));
  });
}
