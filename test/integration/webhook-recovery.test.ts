/**
 * Sending again on request, end to end through the API and a real receiver: a recovery after a
 * receiver was down (its deliveries exhausted, then its endpoint disabled while more events were
 * made), a redelivery of one event, and a test delivery sent by the API process itself. Every
 * delivery is verified by the `standardwebhooks` library (and the test's by the client package's
 * verifyWebhook too); nothing acknowledged before is sent again; each request lists exactly the
 * attempts it made under GET /webhook-endpoints/{id}/deliveries. Tenancy (another organisation's
 * endpoint or event is 404) and Idempotency-Key (a replay answers the first answer and sends
 * nothing more; the key with another request is 422) for all three.
 * Runs on PGlite, and on PostgreSQL when TEST_DATABASE_URL is set.
 */
import { randomUUID } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { type ClientsApi, verifyWebhook } from '../../client/index.js';
import { RECOVERY_BATCH } from '../../server/webhook-delivery/deliveries.queries.js';
import { RETRY_DELAYS_MS } from '../../server/webhook-delivery/schedule.js';
import { startTestServer } from '../support/server.js';
import { webhookHarness } from '../support/webhook-harness.js';
import { insertEvent, movableClock, type ReceivedRequest, verifyAtItsTime, waitFor } from '../support/webhook-worker-fixtures.js';

const harness = webhookHarness();
const { server, receiver: startReceiver, worker } = harness;

const pause = (ms = 5) => new Promise((resolve) => setTimeout(resolve, ms));

async function register(api: ClientsApi, url: string, enabledEvents: string[] = ['*']) {
  const { data, error } = await api.POST('/webhook-endpoints', {
    body: { url, enabledEvents: enabledEvents as ('*' | 'client.created')[] },
  });
  if (!data) throw new Error(`endpoint not registered: ${JSON.stringify(error)}`);
  return { id: data.data.id, secret: data.secret! };
}

const recover = (api: ClientsApi, id: string, body: { since: string; until?: string }, headers: Record<string, string> = {}) =>
  api.POST('/webhook-endpoints/{id}/recover', { params: { path: { id } }, body, headers });
const redeliver = (api: ClientsApi, id: string, body?: { endpointId?: string }, headers: Record<string, string> = {}) =>
  api.POST('/events/{id}/redeliver', { params: { path: { id } }, ...(body !== undefined && { body }), headers });
const sendTest = (api: ClientsApi, id: string, headers: Record<string, string> = {}) =>
  api.POST('/webhook-endpoints/{id}/test', { params: { path: { id } }, headers });
const setDisabled = async (api: ClientsApi, id: string, disabled: boolean) => {
  const { response } = await api.PATCH('/webhook-endpoints/{id}', { params: { path: { id } }, body: { disabled } });
  expect(response.status).toBe(200);
};

/** Every attempt listed for the endpoint, oldest first. */
async function attemptsOf(api: ClientsApi, id: string) {
  const { data } = await api.GET('/webhook-endpoints/{id}/deliveries', { params: { path: { id }, query: { limit: 100 } } });
  return data!.data.slice().reverse();
}

/**
 * The ids of the feed's events, in its order, once it shows at least `count` (on a shared
 * PostgreSQL server another transaction may hold the feed back for a moment).
 */
async function feedIds(api: ClientsApi, count = 0): Promise<string[]> {
  return waitFor(async () => {
    const { data } = await api.GET('/events', { params: { query: { limit: 100 } } });
    return data!.data.length >= count ? data!.data.map((event) => event.id) : undefined;
  }, `${count} events in the feed`);
}

/** Ticks until `done` (the fan-out, too, waits for the feed's horizon). */
async function tickUntil(w: { tick(): Promise<void> }, done: () => boolean, what: string): Promise<void> {
  await waitFor(async () => {
    await w.tick();
    return done();
  }, what);
}

const idsOf = (requests: ReceivedRequest[]) => requests.map((request) => request.headers['webhook-id']);

