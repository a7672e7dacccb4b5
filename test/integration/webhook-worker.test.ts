/**
 * The delivery worker (server/webhook-delivery/worker.ts) against a real receiver, on the test database
 * (PGlite, or PostgreSQL with TEST_DATABASE_URL). Events and endpoints are put straight into the
 * database here, as the events and endpoint modules write them; the same promises through the API
 * are in webhook-delivery-api.test.ts. Time is a clock the tests move, never a wait.
 */
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { toEvent } from '../../server/events/events.mapper.js';
import { mintTokenForOrganisation } from '../../server/tokens/tokens.service.js';
import { MAX_ATTEMPTS, RETRY_DELAYS_MS } from '../../server/webhook-delivery/schedule.js';
import { ephemeralWebhookSettings, type WebhookSettings } from '../../server/webhook-delivery/settings.js';
import { startWebhookWorker, type WebhookWorker, type WebhookWorkerOptions } from '../../server/webhook-delivery/worker.js';
import { createTestDatabase, type TestDatabase, usingPostgres } from '../support/database.js';
import {
  insertEndpoint,
  insertEvent,
  movableClock,
  type Receiver,
  startReceiver,
  verifyAtItsTime,
  waitFor,
} from '../support/webhook-worker-fixtures.js';

const DAY = 24 * 60 * 60 * 1000;
const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

let database: TestDatabase;
let receiver: Receiver;
const settings: WebhookSettings = ephemeralWebhookSettings({ allowPrivateNetworks: true });
const workers: WebhookWorker[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.close();
});
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop()));
  await receiver?.close();
});

function worker(options: Partial<WebhookWorkerOptions> = {}): WebhookWorker {
  const started = startWebhookWorker({ db: database.db, settings, logger, pollIntervalMs: 20, timeoutMs: 5000, loop: false, ...options });
  workers.push(started);
  return started;
}

async function tenant(plan: 'pro' | 'studio' = 'pro') {
  return mintTokenForOrganisation(database.db, { orgName: `webhooks-${Date.now()}-${Math.random()}`, plan });
}

/**
 * Ticks until `check` holds. One tick does the work; more are only needed on PostgreSQL while
 * another database's transaction (a parallel test) holds the feed's horizon back.
 */
async function tickUntil<T>(w: WebhookWorker, check: () => T | Promise<T>, what: string) {
  return waitFor(
    async () => {
      await w.tick();
      return check();
    },
    what,
    30_000,
  );
}

function attemptsOf(endpointId: string) {
  return database.db
    .selectFrom('webhook_attempts')
    .selectAll()
    .where('endpoint_id', '=', endpointId)
    .orderBy('attempted_at')
    .orderBy('attempt')
    .execute();
}

function endpointRow(id: string) {
  return database.db.selectFrom('webhook_endpoints').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
}

