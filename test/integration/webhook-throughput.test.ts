/**
 * What makes the worker fast (docs/webhooks.md, "Running the worker"), against real receivers on
 * the test database (PGlite, or PostgreSQL with TEST_DATABASE_URL): an endpoint's limit adapts to
 * its answers (more at once for one that answers quickly, fewer for one that times out), attempts
 * reuse kept-alive connections, and a batch of outcomes is recorded by a few statements, not by
 * statements per attempt, each outcome as it would be alone. Workers sharing endpoints: an
 * endpoint's room counts the attempts still being sent, by any worker, not those answered and
 * waiting to be recorded; a worker whose claim found the room taken looks again soon, not a poll
 * interval later; and a worker keeps its view of an endpoint's limit with the endpoint only when
 * that view moves. (Two worker processes sharing the work, each event sent once:
 * webhook-processes.test.ts, on PostgreSQL.)
 */
import type { KyselyPlugin, QueryId } from 'kysely';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { mintTokenForOrganisation } from '../../server/tokens/tokens.service.js';
import { FIRST_PLACE, queueRedelivery, recordAttempt } from '../../server/webhook-delivery/deliveries.queries.js';
import { CIRCUIT_FIRST_COOL_DOWN_MS, CIRCUIT_OPENS_AFTER, RETRY_DELAYS_MS } from '../../server/webhook-delivery/schedule.js';
import { ephemeralWebhookSettings } from '../../server/webhook-delivery/settings.js';
import {
  claimFairly,
  DEFAULT_ENDPOINT_CONCURRENCY,
  ENDPOINT_START_LIMIT,
  startWebhookWorker,
  type WebhookWorker,
  type WebhookWorkerOptions,
} from '../../server/webhook-delivery/worker.js';
import { createTestDatabase, type TestDatabase, usingPostgres } from '../support/database.js';
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

// Workers sharing endpoints (docs/webhooks.md, "Fairness").