describe('POST /webhook-endpoints/{id}/recover', () => {
  it('after an outage (deliveries exhausted, then the endpoint disabled), each missed event arrives once more, in feed order; nothing acknowledged is sent again', async () => {
    const receiver = await startReceiver();
    const { api } = await server().tenant({ plan: 'pro' });
    const endpoint = await register(api, receiver.url, ['client.created', 'client.updated']);
    const clock = movableClock();
    const w = worker({ clock: clock.now, loop: false, endpointConcurrency: 1 });
    const start = new Date(Date.now() - 1000).toISOString();

    // Acknowledged before the outage.
    const a = (await api.POST('/clients', { body: { name: 'Acme' } })).data!.data.id;
    await tickUntil(w, () => receiver.requests.length === 1, 'the first delivery');

    // The receiver fails: the update's delivery spends all ten attempts.
    receiver.answer = () => ({ status: 500 });
    await pause();
    await api.PATCH('/clients/{id}', { params: { path: { id: a } }, body: { name: 'Acme Inc' } });
    await tickUntil(w, () => receiver.requests.length === 2, 'the update’s first attempt');
    for (const delay of RETRY_DELAYS_MS) {
      clock.advance(delay);
      await w.tick();
    }
    expect(receiver.requests).toHaveLength(11);
    const [acknowledged, exhausted] = await feedIds(api, 2);
    expect(new Set(idsOf(receiver.requests.slice(1)))).toEqual(new Set([exhausted]));
    await pause();
    const afterExhausted = new Date().toISOString();
    await pause();

    // Disabled meanwhile: these are never fanned out to it (and a deletion it does not take).
    await setDisabled(api, endpoint.id, true);
    const b = (await api.POST('/clients', { body: { name: 'Bluth' } })).data!.data.id;
    await api.PATCH('/clients/{id}', { params: { path: { id: b } }, body: { name: 'Bluth Company' } });
    await api.DELETE('/clients/{id}', { params: { path: { id: b } } });
    clock.advance(60_000);
    await w.tick();
    expect(receiver.requests).toHaveLength(11);

    // A recovery of a disabled endpoint is refused, saying what to do.
    const refused = await recover(api, endpoint.id, { since: start });
    expect(refused.response.status).toBe(409);
    expect(refused.error!.error.code).toBe('webhook_endpoint_disabled');

    receiver.answer = () => ({ status: 200 });
    await setDisabled(api, endpoint.id, false);
    const feed = await feedIds(api, 5);
    expect(feed).toHaveLength(5);
    const [, , created, updated] = feed;

    // A window that ends before the disabled time: the exhausted update only.
    const first = await recover(api, endpoint.id, { since: start, until: afterExhausted });
    expect(first.response.status).toBe(202);
    expect(first.data!.data).toEqual({
      endpointId: endpoint.id,
      since: new Date(start).toISOString(),
      until: afterExhausted,
      queued: 1,
      hasMore: false,
    });
    // The whole outage: the update already queued is not queued twice; the deletion is not a type it takes.
    const whole = await recover(api, endpoint.id, { since: start });
    expect(whole.response.status).toBe(202);
    expect(whole.data!.data.queued).toBe(2);
    expect(Date.parse(whole.data!.data.until)).toBeGreaterThan(Date.parse(afterExhausted));

    // One at a time (the endpoint's limit is 1): a pass each.
    await tickUntil(w, () => receiver.requests.length >= 14, 'the recovered deliveries');
    const recovered = receiver.requests.slice(11);
    expect(idsOf(recovered)).toEqual([exhausted, created, updated]);
    const feedEvents = new Map((await api.GET('/events', { params: { query: { limit: 100 } } })).data!.data.map((e) => [e.id, e]));
    for (const request of recovered) {
      const payload = verifyAtItsTime(endpoint.secret, request) as { id: string };
      expect(payload).toEqual(feedEvents.get(request.headers['webhook-id']!));
    }
    expect(idsOf(receiver.requests)).not.toContain(feed[4]);
    expect(idsOf(receiver.requests).filter((id) => id === acknowledged)).toHaveLength(1);

    // Nothing is left to recover: each is acknowledged now.
    expect((await recover(api, endpoint.id, { since: start })).data!.data.queued).toBe(0);
    clock.advance(RETRY_DELAYS_MS.at(-1)!);
    await w.tick();
    expect(receiver.requests).toHaveLength(14);

    // The attempts listed: the recovered ones count from 1 again (made in one tick of the worker's
    // clock, they share a time: the list orders them by id then).
    const attempts = await attemptsOf(api, endpoint.id);
    expect(attempts).toHaveLength(14);
    const byEvent = (x: { eventId: string }, y: { eventId: string }) => x.eventId.localeCompare(y.eventId);
    expect(
      attempts
        .slice(11)
        .map((x) => ({ eventId: x.eventId, attempt: x.attempt, succeeded: x.succeeded }))
        .sort(byEvent),
    ).toEqual([exhausted, created, updated].map((eventId) => ({ eventId: eventId!, attempt: 1, succeeded: true })).sort(byEvent));
  });

  it('refuses a window older than the 30 days events are kept, and one that ends before it starts, naming the field', async () => {
    const { api } = await server().tenant({ plan: 'pro' });
    const endpoint = await register(api, 'https://crm.example.com/in');
    const old = await recover(api, endpoint.id, { since: new Date(Date.now() - 31 * 24 * 3_600_000).toISOString() });
    expect(old.response.status).toBe(400);
    expect(Object.keys(old.error!.error.fields!)).toEqual(['since']);
    const backwards = await recover(api, endpoint.id, {
      since: new Date(Date.now() - 3_600_000).toISOString(),
      until: '2020-01-01T00:00:00Z',
    });
    expect(backwards.response.status).toBe(400);
    expect(Object.keys(backwards.error!.error.fields!)).toEqual(['until']);
    const impossible = await recover(api, endpoint.id, { since: '2026-02-30T00:00:00Z' });
    expect(impossible.response.status).toBe(400);
  });

  it('queues a long window 1,000 events a request, the oldest first: the requests add up to every event once, in the feed’s order', async () => {
    const receiver = await startReceiver();
    const { api, token } = await server().tenant({ plan: 'pro' });
    const endpoint = await register(api, receiver.url, ['client.created']);
    await setDisabled(api, endpoint.id, true);
    const since = new Date(Date.now() - 1_000).toISOString();
    // Each a change of its own while the endpoint was disabled (written as the clients' writes write them).
    const total = RECOVERY_BATCH + 2;
    for (let i = 0; i < total; i++) await insertEvent(server().database.db, { orgId: token.orgId, env: 'test' });
    await setDisabled(api, endpoint.id, false);
    const until = new Date().toISOString();
    const first = await recover(api, endpoint.id, { since, until });
    expect(first.data!.data).toMatchObject({ queued: RECOVERY_BATCH, hasMore: true });
    const second = await recover(api, endpoint.id, { since, until });
    expect(second.data!.data).toMatchObject({ queued: 2, hasMore: false });
    expect((await recover(api, endpoint.id, { since, until })).data!.data).toMatchObject({ queued: 0, hasMore: false });

    // One delivery per event, due in the feed's order across the two requests.
    const db = server().database.db;
    const queued = await db
      .selectFrom('webhook_deliveries')
      .select('event_id')
      .where('endpoint_id', '=', endpoint.id)
      .orderBy('next_attempt_at')
      .execute();
    const feed = await db
      .selectFrom('events')
      .select('id')
      .where('org_id', '=', token.orgId)
      .where('type', '=', 'client.created')
      .orderBy('txid')
      .orderBy('seq')
      .execute();
    expect(feed).toHaveLength(total);
    expect(queued.map((row) => row.event_id)).toEqual(feed.map((row) => row.id));
  });

  it('tenancy: another organisation’s endpoint is 404, and its events are never queued', async () => {
    const receiver = await startReceiver();
    const { api: mine } = await server().tenant({ plan: 'pro' });
    const { api: theirs } = await server().tenant({ plan: 'pro' });
    const own = await register(mine, receiver.url);
    const other = await register(theirs, receiver.url);
    await theirs.POST('/clients', { body: { name: 'Theirs' } });
    const since = new Date(Date.now() - 60_000).toISOString();
    const crossed = await recover(mine, other.id, { since });
    expect(crossed.response.status).toBe(404);
    expect(crossed.error!.error.code).toBe('not_found');
    expect((await recover(mine, own.id, { since })).data!.data.queued).toBe(0);
  });

  it('is idempotent under Idempotency-Key: a replay answers the first answer and queues nothing; the key with another window is 422', async () => {
    const receiver = await startReceiver();
    receiver.answer = () => ({ status: 500 });
    const { api } = await server().tenant({ plan: 'pro' });
    const endpoint = await register(api, receiver.url);
    await setDisabled(api, endpoint.id, true);
    await api.POST('/clients', { body: { name: 'Missed' } });
    await setDisabled(api, endpoint.id, false);
    const since = new Date(Date.now() - 60_000).toISOString();
    const key = { 'Idempotency-Key': randomUUID() };
    const first = await recover(api, endpoint.id, { since }, key);
    expect(first.data!.data.queued).toBe(1);
    const replay = await recover(api, endpoint.id, { since }, key);
    expect(replay.response.status).toBe(202);
    expect(replay.response.headers.get('Idempotent-Replayed')).toBe('true');
    expect(replay.data).toEqual(first.data);
    const reused = await recover(api, endpoint.id, { since: new Date(Date.now() - 120_000).toISOString() }, key);
    expect(reused.response.status).toBe(422);
    expect(reused.error!.error.code).toBe('idempotency_key_reused');
    const deliveries = await server()
      .database.db.selectFrom('webhook_deliveries')
      .select('status')
      .where('endpoint_id', '=', endpoint.id)
      .execute();
    expect(deliveries).toEqual([{ status: 'pending' }]);
  });
});

