/**
 * Fair delivery (docs/webhooks.md, "Fairness"): one organisation's hanging or failing receivers
 * cost that organisation, not the others. On the test database (PGlite, or PostgreSQL with
 * TEST_DATABASE_URL), with real receivers (test/support/webhook-worker-fixtures.ts) that count the
 * requests they hold open at once, per endpoint and in all.
 */
import { describe, expect, it } from 'vitest';
import type { ClientsApi } from '../../client/index.js';
import { loadConfig } from '../../server/config.js';
import { CIRCUIT_FIRST_COOL_DOWN_MS, CIRCUIT_OPENS_AFTER, RETRY_DELAYS_MS } from '../../server/webhook-delivery/schedule.js';
import { markEndpointFailed } from '../../server/webhook-delivery/endpoint-state.queries.js';
import { ENDPOINT_START_LIMIT, organisationShare } from '../../server/webhook-delivery/worker.js';
import { webhookHarness } from '../support/webhook-harness.js';
import { insertEndpoint, insertEvent, movableClock, waitFor } from '../support/webhook-worker-fixtures.js';

const { settings, server, receiver, worker } = webhookHarness();

async function register(api: ClientsApi, url: string): Promise<string> {
  const { data, error } = await api.POST('/webhook-endpoints', { body: { url, enabledEvents: ['*'] } });
  if (!data) throw new Error(`endpoint not registered: ${JSON.stringify(error)}`);
  return data.data.id;
}

const db = () => server().database.db;

async function pendingOf(orgId: string): Promise<number> {
  const { count } = await db()
    .selectFrom('webhook_deliveries')
    .select((eb) => eb.fn.countAll<string>().as('count'))
    .where('org_id', '=', orgId)
    .where('status', '=', 'pending')
    .executeTakeFirstOrThrow();
  return Number(count);
}

async function organisation(plan: 'pro' | 'studio' = 'pro') {
  return server().mint({ orgName: `fairness-${Date.now()}-${Math.random()}`, plan });
}

describe('a noisy organisation', () => {
  it("16 endpoints that never answer and hundreds of deliveries behind them: another organisation's delivery arrives within seconds of its change", {
    timeout: 120_000,
  }, async () => {
    // The worker exactly as `npm start` runs it when the environment says nothing.
    const defaults = loadConfig({});
    const hanging = await receiver(() => 'hang');
    const quiet = await receiver();
    const noisy = await server().tenant({ plan: 'pro' });
    for (let i = 0; i < 16; i++) await register(noisy.api, `${hanging.url}/${i}`);
    const clients: string[] = [];
    for (let i = 0; i < 20; i++) clients.push((await noisy.api.POST('/clients', { body: { name: `Noisy ${i}` } })).data!.data.id);
    worker({
      pollIntervalMs: defaults.webhookPollIntervalMs,
      timeoutMs: defaults.webhookTimeoutMs,
      concurrency: defaults.webhookConcurrency,
      endpointConcurrency: defaults.webhookEndpointConcurrency,
    });
    // The noisy organisation holds every slot it may (its share, or 4 per endpoint, their starting
    // limit, when that is fewer), each for the whole 10 s timeout...
    const held = Math.min(organisationShare(defaults.webhookConcurrency), 16 * ENDPOINT_START_LIMIT);
    await waitFor(() => hanging.open.now >= held, 'the noisy attempts under way', 30_000);
    // ... with its backlog fanned out behind them (the fan-out goes as far as the feed's horizon,
    // which another test's open transaction on the same server may hold back for a moment).
    await waitFor(async () => (await pendingOf(noisy.token.orgId)) >= 300, 'the noisy backlog', 30_000);
    // ... and goes on changing its clients, a few times a second.
    let changes = 0;
    const noise = setInterval(() => {
      const id = clients[changes % clients.length]!;
      void noisy.api.PATCH('/clients/{id}', { params: { path: { id } }, body: { notes: `change ${++changes}` } });
    }, 300);
    try {
      const other = await server().tenant({ plan: 'pro' });
      await register(other.api, quiet.url);
      const changed = Date.now();
      const created = await other.api.POST('/clients', { body: { name: 'Quiet' } });
      await waitFor(() => quiet.requests.length >= 1, "the other organisation's delivery", 30_000);
      const waited = Date.now() - changed;
      expect(waited, `delivered ${waited} ms after the change`).toBeLessThan(5000);
      expect(JSON.parse(quiet.requests[0]!.body)).toMatchObject({
        type: 'client.created',
        data: { object: { id: created.data!.data.id } },
      });
    } finally {
      clearInterval(noise);
    }
    // All that time the noisy organisation had at most its share, and no endpoint more than its
    // starting limit (timeouts only ever lower it).
    expect(hanging.open.max).toBeLessThanOrEqual(organisationShare(defaults.webhookConcurrency));
    for (const [path, open] of hanging.open.byPath) expect(open.max, path).toBeLessThanOrEqual(ENDPOINT_START_LIMIT);
  });

  it('a slow organisation with a large backlog: a new event of another is delivered long before that backlog is', {
    timeout: 120_000,
  }, async () => {
    // Answers take 200 ms: 480 deliveries keep the worker busy for seconds.
    const slow = await receiver(() => ({ status: 200, delayMs: 200 }));
    const quiet = await receiver();
    const noisy = await organisation();
    for (let i = 0; i < 16; i++) await insertEndpoint(db(), settings, { orgId: noisy.orgId, url: `${slow.url}/${i}` });
    for (let i = 0; i < 30; i++) await insertEvent(db(), { orgId: noisy.orgId });
    const w = worker({ timeoutMs: 5000 });
    await waitFor(() => slow.requests.length >= 16, 'the backlog under way');
    const other = await organisation();
    await insertEndpoint(db(), settings, { orgId: other.orgId, url: quiet.url });
    await insertEvent(db(), { orgId: other.orgId });
    await waitFor(() => quiet.requests.length >= 1, "the other organisation's delivery");
    // Without interleaving it would have waited behind all 480.
    expect(slow.requests.length).toBeLessThan((16 * 30) / 2);
    await w.stop();
  });
});

