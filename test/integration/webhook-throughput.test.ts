/**
 * What makes the worker fast (docs/webhooks.md, "Running the worker"), against real receivers on
 * the test database (PGlite, or PostgreSQL with TEST_DATABASE_URL): an endpoint's limit adapts to
 * its answers (more at once for one that answers quickly, fewer for one that times out), attempts
 * reuse kept-alive connections, and a batch of outcomes is recorded by a few statements, not by
 * statements per attempt, each outcome as it would be alone. (Two worker processes sharing the
 * work, each event sent once: webhook-processes.test.ts, on PostgreSQL.)
 */
import type { KyselyPlugin } from 'kysely';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { mintTokenForOrganisation } from '../../server/tokens/tokens.service.js';
import { CIRCUIT_FIRST_COOL_DOWN_MS, CIRCUIT_OPENS_AFTER, RETRY_DELAYS_MS } from '../../server/webhook-delivery/schedule.js';
import { ephemeralWebhookSettings } from '../../server/webhook-delivery/settings.js';
import {
  DEFAULT_ENDPOINT_CONCURRENCY,
  ENDPOINT_START_LIMIT,
  startWebhookWorker,
  type WebhookWorker,
  type WebhookWorkerOptions,
} from '../../server/webhook-delivery/worker.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import {
  feedPastEvents,
  insertEndpoint,
  insertEvent,
  movableClock,
  type Receiver,
  startReceiver,
  waitFor,
} from '../support/webhook-worker-fixtures.js';

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
const settings = ephemeralWebhookSettings({ allowPrivateNetworks: true });
let database: TestDatabase;
const receivers: Receiver[] = [];
const workers: WebhookWorker[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.close();
});
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop()));
  await Promise.all(receivers.splice(0).map((r) => r.close()));
});

function worker(options: Partial<WebhookWorkerOptions> = {}): WebhookWorker {
  const started = startWebhookWorker({ db: database.db, settings, logger, pollIntervalMs: 20, timeoutMs: 5000, ...options });
  workers.push(started);
  return started;
}

async function receiver(): Promise<Receiver> {
  const started = await startReceiver();
  receivers.push(started);
  return started;
}

async function organisation() {
  return mintTokenForOrganisation(database.db, { orgName: `throughput-${Date.now()}-${Math.random()}`, plan: 'pro' });
}

it('an endpoint that answers quickly gets more attempts at once than it started with, over a few kept-alive connections', {
  timeout: 120_000,
}, async () => {
  const fast = await receiver();
  // A little time per answer, so that attempts overlap at the receiver and can be counted.
  fast.answer = () => ({ status: 204, delayMs: 20 });
  const { orgId } = await organisation();
  await insertEndpoint(database.db, settings, { orgId, url: fast.url });
  const ids = new Set<string>();
  for (let i = 0; i < 400; i++) ids.add(await insertEvent(database.db, { orgId }));
  worker();
  await waitFor(() => fast.requests.length >= ids.size, 'every event delivered', 100_000);
  await new Promise((resolve) => setTimeout(resolve, 300)); // a duplicate would show by now
  expect(fast.requests).toHaveLength(ids.size);
  expect(new Set(fast.requests.map((r) => r.headers['webhook-id']))).toEqual(ids);
  // Its limit grew past where it started (4), never past the ceiling.
  expect(fast.open.max).toBeGreaterThan(ENDPOINT_START_LIMIT);
  expect(fast.open.max).toBeLessThanOrEqual(DEFAULT_ENDPOINT_CONCURRENCY);
  // Connections were reused: about one per attempt at once (a connection may still be on its way
  // back to the pool as the next attempt starts), far fewer than attempts (one each, before).
  expect(fast.connections).toBeLessThanOrEqual(2 * fast.open.max);
  expect(fast.connections).toBeLessThan(ids.size / 4);
});

it('an endpoint that times out gets fewer attempts at once, round after round, down to one', { timeout: 60_000 }, async () => {
  const slow = await receiver();
  // In each round the first request is answered at once and the others time out: the endpoint
  // is not failing in a row (its circuit stays closed), but it is overloaded.
  let roundStart = 0;
  slow.answer = (_, index) => (index === roundStart ? { status: 200 } : 'hang');
  const { orgId } = await organisation();
  const endpoint = await insertEndpoint(database.db, settings, { orgId, url: slow.url });
  for (let i = 0; i < 12; i++) await insertEvent(database.db, { orgId });
  await feedPastEvents(database.db, orgId);
  const clock = movableClock();
  const w = worker({ clock: clock.now, loop: false, timeoutMs: 300 });
  const perRound: number[] = [];
  for (let round = 0; round < 3; round++) {
    roundStart = slow.requests.length;
    await w.tick();
    perRound.push(slow.requests.length - roundStart);
  }
  expect(perRound).toEqual([ENDPOINT_START_LIMIT, ENDPOINT_START_LIMIT / 2, 1]);
  const row = await database.db.selectFrom('webhook_endpoints').selectAll().where('id', '=', endpoint.id).executeTakeFirstOrThrow();
  expect(row.circuit_open_until).toBeNull();
});