describe('POST /events/{id}/redeliver', () => {
  it('sends one event again, once, to every enabled endpoint that takes it, or to the one named', async () => {
    const receiver = await startReceiver();
    const { api } = await server().tenant({ plan: 'pro' });
    const all = await register(api, `${receiver.url}/all`);
    const deletions = await register(api, `${receiver.url}/deletions`, ['client.deleted']);
    const off = await register(api, `${receiver.url}/off`);
    await setDisabled(api, off.id, true);
    const w = worker({ loop: false });
    await api.POST('/clients', { body: { name: 'Hooli' } });
    await tickUntil(w, () => receiver.requests.length === 1, 'the first delivery');
    const [eventId] = await feedIds(api, 1);

    const again = await redeliver(api, eventId!);
    expect(again.response.status).toBe(202);
    expect(again.data!.data).toEqual({ eventId, queued: 1, endpointIds: [all.id] });
    // Already waiting: not queued twice.
    expect((await redeliver(api, eventId!, {})).data!.data).toEqual({ eventId, queued: 0, endpointIds: [] });
    await w.tick();
    expect(receiver.requests).toHaveLength(2);
    const sent = receiver.requests[1]!;
    expect(sent.path).toBe('/hooks/all');
    expect(sent.headers['webhook-id']).toBe(eventId);
    const payload = new Webhook(all.secret).verify(sent.body, sent.headers) as { id: string };
    expect(payload.id).toBe(eventId);
    const attempts = await attemptsOf(api, all.id);
    expect(attempts.map((x) => [x.eventId, x.attempt, x.succeeded])).toEqual([
      [eventId, 1, true],
      [eventId, 1, true],
    ]);

    const named = await redeliver(api, eventId!, { endpointId: all.id });
    expect(named.data!.data).toEqual({ eventId, queued: 1, endpointIds: [all.id] });
    await w.tick();
    expect(receiver.requests).toHaveLength(3);

    const notTaken = await redeliver(api, eventId!, { endpointId: deletions.id });
    expect([notTaken.response.status, notTaken.error!.error.code]).toEqual([409, 'webhook_endpoint_not_subscribed']);
    const disabled = await redeliver(api, eventId!, { endpointId: off.id });
    expect([disabled.response.status, disabled.error!.error.code]).toEqual([409, 'webhook_endpoint_disabled']);
    await w.tick();
    expect(receiver.requests).toHaveLength(3);
    expect(await attemptsOf(api, deletions.id)).toEqual([]);
  });

  it('tenancy: another organisation’s event or endpoint is 404', async () => {
    const { api: mine } = await server().tenant({ plan: 'pro' });
    const { api: theirs } = await server().tenant({ plan: 'pro' });
    await mine.POST('/clients', { body: { name: 'Mine' } });
    await theirs.POST('/clients', { body: { name: 'Theirs' } });
    const other = await register(theirs, 'https://crm.example.com/theirs');
    const [mineId] = await feedIds(mine, 1);
    const [theirsId] = await feedIds(theirs, 1);
    const event = await redeliver(mine, theirsId!);
    expect([event.response.status, event.error!.error.code]).toEqual([404, 'not_found']);
    const endpoint = await redeliver(mine, mineId!, { endpointId: other.id });
    expect([endpoint.response.status, endpoint.error!.error.code]).toEqual([404, 'not_found']);
    expect(endpoint.error!.error.message).toMatch(/webhook endpoint/);
  });

  it('is idempotent under Idempotency-Key: a replay queues nothing more; the key with another body is 422', async () => {
    const receiver = await startReceiver();
    const { api } = await server().tenant({ plan: 'pro' });
    const endpoint = await register(api, receiver.url);
    const w = worker({ loop: false });
    await api.POST('/clients', { body: { name: 'Pied Piper' } });
    await tickUntil(w, () => receiver.requests.length === 1, 'the first delivery');
    const [eventId] = await feedIds(api, 1);
    const key = { 'Idempotency-Key': randomUUID() };
    const first = await redeliver(api, eventId!, { endpointId: endpoint.id }, key);
    expect(first.data!.data.queued).toBe(1);
    await w.tick();
    const replay = await redeliver(api, eventId!, { endpointId: endpoint.id }, key);
    expect(replay.response.headers.get('Idempotent-Replayed')).toBe('true');
    expect(replay.data).toEqual(first.data);
    await w.tick();
    expect(receiver.requests).toHaveLength(2);
    const reused = await redeliver(api, eventId!, {}, key);
    expect([reused.response.status, reused.error!.error.code]).toEqual([422, 'idempotency_key_reused']);
  });
});