describe('the caps', () => {
  it('an endpoint has at most its limit of attempts in flight (4 to start with), across two workers', { timeout: 60_000 }, async () => {
    const hanging = await receiver(() => 'hang');
    const { orgId } = await organisation();
    await insertEndpoint(db(), settings, { orgId, url: hanging.url });
    for (let i = 0; i < 12; i++) await insertEvent(db(), { orgId });
    worker({ timeoutMs: 1000 });
    worker({ timeoutMs: 1000 });
    // Rounds of attempts, each timed out after a second (the limit halves, then the circuit opens).
    await waitFor(() => hanging.requests.length >= ENDPOINT_START_LIMIT + 2, 'two rounds of attempts', 30_000);
    expect(hanging.open.max).toBe(ENDPOINT_START_LIMIT);
  });

  it('WEBHOOK_ENDPOINT_CONCURRENCY sets the ceiling (and the start, when lower than 4)', { timeout: 60_000 }, async () => {
    const hanging = await receiver(() => 'hang');
    const { orgId } = await organisation();
    await insertEndpoint(db(), settings, { orgId, url: hanging.url });
    for (let i = 0; i < 6; i++) await insertEvent(db(), { orgId });
    // When each attempt arrives: with one at a time, each comes only once the one before has timed
    // out (a connection's close may reach the receiver a moment after the next attempt, so the
    // receiver's count of open connections cannot say it exactly; the arrivals can).
    const arrivals: number[] = [];
    hanging.onRequest = () => arrivals.push(performance.now());
    worker({ timeoutMs: 1000, endpointConcurrency: 1 });
    await waitFor(() => arrivals.length >= 3, 'three attempts', 30_000);
    const gaps = arrivals.slice(1, 3).map((at, i) => at - arrivals[i]!);
    for (const gap of gaps) expect(gap, `attempts ${gaps.map(Math.round).join(', ')} ms apart`).toBeGreaterThanOrEqual(900);
  });

  it('an organisation has at most half of a worker’s slots, however many endpoints it has', { timeout: 60_000 }, async () => {
    const hanging = await receiver(() => 'hang');
    const { orgId } = await organisation();
    for (let i = 0; i < 16; i++) await insertEndpoint(db(), settings, { orgId, url: `${hanging.url}/${i}` });
    for (let i = 0; i < 3; i++) await insertEvent(db(), { orgId });
    worker({ timeoutMs: 1000, concurrency: 16 });
    await waitFor(() => hanging.requests.length >= 24, 'three rounds of attempts', 30_000);
    expect(hanging.open.max).toBe(8);
  });
});

