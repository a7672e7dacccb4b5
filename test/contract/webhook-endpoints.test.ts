/**
 * The webhook endpoints' operations through the typed client: register, read, list, change,
 * delete, rotate the secret, list delivery attempts. The plan gate on every write (reads answer on
 * every plan, saying why deliveries wait), the secret
 * shown once and stored only sealed, tenancy (another organisation, the other environment), the
 * cap of 16 per organisation and environment. The address policy has its own file
 * (webhook-url-policy.test.ts); this server allows private networks, so nothing is resolved here.
 * Runs on PGlite, and on PostgreSQL when TEST_DATABASE_URL is set.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ClientsApi, components } from '../../client/index.js';
import { ephemeralWebhookSettings, type WebhookSettings } from '../../server/webhook-delivery/settings.js';
import { startTestServer, type TestServer } from '../support/server.js';

type Endpoint = components['schemas']['WebhookEndpoint'];
type EndpointCreate = components['schemas']['WebhookEndpointCreate'];

const SECRET = /^whsec_[A-Za-z0-9+/]{43}=$/;
const UNKNOWN_ID = '497f6eca-6276-4993-bfeb-53cbbbba6f08';
const DAY_MS = 24 * 60 * 60 * 1000;
const ENDPOINT_FIELDS = [
  'createdAt',
  'deliveryPause',
  'description',
  'disabled',
  'disabledReason',
  'enabledEvents',
  'env',
  'failingSince',
  'id',
  'previousSecretExpiresAt',
  'updatedAt',
  'url',
];

let server: TestServer;
/** The server's own settings: the tests open stored secrets with its box. */
const webhooks: WebhookSettings = ephemeralWebhookSettings({ allowPrivateNetworks: true });
let api: ClientsApi;
let orgId: string;

beforeAll(async () => {
  // Six creates of one organisation at once (the race for the last places): no concurrency limit.
  server = await startTestServer({ webhooks, concurrencyLimit: false });
});
// A new organisation for each test: the cap of 16 endpoints is per organisation.
beforeEach(async () => {
  const tenant = await server.tenant({ plan: 'pro' });
  api = tenant.api;
  orgId = tenant.token.orgId;
});
afterAll(() => server?.close());

const pause = (ms = 3) => new Promise((resolve) => setTimeout(resolve, ms));

async function create(body: Partial<EndpointCreate> = {}, on: ClientsApi = api) {
  const answer = await on.POST('/webhook-endpoints', {
    body: { url: 'https://crm.example.com/webhooks/clients', enabledEvents: ['*'], ...body },
  });
  expect(answer.response.status).toBe(201);
  return { endpoint: answer.data!.data, secret: answer.data!.secret!, response: answer.response };
}

const get = (id: string, on: ClientsApi = api) => on.GET('/webhook-endpoints/{id}', { params: { path: { id } } });
const patch = (id: string, body: components['schemas']['WebhookEndpointUpdate'], on: ClientsApi = api) =>
  on.PATCH('/webhook-endpoints/{id}', { params: { path: { id } }, body });
const remove = (id: string, on: ClientsApi = api) => on.DELETE('/webhook-endpoints/{id}', { params: { path: { id } } });
const rotate = (id: string, on: ClientsApi = api, headers: Record<string, string> = {}) =>
  on.POST('/webhook-endpoints/{id}/rotate-secret', { params: { path: { id } }, headers });
const deliveries = (id: string, query: { limit?: number; cursor?: string } = {}, on: ClientsApi = api) =>
  on.GET('/webhook-endpoints/{id}/deliveries', { params: { path: { id }, query } });