describe('POST /webhook-endpoints/{id}/test', () => {
  it('sends one signed webhook.test now, answers its outcome, lists it under the deliveries, and keeps it out of the feed', async () => {
    const receiver = await startReceiver();
    const { api } = await server().tenant({ plan: 'pro' });
    const endpoint = await register(api, receiver.url, ['client.deleted']);
    const { data, response } = await sendTest(api, endpoint.id);
    expect(response.status).toBe(200);
    const attempt = data!.data;
    expect(attempt).toMatchObject({
      eventType: 'webhook.test',
      attempt: 1,
      statusCode: 200,
      error: null,
      succeeded: true,
      nextRetryAt: null,
    });
    expect(receiver.requests).toHaveLength(1);
    const request = receiver.requests[0]!;
    expect(request.headers['webhook-id']).toBe(attempt.eventId);
    const verified = new Webhook(endpoint.secret).verify(request.body, request.headers);
    const event = verifyWebhook(request.body, request.headers, endpoint.secret);
    expect(event).toEqual(verified);
    if (event.type !== 'webhook.test') throw new Error(`not a test event: ${String(event.type)}`);
    expect(event.data.object).toEqual({ id: endpoint.id, url: receiver.url });
    expect(event.env).toBe('test');

    expect(await attemptsOf(api, endpoint.id)).toEqual([attempt]);
    expect(await feedIds(api)).toEqual([]);
    const read = await api.GET('/events/{id}', { params: { path: { id: attempt.eventId } } });
    expect(read.response.status).toBe(404);
    expect((await redeliver(api, attempt.eventId)).response.status).toBe(404);

    // The worker neither fans it out to another endpoint nor sends it again.
    const other = await startReceiver();
    await register(api, other.url);
    const clock = movableClock();
    const w = worker({ clock: clock.now, loop: false });
    await w.tick();
    clock.advance(24 * 3_600_000);
    await w.tick();
    expect(receiver.requests).toHaveLength(1);
    expect(other.requests).toHaveLength(0);
  });

  it('a receiver that fails: the answer says so, the endpoint is not marked failing, and nothing is retried', async () => {
    const receiver = await startReceiver();
    receiver.answer = () => ({ status: 503 });
    const { api } = await server().tenant({ plan: 'pro' });
    const endpoint = await register(api, receiver.url);
    const { data } = await sendTest(api, endpoint.id);
    expect(data!.data).toMatchObject({ statusCode: 503, succeeded: false, error: null, nextRetryAt: null });
    const clock = movableClock();
    const w = worker({ clock: clock.now, loop: false });
    clock.advance(24 * 3_600_000);
    await w.tick();
    expect(receiver.requests).toHaveLength(1);
    const { data: read } = await api.GET('/webhook-endpoints/{id}', { params: { path: { id: endpoint.id } } });
    expect(read!.data).toMatchObject({ failingSince: null, deliveryPause: null });
    await receiver.close();
    const refused = await sendTest(api, endpoint.id);
    expect(refused.data!.data).toMatchObject({ statusCode: null, succeeded: false, error: 'connection refused' });
  });

  it('keeps the server’s time limit (WEBHOOK_TIMEOUT_MS) and address policy, as the worker does', async () => {
    const receiver = await startReceiver();
    receiver.answer = () => 'hang';
    const { api, token } = await server().tenant({ plan: 'pro' });
    const endpoint = await register(api, receiver.url);
    // Two more servers on the same database: one with a short limit, one that refuses private addresses.
    const quick = await startTestServer({ webhooks: { ...harness.settings, timeoutMs: 300 } }, { database: server().database });
    const strict = await startTestServer(
      { webhooks: { ...harness.settings, allowPrivateNetworks: false } },
      { database: server().database },
    );
    try {
      const started = Date.now();
      const timedOut = await sendTest(quick.client(token.token), endpoint.id);
      expect(timedOut.data!.data).toMatchObject({ statusCode: null, succeeded: false, error: 'timeout' });
      expect(timedOut.data!.data.durationMs).toBeGreaterThanOrEqual(290);
      expect(Date.now() - started).toBeLessThan(5_000);
      const requestsBefore = receiver.requests.length;
      const refused = await sendTest(strict.client(token.token), endpoint.id);
      expect(refused.data!.data).toMatchObject({ statusCode: null, succeeded: false, error: 'address not allowed' });
      expect(receiver.requests).toHaveLength(requestsBefore);
    } finally {
      await quick.close();
      await strict.close();
    }
  });

  it('tenancy and state: another organisation’s endpoint is 404, a disabled one 409, and neither is sent anything', async () => {
    const receiver = await startReceiver();
    const { api: mine } = await server().tenant({ plan: 'pro' });
    const { api: theirs } = await server().tenant({ plan: 'pro' });
    const other = await register(theirs, receiver.url);
    const crossed = await sendTest(mine, other.id);
    expect([crossed.response.status, crossed.error!.error.code]).toEqual([404, 'not_found']);
    const own = await register(mine, receiver.url);
    await setDisabled(mine, own.id, true);
    const disabled = await sendTest(mine, own.id);
    expect([disabled.response.status, disabled.error!.error.code]).toEqual([409, 'webhook_endpoint_disabled']);
    expect(receiver.requests).toHaveLength(0);
  });

  it('is idempotent under Idempotency-Key: a replay answers the first attempt and sends nothing; the key on another endpoint is 422', async () => {
    const receiver = await startReceiver();
    const { api } = await server().tenant({ plan: 'pro' });
    const endpoint = await register(api, receiver.url);
    const another = await register(api, `${receiver.url}/2`);
    const key = { 'Idempotency-Key': randomUUID() };
    const first = await sendTest(api, endpoint.id, key);
    const replay = await sendTest(api, endpoint.id, key);
    expect(replay.response.status).toBe(200);
    expect(replay.response.headers.get('Idempotent-Replayed')).toBe('true');
    expect(replay.data).toEqual(first.data);
    const reused = await sendTest(api, another.id, key);
    expect([reused.response.status, reused.error!.error.code]).toEqual([422, 'idempotency_key_reused']);
    expect(receiver.requests).toHaveLength(1);
    expect(await attemptsOf(api, endpoint.id)).toHaveLength(1);
    expect(await attemptsOf(api, another.id)).toHaveLength(0);
  });

  it('with its key, a request that arrives while the first is still sending is 409, and sends nothing', async () => {
    const receiver = await startReceiver();
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    receiver.answer = () => 'hang';
    const { api } = await server().tenant({ plan: 'pro' });
    const endpoint = await register(api, receiver.url);
    const key = { 'Idempotency-Key': randomUUID() };
    receiver.onRequest = () => release();
    const first = sendTest(api, endpoint.id, key);
    await held;
    const second = await sendTest(api, endpoint.id, key);
    expect([second.response.status, second.error!.error.code]).toEqual([409, 'idempotency_request_in_progress']);
    expect(second.response.headers.get('Retry-After')).toBe('1');
    await receiver.close();
    expect((await first).data!.data.succeeded).toBe(false);
    await waitFor(async () => (await sendTest(api, endpoint.id, key)).response.headers.get('Idempotent-Replayed'), 'the replay');
    expect(receiver.requests).toHaveLength(1);
  });
});