describe('several workers', () => {
  it('deliver every event to every endpoint exactly once', { timeout: 120_000 }, async () => {
    const target = await receiver();
    const orgs = await Promise.all([1, 2, 3].map(() => organisation()));
    const expected = new Set<string>();
    const endpoints = new Map<string, string[]>();
    for (const [o, { orgId }] of orgs.entries()) {
      const paths = [];
      for (let e = 0; e < 3; e++) {
        await insertEndpoint(db(), settings, { orgId, url: `${target.url}/${o}-${e}` });
        paths.push(`/hooks/${o}-${e}`);
      }
      endpoints.set(orgId, paths);
    }
    for (let i = 0; i < 20; i++) {
      for (const { orgId } of orgs) {
        const id = await insertEvent(db(), { orgId });
        for (const path of endpoints.get(orgId)!) expected.add(`${path} ${id}`);
      }
    }
    for (let i = 0; i < 3; i++) worker({ concurrency: 4 });
    await waitFor(() => target.requests.length >= expected.size, 'every delivery', 100_000);
    await new Promise((resolve) => setTimeout(resolve, 500)); // a duplicate would show by now
    const seen = target.requests.map((r) => `${r.path} ${r.headers['webhook-id']}`);
    expect(seen).toHaveLength(expected.size);
    expect(new Set(seen)).toEqual(expected);
  });
});