describe('claims beside other workers', () => {
  // A claim made by hand walks every endpoint with deliveries due: each test here has a database
  // that holds only its own.
  let own: TestDatabase;
  beforeEach(async () => {
    own = await createTestDatabase();
  });
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.stop()));
    await own.close();
  });

  /** An organisation, one endpoint of it at `url`, and `count` deliveries due to it now (oldest first). */
  async function endpointWithDeliveries(url: string, count: number, now: Date) {
    const { orgId } = await mintTokenForOrganisation(own.db, { orgName: `shared-${Date.now()}-${Math.random()}`, plan: 'pro' });
    const endpoint = await insertEndpoint(own.db, settings, { orgId, url });
    const eventIds: string[] = [];
    for (let i = 0; i < count; i++) {
      const eventId = await insertEvent(own.db, { orgId });
      eventIds.push(eventId);
      await queueRedelivery(own.db, { orgId, eventId, endpointIds: [endpoint.id] }, new Date(now.getTime() - (count - i)));
    }
    return { orgId, endpoint, eventIds };
  }

  /** One worker's claim, by hand: `leaseId` names the worker's lease; `answered`, its attempts answered since its last claim. */
  function claim(leaseId: string, options: { now: Date; cap: number; answered?: { orgId: string; id: string; leaseId: string }[] }) {
    return claimFairly(own.db, {
      after: FIRST_PLACE,
      walkLimit: 100,
      endpointCap: options.cap,
      busy: new Map(),
      share: 100,
      slots: 100,
      now: options.now,
      leaseId,
      leasedUntil: new Date(options.now.getTime() + 60_000),
      answered: options.answered ?? [],
    });
  }

  /** The attempt of `lease` on the delivery recorded as its worker records a success: its lease released, the delivery settled. */
  function recordSuccess(lease: { orgId: string; id: string; leaseId: string }, endpointId: string, eventId: string, at: Date) {
    return recordAttempt(own.db, {
      orgId: lease.orgId,
      deliveryId: lease.id,
      leaseId: lease.leaseId,
      endpointId,
      eventId,
      eventType: 'client.created',
      attempt: 1,
      attemptedAt: at,
      durationMs: 3,
      statusCode: 204,
      error: null,
      succeeded: true,
      nextRetryAt: null,
    });
  }

  it("an attempt answered and waiting to be recorded leaves its endpoint's room to every worker's claim, once its own worker's next claim has said so", async () => {
    const now = new Date();
    const { orgId, endpoint, eventIds } = await endpointWithDeliveries('http://127.0.0.1:9/hooks', 3, now);
    const [a, b] = [crypto.randomUUID(), crypto.randomUUID()];
    const eventsOf = (claimed: { event: { id: string } }[]) => claimed.map((delivery) => delivery.event.id);

    // Worker A leases the endpoint's whole room (1): worker B finds none.
    const first = await claim(a, { now, cap: 1 });
    expect(eventsOf(first.claimed)).toEqual([eventIds[0]]);
    expect((await claim(b, { now, cap: 1 })).claimed).toEqual([]);
    const answered = { orgId, id: first.claimed[0]!.id, leaseId: a };

    // Only the lease's own worker can say its attempt was answered: B naming A's delivery under its own lease changes nothing.
    expect((await claim(b, { now, cap: 1, answered: [{ ...answered, leaseId: b }] })).claimed).toEqual([]);

    // A's attempt is answered; A's next claim marks it first, and the room it held is free for that same claim.
    const second = await claim(a, { now, cap: 1, answered: [answered] });
    expect(eventsOf(second.claimed)).toEqual([eventIds[1]]);
    // For every other worker's claim too: with a room of 2, B counts the one attempt being sent, not the answered one.
    const third = await claim(b, { now, cap: 2 });
    expect(eventsOf(third.claimed)).toEqual([eventIds[2]]);

    // The answered attempt is recorded as any other (its lease released, the delivery settled).
    expect(await recordSuccess(answered, endpoint.id, eventIds[0]!, now)).toBe(true);
    const rows = await own.db
      .selectFrom('webhook_deliveries')
      .select(['event_id', 'status', 'lease_id', 'lease_answered'])
      .where('endpoint_id', '=', endpoint.id)
      .execute();
    rows.sort((x, y) => eventIds.indexOf(x.event_id) - eventIds.indexOf(y.event_id));
    expect(rows).toEqual([
      { event_id: eventIds[0], status: 'succeeded', lease_id: null, lease_answered: false },
      { event_id: eventIds[1], status: 'pending', lease_id: a, lease_answered: false },
      { event_id: eventIds[2], status: 'pending', lease_id: b, lease_answered: false },
    ]);
  });

  // PostgreSQL only: the test claims beside a worker whose record transaction is held open, which
  // the embedded database's one connection cannot serve.
  it.runIf(usingPostgres)(
    'a worker marks its attempts answered at its next claim, while their batch waits to be recorded',
    {
      timeout: 30_000,
    },
    async () => {
      const receiving = await receiver();
      // The first attempt answered at once, the second after 300 ms.
      receiving.answer = (_request, index) => (index === 1 ? { status: 204, delayMs: 300 } : { status: 204 });
      const clock = movableClock();
      const now = clock.now();
      const { orgId, endpoint } = await endpointWithDeliveries(receiving.url, 2, now);
      // Every record of this worker waits until the test lets one through: its transaction is open meanwhile.
      let recordsLetThrough = 0;
      const waiting: (() => void)[] = [];
      const records = new Set<QueryId>();
      const holdingRecords: KyselyPlugin = {
        transformQuery: (args) => {
          if (JSON.stringify(args.node).includes('insert into webhook_attempts')) records.add(args.queryId);
          return args.node;
        },
        transformResult: async (args) => {
          if (records.delete(args.queryId)) {
            while (recordsLetThrough === 0) await new Promise<void>((resolve) => waiting.push(resolve));
            recordsLetThrough--;
          }
          return args.result;
        },
      };
      const letOneRecordThrough = () => {
        recordsLetThrough++;
        for (const resolve of waiting.splice(0)) resolve();
      };
      const deliveries = () =>
        own.db
          .selectFrom('webhook_deliveries')
          .select(['id', 'event_id', 'lease_id', 'lease_answered'])
          .where('endpoint_id', '=', endpoint.id)
          .execute();

      try {
        // Two attempts at once (the limit is 2): the first, answered at once, is being recorded (held);
        // the second is answered meanwhile, and waits for the next batch.
        worker({ db: own.db.withPlugin(holdingRecords), clock: clock.now, endpointConcurrency: 2 });
        await waitFor(() => receiving.requests.length === 2, 'both attempts sent');
        await new Promise((resolve) => setTimeout(resolve, 500));
        const secondEvent = (JSON.parse(receiving.requests[1]!.body) as { id: string }).id;
        const second = (await deliveries()).find((d) => d.event_id === secondEvent);
        expect(second).toMatchObject({ lease_id: expect.any(String), lease_answered: false });

        // The first batch commits; the claim that waited for it marks the second attempt answered before
        // the second batch (held) records it: its lease still live, no longer counted in the room.
        letOneRecordThrough();
        const marked = await waitFor(
          async () => (await deliveries()).find((d) => d.id === second!.id && d.lease_answered),
          'the answered attempt marked',
          5_000,
        );
        expect(marked.lease_id).not.toBeNull();

        // So another worker's claim, with the endpoint's room of 1, takes a delivery due now, where the
        // live lease of an attempt already answered would have left it none.
        const eventId = await insertEvent(own.db, { orgId });
        await queueRedelivery(own.db, { orgId, eventId, endpointIds: [endpoint.id] }, now);
        const other = await claim(crypto.randomUUID(), { now, cap: 1 });
        expect(other.claimed.map((delivery) => delivery.event.id)).toEqual([eventId]);
        letOneRecordThrough();
        await waitFor(
          async () => (await deliveries()).find((d) => d.id === second!.id)?.lease_id === null,
          'the second batch recorded',
          5_000,
        );
      } finally {
        // Whatever happened, no record is held any longer: the worker can stop.
        recordsLetThrough = Number.POSITIVE_INFINITY;
        for (const resolve of waiting.splice(0)) resolve();
      }
    },
  );

  it('a worker whose claim found the room taken by another worker looks again within moments, not a poll interval later', {
    timeout: 30_000,
  }, async () => {
    const fast = await receiver();
    const now = new Date();
    const { orgId, endpoint, eventIds } = await endpointWithDeliveries(fast.url, 2, now);
    // Another worker holds the endpoint's one attempt (the limit every worker starts from is 1 here).
    const other = crypto.randomUUID();
    const held = await claim(other, { now, cap: 1 });
    expect(held.claimed).toHaveLength(1);

    // This worker polls every 10 s: its first claim finds no room.
    worker({ db: own.db, pollIntervalMs: 10_000, endpointConcurrency: 1 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(fast.requests).toEqual([]);

    // The other worker records its attempt: the room is free, and this worker takes the delivery left at once.
    const releasedAt = performance.now();
    expect(await recordSuccess({ orgId, id: held.claimed[0]!.id, leaseId: other }, endpoint.id, eventIds[0]!, now)).toBe(true);
    await waitFor(() => fast.requests.length >= 1, 'the delivery left', 5_000);
    // Its retries after a contended claim double from 20 ms and stop at the poll interval: by now it
    // has looked every 0.64 s at most; waiting for the interval would have taken up to 10 s.
    expect(performance.now() - releasedAt).toBeLessThan(2_000);
    expect(JSON.parse(fast.requests[0]!.body)).toMatchObject({ id: eventIds[1] });
  });
});

