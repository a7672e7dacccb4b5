/**
 * GET, PATCH, DELETE /clients/{id} and POST /clients/{id}/restore: reads, partial updates with the
 * create rules, ETags and If-Match, soft deletion, restore under the plan's limit.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClientResource, ClientsApi } from '../../client/index.js';
import { readJson } from '../support/json.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { requestBodyAllowed } from '../support/spec-check.js';

let server: TestServer;
let api: ClientsApi;
let token: string;

beforeAll(async () => {
  server = await startTestServer();
  const tenant = await server.tenant({ plan: 'studio' });
  api = tenant.api;
  token = tenant.token.token;
});
afterAll(() => server?.close());

const UNKNOWN_ID = '497f6eca-6276-4993-bfeb-53cbbbba6f08';
const pause = (ms = 3) => new Promise((resolve) => setTimeout(resolve, ms));

async function create(body: Record<string, unknown> = {}, on: ClientsApi = api) {
  const { data, response } = await on.POST('/clients', { body: { name: 'Globex Corporation', ...body } as never });
  expect(response.status).toBe(201);
  return { client: data!.data, etag: response.headers.get('ETag')! };
}

const get = (id: string, on: ClientsApi = api) => on.GET('/clients/{id}', { params: { path: { id } } });

function patch(id: string, body: unknown, ifMatch?: string, on: ClientsApi = api) {
  return on.PATCH('/clients/{id}', {
    params: { path: { id }, header: ifMatch === undefined ? undefined : { 'If-Match': ifMatch } },
    body: body as never,
  });
}

const remove = (id: string, ifMatch?: string, on: ClientsApi = api) =>
  on.DELETE('/clients/{id}', { params: { path: { id }, header: ifMatch === undefined ? undefined : { 'If-Match': ifMatch } } });

const restore = (id: string, ifMatch?: string, on: ClientsApi = api) =>
  on.POST('/clients/{id}/restore', { params: { path: { id }, header: ifMatch === undefined ? undefined : { 'If-Match': ifMatch } } });

async function row(id: string) {
  return server.database.db.selectFrom('clients').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
}

describe('GET /clients/{id}', () => {
  it('returns the client as created, with the same strong ETag', async () => {
    const { client, etag } = await create({ defaultRate: 120.5, currency: 'eur' });
    expect(etag).toMatch(/^"[A-Za-z0-9_-]+"$/);
    const { data, response } = await get(client.id);
    expect(response.status).toBe(200);
    expect(data!.data).toEqual(client);
    expect(response.headers.get('ETag')).toBe(etag);
  });

  it('finds an id only as `id` writes it: in upper case it names nothing (404)', async () => {
    const { client } = await create();
    const { error, response } = await get(client.id.toUpperCase());
    expect(response.status).toBe(404);
    expect(error!.error.code).toBe('not_found');
  });

  it.each([
    ['an unknown id', UNKNOWN_ID],
    ['an id that is not a UUID', 'nope'],
    ['a UUID with a bad character', '497f6eca-6276-4993-bfeb-53cbbbba6f0g'],
    ['an SQL fragment', "' or 1=1 --"],
  ])('%s is 404 not_found', async (_label, id) => {
    const { error, response } = await get(id);
    expect(response.status).toBe(404);
    expect(error!.error.code).toBe('not_found');
  });

  it('an unknown query parameter is a 400 naming it', async () => {
    const { client } = await create();
    const response = await fetch(`${server.baseUrl}/clients/${client.id}?expand=org`, { headers: { Authorization: `Bearer ${token}` } });
    expect(response.status).toBe(400);
    expect(Object.keys((await readJson(response)).error.fields!)).toEqual(['expand']);
  });

  it('a path with broken percent-encoding is 404 not_found', async () => {
    const response = await fetch(`${server.baseUrl}/clients/%E0%A4%A`, { headers: { Authorization: `Bearer ${token}` } });
    expect(response.status).toBe(404);
    expect((await readJson(response)).error.code).toBe('not_found');
  });
});

describe('PATCH /clients/{id}', () => {
  it('changes only the fields sent, with the create coercions; updatedAt moves, createdAt stays', async () => {
    const { client, etag } = await create({ contactName: 'Hank', email: 'hank@globex.test', defaultRate: '100' });
    await pause();
    const { data, response } = await patch(client.id, {
      name: '  Globex Inc.  ',
      currency: 'gbp',
      billingCountry: 'gb',
      defaultRate: 0.1,
      defaultTaxRate: '20.000',
      website: ' https://globex.test ',
    });
    expect(response.status).toBe(200);
    expect(data!.data).toEqual({
      ...client,
      name: 'Globex Inc.',
      currency: 'GBP',
      billingCountry: 'GB',
      defaultRate: '0.10',
      defaultTaxRate: '20',
      website: 'https://globex.test',
      updatedAt: data!.data.updatedAt,
    });
    expect(data!.data.updatedAt > client.updatedAt).toBe(true);
    expect(response.headers.get('ETag')).not.toBe(etag);
    const read = await get(client.id);
    expect(read.data!.data).toEqual(data!.data);
    expect(read.response.headers.get('ETag')).toBe(response.headers.get('ETag'));
  });

  it('null, an empty string or a blank one clears an optional field', async () => {
    const { client } = await create({ contactName: 'Hank', email: 'h@globex.test', defaultRate: '5', currency: 'USD', notes: 'n' });
    const { data } = await patch(client.id, { contactName: null, email: '', defaultRate: '  ', currency: null, notes: '\t' });
    expect(data!.data).toMatchObject({ contactName: null, email: null, defaultRate: null, currency: null, notes: null });
    expect(await row(client.id)).toMatchObject({ contact_name: null, email: null, default_rate: null, currency: null, notes: null });
  });

  it('requirePoNumber null is false; true needs studio (402 plan_required) and changes nothing', async () => {
    const { client } = await create({ requirePoNumber: true });
    expect((await patch(client.id, { requirePoNumber: null })).data!.data.requirePoNumber).toBe(false);
    const free = await server.tenant({ plan: 'free' });
    const { client: small } = await create({}, free.api);
    const { error, response } = await patch(small.id, { requirePoNumber: true, notes: 'x' }, undefined, free.api);
    expect(response.status).toBe(402);
    expect(error!.error).toMatchObject({ code: 'plan_required', requiredPlan: 'studio', feature: 'clients.requirePoNumber' });
    expect((await row(small.id)).notes).toBeNull();
  });

  it.each([[null], [''], ['   ']])('name %j is a 400 on name: it cannot be cleared', async (name) => {
    const { client } = await create();
    const { error, response } = await patch(client.id, { name });
    expect(response.status).toBe(400);
    expect(error!.error.fields).toEqual({ name: 'cannot be cleared; it must be text of 1 to 200 characters' });
    expect((await row(client.id)).name).toBe('Globex Corporation');
  });

  const refused: [string, Record<string, unknown>, string[]][] = [
    ['money with too many decimals', { defaultRate: '1.23456' }, ['defaultRate']],
    ['money in exponent notation', { defaultRate: '1e3' }, ['defaultRate']],
    ['negative money', { defaultRate: -1 }, ['defaultRate']],
    ['money of 10^12', { defaultRate: 1e12 }, ['defaultRate']],
    ['a tax rate over 100', { defaultTaxRate: '100.5' }, ['defaultTaxRate']],
    ['201 characters of contact name', { contactName: 'x'.repeat(201) }, ['contactName']],
    ['201 characters of name', { name: 'x'.repeat(201) }, ['name']],
    ['a bad e-mail', { email: 'not-an-email' }, ['email']],
    ['an ftp URL', { website: 'ftp://globex.test' }, ['website']],
    ['a made-up currency', { currency: 'XYZ' }, ['currency']],
    ['a string for requirePoNumber', { requirePoNumber: 'yes' }, ['requirePoNumber']],
    ['an unknown field', { nmae: 'typo' }, ['nmae']],
    ['orgId', { orgId: '25b2c2d5-a7fc-47d0-89e4-8709a1560bfa' }, ['orgId']],
    ['deletedAt', { deletedAt: null }, ['deletedAt']],
    ['several at once', { name: null, email: 'x', extra: 1 }, ['email', 'extra', 'name']],
  ];
  it.each(refused)('%s is a 400 naming the field, and changes nothing', async (_label, body, fields) => {
    const { client } = await create();
    const before = await row(client.id);
    const { error, response } = await patch(client.id, body);
    expect(response.status).toBe(400);
    expect(error!.error.code).toBe('validation_failed');
    expect(Object.keys(error!.error.fields!).sort()).toEqual(fields);
    expect(await row(client.id)).toEqual(before);
  });

  it('the spec alone accepts and refuses the same bodies as the server', async () => {
    const accepted: Record<string, unknown>[] = [
      {},
      { name: ' x ' },
      { contactName: null, email: '', phone: '  ', website: 'http://a.test', currency: 'eur', billingCountry: 'FR' },
      { defaultRate: 0, defaultTaxRate: 100, requirePoNumber: null, notes: 'n'.repeat(10000) },
      { defaultRate: '999999999999.9999', defaultTaxRate: '', billingEmail: null, requirePoNumber: false },
    ];
    const { client } = await create();
    for (const body of [...accepted, ...refused.map(([, b]) => b)]) {
      const { response } = await patch(client.id, body);
      expect(response.status === 400, JSON.stringify(body)).toBe(!requestBodyAllowed('patch', '/clients/{id}', body));
    }
  });

  it('reads a JSON number as the decimal written', async () => {
    const { client } = await create();
    const response = await fetch(`${server.baseUrl}/clients/${client.id}`, {
      method: 'PATCH',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: '{"defaultRate":100000000000.0001,"defaultTaxRate":33.3333}',
    });
    expect(response.status).toBe(200);
    expect((await readJson(response)).data).toMatchObject({ defaultRate: '100000000000.0001', defaultTaxRate: '33.3333' });
  });

  it.each([
    ['an empty object', {}],
    ['the values it already has', { name: 'Globex Corporation', defaultRate: '120.5000', currency: 'usd', email: null }],
  ])('%s changes nothing: same updatedAt, same ETag', async (_label, body) => {
    const { client, etag } = await create({ defaultRate: '120.50', currency: 'USD' });
    await pause();
    const { data, response } = await patch(client.id, body);
    expect(response.status).toBe(200);
    expect(data!.data).toEqual(client);
    expect(response.headers.get('ETag')).toBe(etag);
  });

  it('a body that is not a JSON object is a 400 naming body', async () => {
    const { client } = await create();
    for (const text of ['', '[]', 'null', '{bad']) {
      const response = await fetch(`${server.baseUrl}/clients/${client.id}`, {
        method: 'PATCH',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: text,
      });
      expect(response.status, text).toBe(400);
      expect(Object.keys((await readJson(response)).error.fields!)).toEqual(['body']);
    }
  });

  it('takes a well-formed Idempotency-Key and refuses a malformed one by name', async () => {
    const { client } = await create();
    const key = 'a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d';
    const ok = await api.PATCH('/clients/{id}', {
      params: { path: { id: client.id }, header: { 'Idempotency-Key': key } },
      body: { notes: 'k' },
    });
    expect(ok.response.status).toBe(200);
    const bad = await api.PATCH('/clients/{id}', {
      params: { path: { id: client.id }, header: { 'Idempotency-Key': 'string' } },
      body: { notes: 'k' },
    });
    expect(bad.response.status).toBe(400);
    expect(bad.error!.error.fields).toEqual({ 'Idempotency-Key': 'must be a UUID or a ULID' });
  });
});

describe('If-Match', () => {
  it('a stale ETag is 412 precondition_failed and changes nothing; the current one goes through', async () => {
    const { client, etag: first } = await create();
    const second = (await patch(client.id, { notes: 'edited by A' }, first)).response.headers.get('ETag')!;
    const before = await row(client.id);
    const { error, response } = await patch(client.id, { notes: 'edited by B' }, first);
    expect(response.status).toBe(412);
    expect(error!.error.code).toBe('precondition_failed');
    expect(await row(client.id)).toEqual(before);
    expect((await patch(client.id, { notes: 'B, merged' }, second)).response.status).toBe(200);
  });

  it.each([
    ['*', () => '*', 200],
    ['a list holding the current tag', (current: string) => `"stale", ${current}`, 200],
    ['the current tag, weak (never matches strongly)', (current: string) => `W/${current}`, 412],
    ['another tag', () => '"someone-else"', 412],
  ])('%s', async (_label, header, status) => {
    const { client, etag } = await create();
    expect((await patch(client.id, { notes: 'x' }, header(etag))).response.status).toBe(status);
  });

  it.each([['not-quoted'], ['"unterminated'], ['W/'], ['"a" "b"']])('a malformed If-Match %j is a 400 naming the header', async (value) => {
    const { client } = await create();
    const { error, response } = await patch(client.id, { notes: 'x' }, value);
    expect(response.status).toBe(400);
    expect(Object.keys(error!.error.fields!)).toEqual(['If-Match']);
  });

  it('is honoured by DELETE and restore too', async () => {
    const { client, etag } = await create();
    const changed = (await patch(client.id, { notes: 'x' })).response.headers.get('ETag')!;
    expect((await remove(client.id, etag)).response.status).toBe(412);
    expect((await row(client.id)).deleted_at).toBeNull();
    const deleted = await remove(client.id, changed);
    expect(deleted.response.status).toBe(200);
    expect((await restore(client.id, changed)).response.status).toBe(412);
    expect((await row(client.id)).deleted_at).not.toBeNull();
    expect((await restore(client.id, deleted.response.headers.get('ETag')!)).response.status).toBe(200);
  });

  it('two editors with the same ETag at once: one wins, the other gets 412', async () => {
    const { client, etag } = await create();
    const answers = await Promise.all(['A', 'B', 'C'].map((who) => patch(client.id, { notes: `by ${who}` }, etag)));
    expect(answers.map((a) => a.response.status).sort()).toEqual([200, 412, 412]);
    const winner = answers.find((a) => a.response.status === 200)!;
    expect((await row(client.id)).notes).toBe(winner.data!.data.notes);
  });

  it('checks run in order: 404, then 412, then 409', async () => {
    expect((await patch(UNKNOWN_ID, { notes: 'x' }, '"stale"')).response.status).toBe(404);
    const { client } = await create();
    const deleted = await remove(client.id);
    expect((await patch(client.id, { notes: 'x' }, '"stale"')).response.status).toBe(412);
    const conflict = await patch(client.id, { notes: 'x' }, deleted.response.headers.get('ETag')!);
    expect(conflict.response.status).toBe(409);
    expect(conflict.error!.error.code).toBe('client_deleted');
  });
});

describe('DELETE and restore', () => {
  it('a deleted client is read with deletedAt set, hidden from the list, 409 on PATCH, and back after restore', async () => {
    const { client } = await create();
    await pause();
    const deleted = await remove(client.id);
    expect(deleted.response.status).toBe(200);
    const gone = deleted.data!.data;
    expect(gone.deletedAt).toEqual(expect.any(String));
    expect(gone.updatedAt).toBe(gone.deletedAt);
    expect(gone.updatedAt > client.updatedAt).toBe(true);

    const read = await get(client.id);
    expect(read.data!.data).toEqual(gone);
    expect(read.response.headers.get('ETag')).toBe(deleted.response.headers.get('ETag'));
    const listed = async () => (await api.GET('/clients', { params: { query: { limit: 100 } } })).data!.data.map((c) => c.id);
    expect(await listed()).not.toContain(client.id);

    const conflict = await patch(client.id, { notes: 'x' });
    expect(conflict.response.status).toBe(409);
    expect(conflict.error!.error.code).toBe('client_deleted');
    expect((await row(client.id)).notes).toBeNull();

    await pause();
    const restored = await restore(client.id);
    expect(restored.response.status).toBe(200);
    expect(restored.data!.data.deletedAt).toBeNull();
    expect(restored.data!.data.updatedAt > gone.updatedAt).toBe(true);
    expect(await listed()).toContain(client.id);
    expect((await patch(client.id, { notes: 'back' })).response.status).toBe(200);
  });

  it('DELETE twice leaves the first deletedAt, and changes nothing', async () => {
    const { client } = await create();
    const first = await remove(client.id);
    const before = await row(client.id);
    await pause();
    const second = await remove(client.id);
    expect(second.response.status).toBe(200);
    expect(second.data!.data).toEqual(first.data!.data);
    expect(second.response.headers.get('ETag')).toBe(first.response.headers.get('ETag'));
    expect(await row(client.id)).toEqual(before);
  });

  it('restoring a client that is not deleted answers 200 and changes nothing', async () => {
    const { client, etag } = await create();
    const before = await row(client.id);
    const { data, response } = await restore(client.id);
    expect(response.status).toBe(200);
    expect(data!.data).toEqual(client);
    expect(response.headers.get('ETag')).toBe(etag);
    expect(await row(client.id)).toEqual(before);
  });

  it.each([
    ['DELETE', (id: string) => remove(id)],
    ['restore', (id: string) => restore(id)],
  ])('%s of an unknown or malformed id is 404', async (_label, call) => {
    for (const id of [UNKNOWN_ID, 'nope']) {
      const { error, response } = await call(id);
      expect(response.status).toBe(404);
      expect(error!.error.code).toBe('not_found');
    }
  });

  it('a body sent to DELETE or restore is refused, naming body, and nothing changes', async () => {
    const { client } = await create();
    for (const [method, path] of [
      ['DELETE', ''],
      ['POST', '/restore'],
    ] as const) {
      // Straight to the server: Prism refuses such a body itself, with an answer of its own.
      const response = await fetch(`${server.serverUrl}/clients/${client.id}${path}`, {
        method,
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'text/plain' },
        body: 'not dropped in silence',
      });
      const body = await readJson(response);
      expect(response.status, method).toBe(400);
      expect(body.error.code).toBe('validation_failed');
      expect(Object.keys(body.error.fields!)).toEqual(['body']);
    }
    const { data } = await api.GET('/clients/{id}', { params: { path: { id: client.id } } });
    expect(data!.data.deletedAt).toBeNull();
  });

  // The validator reads a trailing slash on a POST as the documented path and refuses the body
  // (which the path that is not an operation never parsed) with 400; no handler runs.
  it.each([
    ['GET', '/CLIENTS', 404, 'not_found'],
    ['GET', '/Clients', 404, 'not_found'],
    ['GET', '/clients/', 404, 'not_found'],
    ['POST', '/clients/', 400, 'validation_failed'],
    ['GET', '/TOKENS', 404, 'not_found'],
    ['GET', '/healthz/', 404, 'not_found'],
  ])('%s %s is not an operation: %i, never reached without its checks', async (method, path, status, code) => {
    for (const authorization of [undefined, `Bearer ${token}`]) {
      const headers: Record<string, string> = { 'Content-Type': 'application/json' };
      if (authorization) headers.Authorization = authorization;
      const response = await fetch(`${server.serverUrl}${path}`, {
        method,
        headers,
        ...(method === 'POST' && { body: '{"name":"Never made"}' }),
      });
      expect(response.status).toBe(status);
      expect((await readJson(response)).error.code).toBe(code);
    }
    const made = await server.database.db.selectFrom('clients').select('id').where('name', '=', 'Never made').execute();
    expect(made).toHaveLength(0);
  });
});

describe('restore and the plan limit', () => {
  async function fillFree() {
    const tenant = await server.tenant({ plan: 'free' });
    const clients: ClientResource[] = [];
    for (let i = 0; i < 3; i++) clients.push((await create({ name: `Free ${i}` }, tenant.api)).client);
    return { ...tenant, clients };
  }

  it('restoring past the free plan limit is 402 plan_limit_reached, and the client stays deleted', async () => {
    const { api: free, clients } = await fillFree();
    expect((await remove(clients[0]!.id, undefined, free)).response.status).toBe(200);
    // Deleted clients do not count: the slot is free again.
    await create({ name: 'Replacement' }, free);
    const { error, response } = await restore(clients[0]!.id, undefined, free);
    expect(response.status).toBe(402);
    expect(error!.error).toMatchObject({ code: 'plan_limit_reached', requiredPlan: 'pro', feature: 'clients.max' });
    expect((await row(clients[0]!.id)).deleted_at).not.toBeNull();
  });

  it('within the limit it goes through', async () => {
    const { api: free, clients } = await fillFree();
    await remove(clients[0]!.id, undefined, free);
    expect((await restore(clients[0]!.id, undefined, free)).response.status).toBe(200);
  });

  it('two restores racing for the last slot: one 200, one 402, never over the limit', async () => {
    const { api: free, clients, token: t } = await fillFree();
    await remove(clients[0]!.id, undefined, free);
    await remove(clients[1]!.id, undefined, free);
    await create({ name: 'Third' }, free);
    const answers = await Promise.all([clients[0]!, clients[1]!].map((c) => restore(c.id, undefined, free)));
    expect(answers.map((a) => a.response.status).sort()).toEqual([200, 402]);
    const active = await server.database.db
      .selectFrom('clients')
      .select('id')
      .where('org_id', '=', t.orgId)
      .where('deleted_at', 'is', null)
      .execute();
    expect(active).toHaveLength(3);
  });
});