describe('the circuit', () => {
  it('opens after five failures in a row, holds the rest without spending their attempts, probes once, and closes on a success', async () => {
    const failing = await receiver(() => ({ status: 500 }));
    const { orgId, token } = await server().mint({ orgName: `circuit-${Date.now()}`, plan: 'pro' });
    const api = server().client(token);
    const clock = movableClock();
    const endpoint = await insertEndpoint(db(), settings, { orgId, url: failing.url });
    for (let i = 0; i < 12; i++) await insertEvent(db(), { orgId });
    const w = worker({ clock: clock.now, loop: false });
    const deliveries = () =>
      db().selectFrom('webhook_deliveries').select(['id', 'status', 'attempts']).where('endpoint_id', '=', endpoint.id).execute();
    const pause = async () =>
      (await api.GET('/webhook-endpoints/{id}', { params: { path: { id: endpoint.id } } })).data!.data.deliveryPause;

    // Four at once (the starting limit), then two (halved by the 500s): the fifth failure in a row opens the circuit.
    await waitFor(async () => {
      await w.tick();
      return (await pause()) !== null;
    }, 'two rounds of attempts');
    expect(failing.requests.length).toBeGreaterThanOrEqual(CIRCUIT_OPENS_AFTER);
    const openedAt = clock.now();
    const tried = failing.requests.length;
    expect(await pause()).toEqual({
      reason: 'circuit_open',
      probeAt: new Date(openedAt.getTime() + CIRCUIT_FIRST_COOL_DOWN_MS).toISOString(),
    });

    // Open: nothing is attempted, though retries and new deliveries are due; nothing is failed.
    clock.advance(RETRY_DELAYS_MS[0]!);
    await w.tick();
    await w.tick();
    expect(failing.requests).toHaveLength(tried);
    const held = await deliveries();
    expect(held.every((d) => d.status === 'pending')).toBe(true);
    const untried = held.filter((d) => d.attempts === 0).map((d) => d.id);
    expect(untried).toHaveLength(12 - tried);

    // The cool-down over: one probe. It fails: open again, for twice as long.
    clock.set(new Date(openedAt.getTime() + CIRCUIT_FIRST_COOL_DOWN_MS));
    await w.tick();
    expect(failing.requests).toHaveLength(tried + 1);
    await w.tick();
    expect(failing.requests).toHaveLength(tried + 1);
    const probedAt = clock.now();
    expect(await pause()).toEqual({
      reason: 'circuit_open',
      probeAt: new Date(probedAt.getTime() + 2 * CIRCUIT_FIRST_COOL_DOWN_MS).toISOString(),
    });
    clock.advance(CIRCUIT_FIRST_COOL_DOWN_MS);
    await w.tick();
    expect(failing.requests).toHaveLength(tried + 1);

    // The receiver is back: the next probe (alone) succeeds, the circuit closes, everything goes out.
    failing.answer = () => ({ status: 200 });
    const openAtArrival: number[] = [];
    failing.onRequest = () => openAtArrival.push(failing.open.now);
    clock.advance(CIRCUIT_FIRST_COOL_DOWN_MS);
    await w.tick();
    expect(openAtArrival[0]).toBe(1);
    expect(failing.requests.length).toBeGreaterThanOrEqual(tried + 2);
    expect(await pause()).toBeNull();
    await waitFor(async () => {
      await w.tick();
      return (await deliveries()).every((d) => d.status === 'succeeded');
    }, 'every delivery to succeed');
    // The held deliveries spent no attempt while the circuit was open: each succeeded at its first,
    // but the one that was the failed probe, at its second.
    const attempts = await db()
      .selectFrom('webhook_attempts')
      .select(['delivery_id', 'attempt', 'succeeded'])
      .where('endpoint_id', '=', endpoint.id)
      .execute();
    const tries = untried.map((id) => attempts.filter((a) => a.delivery_id === id).length).sort();
    expect(tries).toEqual([...untried.slice(1).map(() => 1), 2]);
    const row = await db().selectFrom('webhook_endpoints').selectAll().where('id', '=', endpoint.id).executeTakeFirstOrThrow();
    expect([row.consecutive_failures, row.circuit_open_until, row.failing_since]).toEqual([0, null, null]);
  });

  it('opens once when several failures are recorded at the same instant (attempts of one claim)', async () => {
    const org = await organisation();
    const endpoint = await insertEndpoint(db(), settings, { orgId: org.orgId, url: 'http://127.0.0.1:9/' });
    const at = new Date();
    const rules = {
      disableAfterMs: 5 * 24 * 3600 * 1000,
      circuit: { opensAfter: CIRCUIT_OPENS_AFTER, firstCoolDownMs: CIRCUIT_FIRST_COOL_DOWN_MS, maxCoolDownMs: 3600 * 1000 },
    };
    const fail = () =>
      db()
        .transaction()
        .execute((trx) => markEndpointFailed(trx, { orgId: org.orgId, endpointId: endpoint.id }, at, rules));
    const verdicts: boolean[] = [];
    for (let i = 0; i < CIRCUIT_OPENS_AFTER + 3; i++) verdicts.push(await fail());
    // The failure that reaches the count opens it; those of the same instant after it do not again.
    expect(verdicts.indexOf(true)).toBe(CIRCUIT_OPENS_AFTER - 1);
    expect(verdicts.filter(Boolean)).toHaveLength(1);
  });

  it('PATCH disabled: false closes an open circuit: its deliveries go out at once', async () => {
    const failing = await receiver(() => ({ status: 503 }));
    const { api } = await server().tenant({ plan: 'pro' });
    const id = await register(api, failing.url);
    const clock = movableClock();
    const w = worker({ clock: clock.now, loop: false });
    for (let i = 0; i < 12; i++) await api.POST('/clients', { body: { name: `Client ${i}` } });
    await waitFor(async () => {
      await w.tick();
      return (await api.GET('/webhook-endpoints/{id}', { params: { path: { id } } })).data!.data.deliveryPause !== null;
    }, 'the circuit to open');
    const tried = failing.requests.length;
    expect(tried).toBeLessThan(12);
    failing.answer = () => ({ status: 200 });
    const { data } = await api.PATCH('/webhook-endpoints/{id}', { params: { path: { id } }, body: { disabled: false } });
    expect(data!.data).toMatchObject({ deliveryPause: null, failingSince: null, disabled: false });
    // The deliveries it held go out at once (those that failed keep their retry's time).
    await w.tick();
    expect(failing.requests.length).toBeGreaterThan(tried);
  });
});