it("a worker keeps its view of an endpoint's limit with the endpoint when that view moves, and leaves another worker's view there while its own stays", {
  timeout: 60_000,
}, async () => {
  const fast = await receiver();
  const { orgId } = await mintTokenForOrganisation(database.db, { orgName: `shared-limit-${Date.now()}`, plan: 'pro' });
  const endpoint = await insertEndpoint(database.db, settings, { orgId, url: fast.url });
  const kept = async () =>
    (await database.db.selectFrom('webhook_endpoints').select('concurrency_limit').where('id', '=', endpoint.id).executeTakeFirstOrThrow())
      .concurrency_limit;
  const clock = movableClock();
  const w = worker({ clock: clock.now, loop: false });

  // One event a round: one attempt in flight never fills half the limit, so the view stays at its start.
  await insertEvent(database.db, { orgId });
  await feedPastEvents(database.db, orgId);
  await w.tick();
  expect(fast.requests).toHaveLength(1);
  expect(await kept()).toBe(ENDPOINT_START_LIMIT);

  // Another worker keeps its own view (7). This worker's next batch leaves it: its own view has not moved.
  await database.db.updateTable('webhook_endpoints').set({ concurrency_limit: 7 }).where('id', '=', endpoint.id).execute();
  await insertEvent(database.db, { orgId });
  await feedPastEvents(database.db, orgId);
  await w.tick();
  expect(fast.requests).toHaveLength(2);
  expect(await kept()).toBe(7);

  // Enough at once to fill half its limit: quick successes raise this worker's view, and its batch keeps it.
  for (let i = 0; i < 20; i++) await insertEvent(database.db, { orgId });
  await feedPastEvents(database.db, orgId);
  await waitFor(
    async () => {
      await w.tick();
      return (await kept()) !== 7;
    },
    'the moved view kept',
    30_000,
  );
  expect(await kept()).toBeGreaterThan(ENDPOINT_START_LIMIT);
});