async function row(id: string) {
  return server.database.db.selectFrom('webhook_endpoints').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Stages the worker's state straight in the table (the worker is not part of these tests). */
async function stage(
  id: string,
  values: { disabled?: boolean; disabled_reason?: 'manual' | 'failing' | null; failing_since?: Date | null },
) {
  await server.database.db.updateTable('webhook_endpoints').set(values).where('id', '=', id).execute();
}

describe('POST /webhook-endpoints, GET, PATCH, DELETE: the round trip', () => {
  it('registers, reads, lists, changes and deletes an endpoint', async () => {
    const before = Date.now();
    const { endpoint, response } = await create({ description: '  CRM sync  ', enabledEvents: ['client.created', 'client.updated'] });
    expect(Object.keys(endpoint).sort()).toEqual(ENDPOINT_FIELDS);
    expect(endpoint).toMatchObject({
      env: 'test',
      url: 'https://crm.example.com/webhooks/clients',
      description: 'CRM sync',
      enabledEvents: ['client.created', 'client.updated'],
      disabled: false,
      disabledReason: null,
      failingSince: null,
      deliveryPause: null,
      previousSecretExpiresAt: null,
    });
    expect(response.headers.get('Location')).toBe(`/webhook-endpoints/${endpoint.id}`);
    expect(endpoint.createdAt).toBe(endpoint.updatedAt);
    expect(Date.parse(endpoint.createdAt)).toBeGreaterThanOrEqual(before - 1000);
    const stored = (await row(endpoint.id))!;
    expect(stored).toMatchObject({ org_id: orgId, env: 'test' });
    // bigint: a string from pg, a number from PGlite.
    expect(String(stored.feed_seq)).toBe('0');

    const read = await get(endpoint.id);
    expect(read.response.status).toBe(200);
    expect(read.data!.data).toEqual(endpoint);
    expect((await api.GET('/webhook-endpoints')).data!.data.map((e) => e.id)).toContain(endpoint.id);

    await pause();
    const changed = await patch(endpoint.id, { url: 'http://127.0.0.1:9/hooks', enabledEvents: ['*'] });
    expect(changed.response.status).toBe(200);
    expect(changed.data!.data).toMatchObject({ url: 'http://127.0.0.1:9/hooks', enabledEvents: ['*'], description: 'CRM sync' });
    expect(Date.parse(changed.data!.data.updatedAt)).toBeGreaterThan(Date.parse(endpoint.updatedAt));

    const removed = await remove(endpoint.id);
    expect(removed.response.status).toBe(200);
    expect(removed.data!.data).toEqual(changed.data!.data);
    expect(await row(endpoint.id)).toBeUndefined();
    expect((await get(endpoint.id)).response.status).toBe(404);
    const again = await remove(endpoint.id);
    expect(again.response.status).toBe(404);
    expect(again.error!.error.code).toBe('not_found');
  });

  it('a new endpoint’s place in the feed is its own transaction: events written before are behind it, events after ahead', async () => {
    const event = () =>
      server.database.db
        .insertInto('events')
        .values({ org_id: orgId, env: 'test', id: randomUUID(), type: 'client.created', created_at: new Date(), data: '{}' })
        .returning('txid')
        .executeTakeFirstOrThrow();
    const before = await event();
    const { endpoint } = await create();
    const after = await event();
    const place = BigInt((await row(endpoint.id))!.feed_txid);
    expect(place).toBeGreaterThan(BigInt(before.txid));
    expect(BigInt(after.txid)).toBeGreaterThan(place);
  });

  it('registers an endpoint disabled when asked, with the reason manual', async () => {
    const { endpoint } = await create({ disabled: true, description: '   ' });
    expect(endpoint).toMatchObject({ disabled: true, disabledReason: 'manual', description: null });
  });

  it('deleting takes the endpoint’s deliveries and attempts with it', async () => {
    const { endpoint } = await create();
    await stageAttempts(endpoint.id, 2);
    const attempts = () => server.database.db.selectFrom('webhook_attempts').select('id').where('endpoint_id', '=', endpoint.id).execute();
    expect(await attempts()).toHaveLength(2);
    expect((await remove(endpoint.id)).response.status).toBe(200);
    expect(await attempts()).toHaveLength(0);
    const left = await server.database.db.selectFrom('webhook_deliveries').select('id').where('endpoint_id', '=', endpoint.id).execute();
    expect(left).toHaveLength(0);
  });

  it('lists the endpoints newest first', async () => {
    const { api: own } = await server.tenant({ plan: 'studio' });
    const made: string[] = [];
    for (let i = 0; i < 3; i++) made.push((await create({ description: `#${i}` }, own)).endpoint.id);
    const { data, response } = await own.GET('/webhook-endpoints');
    expect(response.status).toBe(200);
    expect(data!.data.map((e) => e.id)).toEqual(made.reverse());
  });

  it('an id that is not a UUID is 404 not_found, like an unknown one', async () => {
    for (const id of ['not-a-uuid', UNKNOWN_ID]) {
      const { error, response } = await get(id);
      expect(response.status).toBe(404);
      expect(error!.error.code).toBe('not_found');
    }
  });
});

describe('PATCH /webhook-endpoints/{id}', () => {
  it('changes each field sent, and only those; updatedAt moves', async () => {
    const { endpoint } = await create({ description: 'First' });
    const steps: [components['schemas']['WebhookEndpointUpdate'], Partial<Endpoint>][] = [
      [{ url: 'https://erp.example.org/in' }, { url: 'https://erp.example.org/in' }],
      [{ description: '  Second  ' }, { description: 'Second' }],
      [{ description: '' }, { description: null }],
      [{ description: 'Third' }, { description: 'Third' }],
      [{ description: null }, { description: null }],
      [{ enabledEvents: ['client.deleted', 'client.restored'] }, { enabledEvents: ['client.deleted', 'client.restored'] }],
      [{ disabled: true }, { disabled: true, disabledReason: 'manual' }],
      [{ disabled: false }, { disabled: false, disabledReason: null }],
    ];
    let current = endpoint;
    for (const [body, expected] of steps) {
      await pause();
      const { data, response } = await patch(endpoint.id, body);
      expect(response.status, JSON.stringify(body)).toBe(200);
      expect(data!.data).toEqual({ ...current, ...expected, updatedAt: data!.data.updatedAt });
      expect(Date.parse(data!.data.updatedAt), JSON.stringify(body)).toBeGreaterThan(Date.parse(current.updatedAt));
      current = data!.data;
    }
  });

  it('an empty object, or values as they are, change nothing (updatedAt stays)', async () => {
    const { endpoint } = await create({ description: 'Same', enabledEvents: ['client.created'] });
    for (const body of [{}, { description: 'Same', enabledEvents: ['client.created' as const], url: endpoint.url, disabled: false }]) {
      await pause();
      const { data, response } = await patch(endpoint.id, body);
      expect(response.status).toBe(200);
      expect(data!.data).toEqual(endpoint);
    }
  });

  it('re-enabling an endpoint disabled for failing forgets the failures and moves its place in the feed to now', async () => {
    const { endpoint } = await create();
    const failingSince = new Date(Date.now() - 5 * DAY_MS);
    await stage(endpoint.id, { disabled: true, disabled_reason: 'failing', failing_since: failingSince });
    const staged = (await get(endpoint.id)).data!.data;
    expect(staged).toMatchObject({ disabled: true, disabledReason: 'failing', failingSince: failingSince.toISOString() });
    const placeBefore = BigInt((await row(endpoint.id))!.feed_txid);

    const { data } = await patch(endpoint.id, { disabled: false });
    expect(data!.data).toMatchObject({ disabled: false, disabledReason: null, failingSince: null });
    const after = (await row(endpoint.id))!;
    expect(BigInt(after.feed_txid)).toBeGreaterThan(placeBefore);
    expect(String(after.feed_seq)).toBe('0');
  });

  it('disabled: false on an endpoint that is enabled but failing forgets the failures and keeps its place in the feed', async () => {
    const { endpoint } = await create();
    await stage(endpoint.id, { failing_since: new Date(Date.now() - DAY_MS) });
    await server.database.db.updateTable('webhook_endpoints').set({ feed_seq: '7' }).where('id', '=', endpoint.id).execute();
    const before = (await row(endpoint.id))!;
    const { data } = await patch(endpoint.id, { disabled: false });
    expect(data!.data).toMatchObject({ disabled: false, failingSince: null });
    const after = (await row(endpoint.id))!;
    expect([after.feed_txid, String(after.feed_seq)]).toEqual([before.feed_txid, '7']);
  });

  it('disabled: true on an endpoint disabled for failing keeps it as it is', async () => {
    const { endpoint } = await create();
    await stage(endpoint.id, { disabled: true, disabled_reason: 'failing', failing_since: new Date(Date.now() - 6 * DAY_MS) });
    const staged = (await get(endpoint.id)).data!.data;
    expect((await patch(endpoint.id, { disabled: true })).data!.data).toEqual(staged);
  });

  it('refuses unknown fields by name, and changes nothing', async () => {
    const { endpoint } = await create();
    const { error, response } = await patch(endpoint.id, { secret: 'whsec_x' } as never);
    expect(response.status).toBe(400);
    expect(error!.error.fields).toHaveProperty('secret');
    expect((await get(endpoint.id)).data!.data).toEqual(endpoint);
  });
});

describe('the plan: webhooks need pro or above', () => {
  it('every write (create, change, delete, rotate) is 402 plan_required on the free plan, naming pro and webhooks', async () => {
    const { api: free, token } = await server.tenant({ plan: 'free' });
    // One endpoint that exists (a downgrade keeps them), so a 404 cannot hide behind the 402.
    const id = await endpointOnFree(token.orgId);
    const answers = {
      create: await free.POST('/webhook-endpoints', { body: { url: 'https://crm.example.com/in', enabledEvents: ['*'] } }),
      update: await patch(id, { description: 'x' }, free),
      enable: await patch(id, { disabled: false }, free),
      delete: await remove(id, free),
      rotate: await rotate(id, free),
    };
    for (const [name, { error, response }] of Object.entries(answers)) {
      expect(response.status, name).toBe(402);
      expect(error!.error, name).toMatchObject({ code: 'plan_required', requiredPlan: 'pro', feature: 'webhooks' });
    }
    expect(await row(id)).toMatchObject({ secret: 'sealed', description: null, disabled: true });
  });

  it('reads answer on every plan: on free, each endpoint says its deliveries wait for the plan', async () => {
    const { api: free, token } = await server.tenant({ plan: 'free' });
    const id = await endpointOnFree(token.orgId);
    const pause = { reason: 'plan', probeAt: null };
    const read = await get(id, free);
    expect(read.response.status).toBe(200);
    expect(read.data!.data).toMatchObject({ id, deliveryPause: pause, disabled: true });
    expect((await free.GET('/webhook-endpoints')).data!.data.map((e) => [e.id, e.deliveryPause])).toEqual([[id, pause]]);
    expect((await deliveries(id, {}, free)).data).toEqual({ data: [], nextCursor: null });
    // A new organisation on free simply has none.
    const { api: fresh } = await server.tenant({ plan: 'free' });
    expect((await fresh.GET('/webhook-endpoints')).data).toEqual({ data: [] });
    expect((await get(id, fresh)).response.status).toBe(404);
  });
});

/** An endpoint of an organisation now on free, as a downgrade leaves it (here, disabled by hand before). */
async function endpointOnFree(orgId: string): Promise<string> {
  const { id } = await server.database.db
    .insertInto('webhook_endpoints')
    .values({
      org_id: orgId,
      env: 'test',
      id: randomUUID(),
      url: 'https://crm.example.com/in',
      description: null,
      enabled_events: ['*'],
      disabled: true,
      disabled_reason: 'manual',
      failing_since: null,
      secret: 'sealed',
      previous_secret: null,
      previous_secret_expires_at: null,
      feed_txid: '1',
      created_at: new Date(),
      updated_at: new Date(),
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return id;
}

describe('the signing secret', () => {
  it('is shown once: a replay of the create has no secret; only the sealed secret is stored, bound to its endpoint', async () => {
    const key = randomUUID();
    const body = { url: 'https://crm.example.com/once', enabledEvents: ['*' as const] };
    const first = await api.POST('/webhook-endpoints', { body, headers: { 'Idempotency-Key': key } });
    expect(first.response.status).toBe(201);
    const secret = first.data!.secret!;
    expect(secret).toMatch(SECRET);

    const again = await api.POST('/webhook-endpoints', { body, headers: { 'Idempotency-Key': key } });
    expect(again.response.status).toBe(201);
    expect(again.response.headers.get('Idempotent-Replayed')).toBe('true');
    expect(again.data).toEqual({ data: first.data!.data });
    expect(again.response.headers.get('Location')).toBe(`/webhook-endpoints/${first.data!.data.id}`);

    const stored = (await row(first.data!.data.id))!;
    const everything = JSON.stringify(stored);
    expect(everything).not.toContain(secret);
    expect(everything).not.toContain(secret.slice('whsec_'.length));
    expect(webhooks.secrets.open(stored.secret, stored.id)).toBe(secret);
    expect(() => webhooks.secrets.open(stored.secret, randomUUID())).toThrow();
    // No second endpoint was made by the replay.
    const all = await server.database.db.selectFrom('webhook_endpoints').select('id').where('url', '=', body.url).execute();
    expect(all).toHaveLength(1);
  });

  it('the same Idempotency-Key with another request is 422 idempotency_key_reused, and makes nothing', async () => {
    const key = randomUUID();
    const first = await api.POST('/webhook-endpoints', {
      body: { url: 'https://crm.example.com/a', enabledEvents: ['*'] },
      headers: { 'Idempotency-Key': key },
    });
    expect(first.response.status).toBe(201);
    const other = await api.POST('/webhook-endpoints', {
      body: { url: 'https://crm.example.com/b', enabledEvents: ['*'] },
      headers: { 'Idempotency-Key': key },
    });
    expect(other.response.status).toBe(422);
    expect(other.error!.error.code).toBe('idempotency_key_reused');
    expect((await api.GET('/webhook-endpoints')).data!.data.map((e) => e.url)).toEqual(['https://crm.example.com/a']);
  });

  it('is different for every endpoint', async () => {
    const a = await create();
    const b = await create();
    expect(a.secret).toMatch(SECRET);
    expect(b.secret).not.toBe(a.secret);
  });
});

describe('POST /webhook-endpoints/{id}/rotate-secret', () => {
  it('starts a new secret; the previous one signs for 24 more hours; rotating again drops the oldest', async () => {
    const { endpoint, secret: first } = await create();
    const sealedFirst = (await row(endpoint.id))!.secret;

    const before = Date.now();
    const rotated = await rotate(endpoint.id);
    const after = Date.now();
    expect(rotated.response.status).toBe(200);
    const second = rotated.data!.secret!;
    expect(second).toMatch(SECRET);
    expect(second).not.toBe(first);
    const expires = Date.parse(rotated.data!.data.previousSecretExpiresAt!);
    expect(expires).toBeGreaterThanOrEqual(before + DAY_MS - 1000);
    expect(expires).toBeLessThanOrEqual(after + DAY_MS + 1000);
    expect(rotated.data!.data.updatedAt).toBe(new Date(expires - DAY_MS).toISOString());

    const stored = (await row(endpoint.id))!;
    expect(stored.previous_secret).toBe(sealedFirst);
    expect(webhooks.secrets.open(stored.previous_secret!, endpoint.id)).toBe(first);
    expect(webhooks.secrets.open(stored.secret, endpoint.id)).toBe(second);
    expect((await get(endpoint.id)).data!.data.previousSecretExpiresAt).toBe(rotated.data!.data.previousSecretExpiresAt);

    const third = (await rotate(endpoint.id)).data!.secret!;
    const thrice = (await row(endpoint.id))!;
    expect(webhooks.secrets.open(thrice.previous_secret!, endpoint.id)).toBe(second);
    expect(webhooks.secrets.open(thrice.secret, endpoint.id)).toBe(third);
    expect(JSON.stringify(thrice)).not.toContain(first.slice('whsec_'.length));
  });

  it('a replay with the same Idempotency-Key answers the endpoint without the secret, and rotates nothing', async () => {
    const { endpoint } = await create();
    const key = randomUUID();
    const first = await rotate(endpoint.id, api, { 'Idempotency-Key': key });
    const sealed = (await row(endpoint.id))!.secret;
    const again = await rotate(endpoint.id, api, { 'Idempotency-Key': key });
    expect(again.response.status).toBe(200);
    expect(again.response.headers.get('Idempotent-Replayed')).toBe('true');
    expect(again.data).toEqual({ data: first.data!.data });
    expect((await row(endpoint.id))!.secret).toBe(sealed);
  });

  it('previousSecretExpiresAt is null once the previous secret has expired', async () => {
    const { endpoint } = await create();
    await rotate(endpoint.id);
    await server.database.db
      .updateTable('webhook_endpoints')
      .set({ previous_secret_expires_at: new Date(Date.now() - 1000) })
      .where('id', '=', endpoint.id)
      .execute();
    expect((await get(endpoint.id)).data!.data.previousSecretExpiresAt).toBeNull();
  });
});

/** A delivery of a staged event to the endpoint, with `count` attempts a millisecond or less apart. */
async function stageAttempts(endpointId: string, count: number, base = new Date('2026-11-30T12:00:00Z')): Promise<string[]> {
  const db = server.database.db;
  const endpoint = (await row(endpointId))!;
  const eventId = randomUUID();
  await db
    .insertInto('events')
    .values({ org_id: endpoint.org_id, env: endpoint.env, id: eventId, type: 'client.created', created_at: base, data: '{}' })
    .execute();
  const deliveryId = randomUUID();
  await db
    .insertInto('webhook_deliveries')
    .values({
      org_id: endpoint.org_id,
      id: deliveryId,
      endpoint_id: endpointId,
      event_id: eventId,
      next_attempt_at: base,
      created_at: base,
    })
    .execute();
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const id = randomUUID();
    ids.push(id);
    // Pairs of attempts share a microsecond; neighbours differ by microseconds only.
    const micros = String(Math.floor(i / 2)).padStart(6, '0');
    await db
      .insertInto('webhook_attempts')
      .values({
        org_id: endpoint.org_id,
        id,
        delivery_id: deliveryId,
        endpoint_id: endpointId,
        event_id: eventId,
        event_type: 'client.created',
        attempt: i + 1,
        attempted_at: `2026-11-30T12:00:00.${micros}Z`,
        duration_ms: 10 + i,
        status_code: i % 3 === 0 ? null : 500,
        error: i % 3 === 0 ? 'timeout' : null,
        succeeded: false,
        next_retry_at: new Date(base.getTime() + 60_000 * (i + 1)),
      })
      .execute();
  }
  return ids;
}

describe('GET /webhook-endpoints/{id}/deliveries', () => {
  it('pages through every attempt once, newest first, with microsecond ties broken by id', async () => {
    const { endpoint } = await create();
    const { endpoint: other } = await create();
    await stageAttempts(other.id, 3);
    await stageAttempts(endpoint.id, 23);
    const expected = await server.database.db
      .selectFrom('webhook_attempts')
      .select('id')
      .where('endpoint_id', '=', endpoint.id)
      .orderBy('attempted_at', 'desc')
      .orderBy('id', 'desc')
      .execute();

    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const { data, response } = await deliveries(endpoint.id, cursor === undefined ? { limit: 5 } : { limit: 5, cursor });
      expect(response.status).toBe(200);
      seen.push(...data!.data.map((a) => a.id));
      cursor = data!.nextCursor ?? undefined;
      pages++;
    } while (cursor !== undefined && pages < 10);
    expect(pages).toBe(5);
    expect(seen).toEqual(expected.map((a) => a.id));
  });

  it('answers each attempt as the schema has it; 25 to a page by default', async () => {
    const { endpoint } = await create();
    await stageAttempts(endpoint.id, 26);
    const { data } = await deliveries(endpoint.id);
    expect(data!.data).toHaveLength(25);
    expect(data!.nextCursor).not.toBeNull();
    // Attempts 3 and 4 (a microsecond after the first two): one answered 500, one timed out.
    const byNumber = (n: number) => data!.data.find((a) => a.attempt === n);
    const common = { eventType: 'client.created', succeeded: false, attemptedAt: '2026-11-30T12:00:00.000Z' };
    expect(byNumber(3)).toMatchObject({ ...common, durationMs: 12, statusCode: 500, error: null, nextRetryAt: '2026-11-30T12:03:00.000Z' });
    expect(byNumber(4)).toMatchObject({
      ...common,
      durationMs: 13,
      statusCode: null,
      error: 'timeout',
      nextRetryAt: '2026-11-30T12:04:00.000Z',
    });
    expect(Object.keys(byNumber(3)!).sort()).toEqual([
      'attempt',
      'attemptedAt',
      'durationMs',
      'error',
      'eventId',
      'eventType',
      'id',
      'nextRetryAt',
      'statusCode',
      'succeeded',
    ]);
  });

  it('an endpoint without attempts has an empty page', async () => {
    const { endpoint } = await create();
    expect((await deliveries(endpoint.id)).data).toEqual({ data: [], nextCursor: null });
  });

  it('a cursor this API did not give out is 400 naming cursor', async () => {
    const { endpoint } = await create();
    const forged = [
      'nonsense',
      Buffer.from(JSON.stringify(['2026-02-30T00:00:00.000000Z', UNKNOWN_ID])).toString('base64url'),
      Buffer.from(JSON.stringify(['2026-11-30T12:00:00.000000Z', 'x'])).toString('base64url'),
    ];
    for (const cursor of forged) {
      const { error, response } = await deliveries(endpoint.id, { cursor });
      expect(response.status, cursor).toBe(400);
      expect(error!.error.fields).toEqual({ cursor: 'is not a cursor this API gave out; pass nextCursor exactly as received' });
    }
  });

  it('an unknown endpoint is 404', async () => {
    const { error, response } = await deliveries(UNKNOWN_ID);
    expect(response.status).toBe(404);
    expect(error!.error.code).toBe('not_found');
  });
});

describe('tenancy', () => {
  it('another organisation, and the other environment of the same one, see none of the endpoints and touch none', async () => {
    const orgName = `webhooks-tenancy-${randomUUID()}`;
    const owner = server.client((await server.mint({ orgName, plan: 'pro', env: 'test' })).token);
    const intruders = {
      'the other environment': server.client((await server.mint({ orgName, env: 'live' })).token),
      'another organisation': (await server.tenant({ plan: 'pro' })).api,
    };
    const { endpoint } = await create({}, owner);
    await stageAttempts(endpoint.id, 1);
    const stored = await row(endpoint.id);
    for (const [who, intruder] of Object.entries(intruders)) {
      // Each intruder has an endpoint of its own, so an empty list is not just an empty table.
      await create({ url: 'https://intruder.example.com/in' }, intruder);
      const answers = {
        get: await get(endpoint.id, intruder),
        update: await patch(endpoint.id, { url: 'https://evil.example.com/' }, intruder),
        rotate: await rotate(endpoint.id, intruder),
        deliveries: await deliveries(endpoint.id, {}, intruder),
        delete: await remove(endpoint.id, intruder),
      };
      for (const [name, { error, response }] of Object.entries(answers)) {
        expect(response.status, `${who}: ${name}`).toBe(404);
        expect(error!.error.code).toBe('not_found');
      }
      const listed = (await intruder.GET('/webhook-endpoints')).data!.data;
      expect(listed.map((e) => e.url)).toEqual(['https://intruder.example.com/in']);
    }
    expect(await row(endpoint.id)).toEqual(stored);
    expect((await owner.GET('/webhook-endpoints')).data!.data.map((e) => e.id)).toEqual([endpoint.id]);
  });
});

describe('at most 16 endpoints per organisation and environment', () => {
  it('the 17th is 409 webhook_endpoint_limit_reached; the other environment has its own 16; deleting one makes room', async () => {
    const orgName = `webhooks-cap-${randomUUID()}`;
    const test = server.client((await server.mint({ orgName, plan: 'pro', env: 'test' })).token);
    const made: string[] = [];
    for (let i = 0; i < 16; i++) made.push((await create({ description: `#${i}` }, test)).endpoint.id);
    const { error, response } = await test.POST('/webhook-endpoints', {
      body: { url: 'https://seventeenth.example.com', enabledEvents: ['*'] },
    });
    expect(response.status).toBe(409);
    expect(error!.error.code).toBe('webhook_endpoint_limit_reached');
    expect(error!.error.message).toContain('16');

    const live = server.client((await server.mint({ orgName, env: 'live' })).token);
    await create({}, live);

    expect((await remove(made[0]!, test)).response.status).toBe(200);
    await create({}, test);
    expect((await test.GET('/webhook-endpoints')).data!.data).toHaveLength(16);
  });

  it('creates racing for the last places: exactly as many succeed as there is room for', async () => {
    const { api: racer, token } = await server.tenant({ plan: 'pro' });
    for (let i = 0; i < 13; i++) await create({}, racer);
    const answers = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        racer.POST('/webhook-endpoints', { body: { url: `https://race-${i}.example.com/in`, enabledEvents: ['*'] } }),
      ),
    );
    expect(answers.map((a) => a.response.status).sort()).toEqual([201, 201, 201, 409, 409, 409]);
    const stored = await server.database.db.selectFrom('webhook_endpoints').select('id').where('org_id', '=', token.orgId).execute();
    expect(stored).toHaveLength(16);
  });
});