describe('delivery', () => {
  it('delivers each wanted event of its own tenant and environment, signed, its body the Event', async () => {
    receiver = await startReceiver();
    const mine = await tenant();
    const other = await tenant();
    const endpoint = await insertEndpoint(database.db, settings, {
      orgId: mine.orgId,
      url: receiver.url,
      enabledEvents: ['client.created', 'client.updated', 'client.deleted', 'client.restored'],
    });
    const wanted = [];
    for (const type of ['client.created', 'client.updated', 'client.deleted', 'client.restored']) {
      wanted.push(await insertEvent(database.db, { orgId: mine.orgId, type }));
    }
    await insertEvent(database.db, { orgId: mine.orgId, env: 'live' }); // another environment
    await insertEvent(database.db, { orgId: other.orgId }); // another organisation
    const w = worker();
    await tickUntil(w, () => receiver.requests.length >= 4, 'four deliveries');
    await w.tick();
    expect(receiver.requests).toHaveLength(4);

    const rows = await database.db.selectFrom('events').selectAll().where('org_id', '=', mine.orgId).where('env', '=', 'test').execute();
    for (const request of receiver.requests) {
      expect(request.method).toBe('POST');
      expect(request.headers['content-type']).toBe('application/json');
      expect(request.headers['user-agent']).toMatch(/^clients-api-webhooks\//);
      const payload = verifyAtItsTime(endpoint.secret, request) as { id: string };
      expect(request.headers['webhook-id']).toBe(payload.id);
      const row = rows.find((r) => r.id === payload.id)!;
      expect(request.body).toBe(JSON.stringify(toEvent(row)));
    }
    expect(new Set(receiver.requests.map((r) => r.headers['webhook-id']))).toEqual(new Set(wanted));
    const attempts = await attemptsOf(endpoint.id);
    expect(attempts.map((a) => [a.attempt, a.succeeded, a.status_code, a.error, a.next_retry_at])).toEqual(
      wanted.map(() => [1, true, 200, null, null]),
    );
  });

  it('delivers only the types the endpoint enabled, and moves its place past the others', async () => {
    receiver = await startReceiver();
    const { orgId } = await tenant();
    const endpoint = await insertEndpoint(database.db, settings, { orgId, url: receiver.url, enabledEvents: ['client.deleted'] });
    await insertEvent(database.db, { orgId, type: 'client.created' });
    const deleted = await insertEvent(database.db, { orgId, type: 'client.deleted' });
    await insertEvent(database.db, { orgId, type: 'client.updated' });
    const w = worker();
    await tickUntil(w, () => receiver.requests.length >= 1, 'the deleted event');
    const last = await database.db
      .selectFrom('events')
      .select((eb) => [eb.cast<string>('txid', 'text').as('txid'), eb.cast<string>('seq', 'text').as('seq')])
      .where('org_id', '=', orgId)
      .orderBy('txid', 'desc')
      .orderBy('seq', 'desc')
      .executeTakeFirstOrThrow();
    const place = () =>
      database.db
        .selectFrom('webhook_endpoints')
        .select((eb) => eb.cast<string>('feed_seq', 'text').as('seq'))
        .where('id', '=', endpoint.id)
        .executeTakeFirstOrThrow();
    await tickUntil(w, async () => (await place()).seq === last.seq, 'the place past the last event');
    expect(receiver.requests.map((r) => r.headers['webhook-id'])).toEqual([deleted]);
  });

  it('a receiver that fails twice then succeeds gets the event three times, with one webhook-id, on the schedule', async () => {
    receiver = await startReceiver();
    receiver.answer = (_, index) => ({ status: index < 2 ? 500 : 204 });
    const { orgId } = await tenant();
    const clock = movableClock();
    const endpoint = await insertEndpoint(database.db, settings, { orgId, url: receiver.url });
    const eventId = await insertEvent(database.db, { orgId });
    const w = worker({ clock: clock.now });

    await tickUntil(w, () => receiver.requests.length >= 1, 'the first attempt');
    const firstAt = clock.now();
    clock.advance(RETRY_DELAYS_MS[0]! - 1000);
    await w.tick();
    expect(receiver.requests).toHaveLength(1); // not due yet
    clock.advance(1000);
    await tickUntil(w, () => receiver.requests.length >= 2, 'the second attempt');
    const secondAt = clock.now();
    clock.advance(RETRY_DELAYS_MS[1]!);
    await tickUntil(w, () => receiver.requests.length >= 3, 'the third attempt');
    clock.advance(DAY);
    await w.tick();

    expect(receiver.requests.map((r) => r.headers['webhook-id'])).toEqual([eventId, eventId, eventId]);
    for (const request of receiver.requests) verifyAtItsTime(endpoint.secret, request);
    const attempts = await attemptsOf(endpoint.id);
    expect(
      attempts.map((a) => ({
        attempt: a.attempt,
        status: a.status_code,
        succeeded: a.succeeded,
        next: a.next_retry_at?.getTime() ?? null,
      })),
    ).toEqual([
      { attempt: 1, status: 500, succeeded: false, next: firstAt.getTime() + RETRY_DELAYS_MS[0]! },
      { attempt: 2, status: 500, succeeded: false, next: secondAt.getTime() + RETRY_DELAYS_MS[1]! },
      { attempt: 3, status: 204, succeeded: true, next: null },
    ]);
    const delivery = await database.db
      .selectFrom('webhook_deliveries')
      .selectAll()
      .where('endpoint_id', '=', endpoint.id)
      .executeTakeFirstOrThrow();
    expect([delivery.status, delivery.attempts, delivery.lease_id]).toEqual(['succeeded', 3, null]);
  });

  it('after the tenth failure the delivery is failed and never tried again', async () => {
    receiver = await startReceiver();
    receiver.answer = () => ({ status: 503 });
    const { orgId } = await tenant();
    const clock = movableClock();
    const endpoint = await insertEndpoint(database.db, settings, { orgId, url: receiver.url });
    await insertEvent(database.db, { orgId });
    const w = worker({ clock: clock.now });
    await tickUntil(w, () => receiver.requests.length >= 1, 'the first attempt');
    for (const delay of RETRY_DELAYS_MS) {
      const before = receiver.requests.length;
      clock.advance(delay);
      await tickUntil(w, () => receiver.requests.length > before, 'the next attempt');
    }
    clock.advance(30 * DAY);
    await w.tick();
    expect(receiver.requests).toHaveLength(MAX_ATTEMPTS);
    const attempts = await attemptsOf(endpoint.id);
    expect(attempts.map((a) => a.attempt)).toEqual(Array.from({ length: MAX_ATTEMPTS }, (_, i) => i + 1));
    expect(attempts.at(-1)!.next_retry_at).toBeNull();
    const delivery = await database.db
      .selectFrom('webhook_deliveries')
      .selectAll()
      .where('endpoint_id', '=', endpoint.id)
      .executeTakeFirstOrThrow();
    expect(delivery.status).toBe('failed');
  });
});

describe.runIf(usingPostgres)('the feed horizon (concurrent writers: PostgreSQL only)', () => {
  it('an event of a transaction that began earlier and commits later is delivered, never skipped', async () => {
    receiver = await startReceiver();
    const { orgId } = await tenant();
    await insertEndpoint(database.db, settings, { orgId, url: receiver.url });
    const earlyId = crypto.randomUUID();
    let commit!: () => void;
    let written!: () => void;
    const wrote = new Promise<void>((resolve) => (written = resolve));
    const committed = new Promise<void>((resolve) => (commit = resolve));
    const early = database.db.transaction().execute(async (trx) => {
      await trx
        .insertInto('events')
        .values({
          org_id: orgId,
          env: 'test',
          id: earlyId,
          type: 'client.created',
          created_at: new Date(),
          data: JSON.stringify({ object: {} }),
        })
        .execute();
      written();
      await committed;
    });
    await wrote;
    const lateId = await insertEvent(database.db, { orgId }); // a later transaction id, committed first
    const w = worker();
    try {
      await w.tick();
      await w.tick();
      // Below the horizon only: the later event waits for the earlier transaction to end.
      expect(receiver.requests).toHaveLength(0);
    } finally {
      commit();
      await early;
    }
    await tickUntil(w, () => receiver.requests.length >= 2, 'both events');
    expect(new Set(receiver.requests.map((r) => r.headers['webhook-id']))).toEqual(new Set([earlyId, lateId]));
  });
});

describe('failing endpoints', () => {
  /** Each day a new event, delivered (and failed, or not) at that day's time. */
  async function day(w: WebhookWorker, orgId: string, clock: ReturnType<typeof movableClock>, at: number) {
    clock.set(new Date(at));
    const before = receiver.requests.length;
    await insertEvent(database.db, { orgId });
    await tickUntil(w, () => receiver.requests.length > before, "that day's delivery");
  }

  it('five days of failures disable the endpoint; it then gets nothing', async () => {
    receiver = await startReceiver();
    receiver.answer = () => ({ status: 500 });
    const { orgId } = await tenant();
    const start = Date.now();
    const clock = movableClock(new Date(start));
    const endpoint = await insertEndpoint(database.db, settings, { orgId, url: receiver.url });
    const w = worker({ clock: clock.now });
    for (let d = 0; d <= 4; d++) {
      await day(w, orgId, clock, start + d * DAY);
      const row = await endpointRow(endpoint.id);
      expect(row.failing_since?.getTime()).toBe(start);
      expect(row.disabled).toBe(false);
    }
    await day(w, orgId, clock, start + 5 * DAY);
    const disabled = await endpointRow(endpoint.id);
    expect([disabled.disabled, disabled.disabled_reason]).toEqual([true, 'failing']);

    const seen = receiver.requests.length;
    await insertEvent(database.db, { orgId });
    clock.advance(DAY);
    await w.tick();
    await w.tick();
    expect(receiver.requests).toHaveLength(seen);
  });

  it('a success in between resets failingSince, and the five days count from the next failure', async () => {
    receiver = await startReceiver();
    let failing = true;
    receiver.answer = () => ({ status: failing ? 500 : 200 });
    const { orgId } = await tenant();
    const start = Date.now();
    const clock = movableClock(new Date(start));
    const endpoint = await insertEndpoint(database.db, settings, { orgId, url: receiver.url });
    const w = worker({ clock: clock.now });
    for (let d = 0; d <= 3; d++) await day(w, orgId, clock, start + d * DAY);
    failing = false;
    await day(w, orgId, clock, start + 4 * DAY);
    expect((await endpointRow(endpoint.id)).failing_since).toBeNull();
    failing = true;
    for (let d = 5; d <= 9; d++) {
      await day(w, orgId, clock, start + d * DAY);
      const row = await endpointRow(endpoint.id);
      expect(row.failing_since?.getTime()).toBe(start + 5 * DAY);
      expect(row.disabled).toBe(false);
    }
    await day(w, orgId, clock, start + 10 * DAY);
    expect((await endpointRow(endpoint.id)).disabled).toBe(true);
  });
});

describe('secret rotation', () => {
  it('for 24 hours after a rotation both secrets sign (each verifies alone), afterwards only the new one', async () => {
    receiver = await startReceiver();
    const { orgId } = await tenant();
    const rotatedAt = new Date();
    const clock = movableClock(rotatedAt);
    const endpoint = await insertEndpoint(database.db, settings, {
      orgId,
      url: receiver.url,
      previous: { expiresAt: new Date(rotatedAt.getTime() + DAY) },
    });
    const w = worker({ clock: clock.now });
    await insertEvent(database.db, { orgId });
    clock.advance(DAY - 60_000);
    await tickUntil(w, () => receiver.requests.length >= 1, 'a delivery within the 24 hours');
    const during = receiver.requests[0]!;
    expect(during.headers['webhook-signature']!.split(' ')).toHaveLength(2);
    expect(verifyAtItsTime(endpoint.secret, during)).toBeTruthy();
    expect(verifyAtItsTime(endpoint.previousSecret!, during)).toBeTruthy();

    clock.set(new Date(rotatedAt.getTime() + DAY + 1000));
    await insertEvent(database.db, { orgId });
    await tickUntil(w, () => receiver.requests.length >= 2, 'a delivery after the 24 hours');
    const after = receiver.requests[1]!;
    expect(after.headers['webhook-signature']!.split(' ')).toHaveLength(1);
    expect(verifyAtItsTime(endpoint.secret, after)).toBeTruthy();
    expect(() => verifyAtItsTime(endpoint.previousSecret!, after)).toThrow();
  });
});

describe('what an attempt refuses', () => {
  async function singleAttempt(url: string, workerSettings: WebhookSettings, options: Partial<WebhookWorkerOptions> = {}) {
    const { orgId } = await tenant();
    const endpoint = await insertEndpoint(database.db, settings, { orgId, url });
    await insertEvent(database.db, { orgId });
    const w = worker({ settings: workerSettings, ...options });
    const [attempt] = await tickUntil(w, () => attemptsOf(endpoint.id).then((a) => (a.length > 0 ? a : undefined)), 'the attempt');
    return attempt!;
  }

  it('a host that resolves to a private address at delivery time is refused at connect time; the receiver never hears of it', async () => {
    receiver = await startReceiver();
    const staged = { ...settings, allowPrivateNetworks: false, resolve: async () => ['127.0.0.1'] };
    const attempt = await singleAttempt(`http://hooks.example.com:${receiver.port}/hooks`, staged);
    expect([attempt.succeeded, attempt.status_code, attempt.error]).toEqual([false, null, 'address not allowed']);
    expect(attempt.next_retry_at).not.toBeNull();
    expect(receiver.requests).toHaveLength(0);
  });

  it('one private address among public ones is refused too, and so is a private IP literal', async () => {
    receiver = await startReceiver();
    const mixed = { ...settings, allowPrivateNetworks: false, resolve: async () => ['93.184.215.14', '127.0.0.1'] };
    expect((await singleAttempt(`http://hooks.example.com:${receiver.port}/hooks`, mixed)).error).toBe('address not allowed');
    const literal = { ...settings, allowPrivateNetworks: false, resolve: async () => [] };
    expect((await singleAttempt(receiver.url, literal)).error).toBe('address not allowed');
    expect(receiver.requests).toHaveLength(0);
  });

  it('a redirect is a failure with its status, and its Location is never requested', async () => {
    receiver = await startReceiver();
    receiver.answer = (request) =>
      request.path === '/hooks' ? { status: 302, headers: { location: `http://127.0.0.1:${receiver.port}/elsewhere` } } : { status: 200 };
    const attempt = await singleAttempt(receiver.url, settings);
    expect([attempt.succeeded, attempt.status_code, attempt.error]).toEqual([false, 302, null]);
    expect(receiver.requests.map((r) => r.path)).toEqual(['/hooks']);
  });

  it('a receiver that never answers: the attempt ends with error timeout after the configured timeout', async () => {
    receiver = await startReceiver();
    receiver.answer = () => 'hang';
    const attempt = await singleAttempt(receiver.url, settings, { timeoutMs: 300 });
    expect([attempt.succeeded, attempt.status_code, attempt.error]).toEqual([false, null, 'timeout']);
    expect(attempt.duration_ms).toBeGreaterThanOrEqual(290);
  });

  it('a closed port: connection refused', async () => {
    receiver = await startReceiver();
    const url = receiver.url;
    await receiver.close();
    expect((await singleAttempt(url, settings)).error).toBe('connection refused');
  });
});

describe('the worker loop', () => {
  it('runs by itself, and stop() waits for the attempt in flight to be recorded', async () => {
    receiver = await startReceiver();
    receiver.answer = () => 'hang';
    const { orgId } = await tenant();
    const endpoint = await insertEndpoint(database.db, settings, { orgId, url: receiver.url });
    await insertEvent(database.db, { orgId });
    const w = startWebhookWorker({ db: database.db, settings, logger, pollIntervalMs: 20, timeoutMs: 1500 });
    await waitFor(() => receiver.requests.length >= 1, 'the delivery to arrive');
    await w.stop();
    const attempts = await attemptsOf(endpoint.id);
    expect(attempts.map((a) => a.error)).toEqual(['timeout']);
  });

  it('more events than one fan-out scans (500): all delivered, each once', { timeout: 120_000 }, async () => {
    receiver = await startReceiver();
    const { orgId } = await tenant();
    const endpoint = await insertEndpoint(database.db, settings, { orgId, url: receiver.url });
    const ids = new Set<string>();
    for (let i = 0; i < 520; i++) ids.add(await insertEvent(database.db, { orgId }));
    worker({ loop: true });
    await waitFor(async () => (await attemptsOf(endpoint.id)).length >= ids.size, 'every attempt recorded', 100_000);
    expect(new Set(receiver.requests.map((r) => r.headers['webhook-id']))).toEqual(ids);
    expect(receiver.requests).toHaveLength(ids.size);
  });

  it('goes on after a pass fails (the database away), and delivers once it is back', async () => {
    receiver = await startReceiver();
    const { orgId } = await tenant();
    await insertEndpoint(database.db, settings, { orgId, url: receiver.url });
    await insertEvent(database.db, { orgId });
    let broken = true;
    const errors: unknown[] = [];
    const flaky = new Proxy(database.db, {
      get(target, property) {
        if (broken && property === 'transaction') {
          return () => ({
            execute: async () => {
              throw new Error('connection refused (injected)');
            },
          });
        }
        const value = Reflect.get(target, property);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const w = startWebhookWorker({
      db: flaky,
      settings,
      logger: Object.assign(Object.create(logger), { error: (o: unknown) => errors.push(o) }),
      pollIntervalMs: 20,
      timeoutMs: 5000,
    });
    workers.push(w);
    await waitFor(() => errors.length >= 2, 'failed passes logged');
    broken = false;
    await waitFor(() => receiver.requests.length >= 1, 'the delivery after the database came back');
  });
});

describe('leases', () => {
  it('an attempt whose lease ran out is not recorded; the worker holding the delivery now records its own', async () => {
    const { recordAttempt, FIRST_PLACE } = await import('../../server/webhook-delivery/deliveries.queries.js');
    const { claimFairly } = await import('../../server/webhook-delivery/worker.js');
    const claimDueDeliveries = async (_db: unknown, claim: { leaseId: string; now: Date; leasedUntil: Date; limit: number }) =>
      (
        await claimFairly(database.db, {
          ...claim,
          after: FIRST_PLACE,
          walkLimit: 1000,
          endpointCap: 4,
          busy: new Map(),
          share: claim.limit,
          slots: claim.limit,
        })
      ).claimed;
    receiver = await startReceiver();
    const { orgId } = await tenant();
    const endpoint = await insertEndpoint(database.db, settings, { orgId, url: receiver.url });
    const eventId = await insertEvent(database.db, { orgId });
    // A first attempt (timed out), then claims by hand a day later, when it is due again.
    const clock = movableClock();
    receiver.answer = () => 'hang';
    const w = worker({ clock: clock.now, timeoutMs: 200 });
    await tickUntil(w, () => receiver.requests.length >= 1, 'the first attempt');
    clock.advance(DAY);
    const now = clock.now();
    const first = await claimDueDeliveries(database.db, {
      leaseId: crypto.randomUUID(),
      now,
      leasedUntil: new Date(now.getTime() + 1000),
      limit: 10,
    });
    const mine = first.filter((d) => d.endpointId === endpoint.id);
    expect(mine.map((d) => d.event.id)).toEqual([eventId]);
    // Still leased: nobody else gets it.
    const meanwhile = await claimDueDeliveries(database.db, {
      leaseId: crypto.randomUUID(),
      now,
      leasedUntil: new Date(now.getTime() + 1000),
      limit: 10,
    });
    expect(meanwhile.filter((d) => d.endpointId === endpoint.id)).toEqual([]);
    // The lease runs out: another claim takes it, with the same event.
    const later = new Date(now.getTime() + 2000);
    const secondLease = crypto.randomUUID();
    const second = await claimDueDeliveries(database.db, {
      leaseId: secondLease,
      now: later,
      leasedUntil: new Date(later.getTime() + 1000),
      limit: 10,
    });
    expect(second.filter((d) => d.endpointId === endpoint.id).map((d) => d.event.id)).toEqual([eventId]);
    const record = (leaseId: string) => ({
      orgId,
      deliveryId: mine[0]!.id,
      leaseId,
      endpointId: endpoint.id,
      eventId,
      eventType: 'client.created',
      attempt: 2,
      attemptedAt: later,
      durationMs: 1,
      statusCode: 200,
      error: null,
      succeeded: true,
      nextRetryAt: null,
    });
    expect(await database.db.transaction().execute((trx) => recordAttempt(trx, record(crypto.randomUUID())))).toBe(false);
    expect(await database.db.transaction().execute((trx) => recordAttempt(trx, record(secondLease)))).toBe(true);
    expect((await attemptsOf(endpoint.id)).map((a) => [a.attempt, a.succeeded])).toEqual([
      [1, false],
      [2, true],
    ]);
  });
});