it('a batch of outcomes is recorded by a few statements, each outcome as alone: successes, retries, the circuit', {
  timeout: 60_000,
}, async () => {
  const ok = await receiver();
  const failing = await receiver();
  failing.answer = () => ({ status: 500 });
  const { orgId } = await organisation();
  const fine = [];
  for (let i = 0; i < 10; i++) fine.push(await insertEndpoint(database.db, settings, { orgId, url: `${ok.url}/${i}` }));
  const broken = await insertEndpoint(database.db, settings, { orgId, url: failing.url });
  for (let i = 0; i < 8; i++) await insertEvent(database.db, { orgId });
  await feedPastEvents(database.db, orgId);

  let statements = 0;
  const counting: KyselyPlugin = {
    transformQuery: (args) => {
      statements++;
      return args.node;
    },
    transformResult: async (args) => args.result,
  };
  const clock = movableClock();
  const w = worker({ db: database.db.withPlugin(counting), clock: clock.now, loop: false });
  const at = clock.now();
  await w.tick();
  // 10 endpoints × 4 (their starting limit) and 4 to the failing one: 44 attempts, far fewer statements.
  const attempts = await database.db.selectFrom('webhook_attempts').selectAll().where('org_id', '=', orgId).execute();
  expect(attempts).toHaveLength(11 * ENDPOINT_START_LIMIT);
  // Before batching, every attempt cost at least three (its record, its endpoint, the next lease).
  expect(statements).toBeLessThan(attempts.length);

  const deliveries = await database.db.selectFrom('webhook_deliveries').selectAll().where('org_id', '=', orgId).execute();
  const attempted = deliveries.filter((d) => d.attempts > 0);
  for (const delivery of attempted) {
    const its = attempts.filter((a) => a.delivery_id === delivery.id);
    expect(its).toHaveLength(1);
    expect(delivery.lease_id).toBeNull();
    if (delivery.endpoint_id === broken.id) {
      // A failure: pending again at its retry's time, the attempt saying when.
      expect([delivery.status, delivery.attempts]).toEqual(['pending', 1]);
      expect(its[0]).toMatchObject({ succeeded: false, status_code: 500, attempt: 1 });
      expect(new Date(delivery.next_attempt_at).getTime()).toBe(at.getTime() + RETRY_DELAYS_MS[0]!);
      expect(new Date(its[0]!.next_retry_at!).getTime()).toBe(at.getTime() + RETRY_DELAYS_MS[0]!);
    } else {
      expect([delivery.status, delivery.attempts]).toEqual(['succeeded', 1]);
      expect(its[0]).toMatchObject({ succeeded: true, status_code: 200, attempt: 1, next_retry_at: null });
    }
  }
  expect(attempted.filter((d) => d.endpoint_id === broken.id)).toHaveLength(ENDPOINT_START_LIMIT);
  const endpointRow = () => database.db.selectFrom('webhook_endpoints').selectAll().where('id', '=', broken.id).executeTakeFirstOrThrow();
  const afterFirst = await endpointRow();
  expect(afterFirst.consecutive_failures).toBe(ENDPOINT_START_LIMIT);
  expect(new Date(afterFirst.failing_since!).getTime()).toBe(at.getTime());
  expect(afterFirst.circuit_open_until).toBeNull();
  for (const endpoint of fine) {
    const row = await database.db.selectFrom('webhook_endpoints').selectAll().where('id', '=', endpoint.id).executeTakeFirstOrThrow();
    expect([row.consecutive_failures, row.failing_since]).toEqual([0, null]);
  }

  // The next round: the failing endpoint's limit halved (2), and the fifth failure in a row opens its circuit.
  await w.tick();
  const afterSecond = await endpointRow();
  expect(afterSecond.consecutive_failures).toBe(ENDPOINT_START_LIMIT + ENDPOINT_START_LIMIT / 2);
  expect(afterSecond.consecutive_failures).toBeGreaterThanOrEqual(CIRCUIT_OPENS_AFTER);
  expect(new Date(afterSecond.circuit_open_until!).getTime()).toBe(at.getTime() + CIRCUIT_FIRST_COOL_DOWN_MS);
  // The ten good endpoints' second four went out in the same round.
  const succeeded = await database.db
    .selectFrom('webhook_deliveries')
    .select('id')
    .where('org_id', '=', orgId)
    .where('status', '=', 'succeeded')
    .execute();
  expect(succeeded).toHaveLength(10 * 8);
});

it('a worker that joins an endpoint starts from the limit the workers before it learnt and recorded with it, not from 4', {
  timeout: 60_000,
}, async () => {
  const fast = await receiver();
  const { orgId } = await organisation();
  const endpoint = await insertEndpoint(database.db, settings, { orgId, url: fast.url });
  const learntLimit = async () =>
    (await database.db.selectFrom('webhook_endpoints').select('concurrency_limit').where('id', '=', endpoint.id).executeTakeFirstOrThrow())
      .concurrency_limit;
  expect(await learntLimit()).toBeNull();
  for (let i = 0; i < 100; i++) await insertEvent(database.db, { orgId });

  // The first worker, a round at a time: quick successes raise its limit, and each batch records it.
  const clock = movableClock();
  const first = worker({ clock: clock.now, loop: false });
  await waitFor(
    async () => {
      await first.tick();
      return ((await learntLimit()) ?? 0) >= 2 * ENDPOINT_START_LIMIT;
    },
    'a limit learnt and recorded',
    30_000,
  );
  const learnt = (await learntLimit())!;
  const sentByTheFirst = fast.requests.length;
  expect(sentByTheFirst).toBeLessThan(100 - learnt);

  // A second worker that has never sent to the endpoint: its first round takes the recorded limit's
  // worth of the deliveries still due, at once. (At 4, a worker joining an endpoint that another
  // keeps busy found no room on it, and so never learnt more.)
  const second = worker({ clock: clock.now, loop: false });
  await second.tick();
  expect(fast.requests.length - sentByTheFirst).toBe(learnt);
});
