/**
 * A client's `metadata` (Stripe's rules: 50 keys of 40 characters, values of 500, merged by PATCH,
 * a key set to "" or null removed, never searched by `q`) and `externalId` (unique per organisation
 * and environment among clients not deleted: 409 `external_id_taken` naming the client that has it,
 * on create, PATCH and restore), and the exact filters of GET /clients: `externalId`, `email`,
 * `taxNumber`, `metadata[key]=value`, with the others and with paging, tenant by tenant.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClientsApi } from '../../client/index.js';
import { startTestServer, type TestServer } from '../support/server.js';

let server: TestServer;
let api: ClientsApi;

beforeAll(async () => {
  server = await startTestServer();
  api = (await server.tenant({ plan: 'studio' })).api;
});
afterAll(() => server?.close());

async function create(body: Record<string, unknown>, on: ClientsApi = api, headers: Record<string, string> = {}) {
  return on.POST('/clients', { body: { name: 'Globex Corporation', ...body } as never, headers });
}

async function created(body: Record<string, unknown>, on: ClientsApi = api) {
  const { data, response, error } = await create(body, on);
  expect(response.status, JSON.stringify(error)).toBe(201);
  return data!.data;
}

const patch = (id: string, body: unknown, on: ClientsApi = api, headers: Record<string, string> = {}) =>
  on.PATCH('/clients/{id}', { params: { path: { id } }, body: body as never, headers });

function expectError(result: { response: Response; error?: unknown }, status: number, code: string) {
  expect(result.response.status, JSON.stringify(result.error)).toBe(status);
  const error = (result.error as { error: { code: string; fields?: Record<string, string>; existingId?: string } }).error;
  expect(error.code).toBe(code);
  return error;
}

/** GET /clients with `query` as written in a URL (deepObject brackets included), every page; the ids. */
async function listed(query: string, on: ClientsApi = api): Promise<{ status: number; ids: string[]; body: unknown }> {
  const ids: string[] = [];
  let cursor: string | undefined;
  for (;;) {
    const search = `${query}${query ? '&' : ''}limit=2${cursor ? `&cursor=${cursor}` : ''}`;
    const { data, error, response } = await on.GET('/clients', {
      params: { query: {} },
      querySerializer: () => search,
    });
    if (response.status !== 200) return { status: response.status, ids, body: error };
    ids.push(...data!.data.map((c) => c.id));
    cursor = data!.nextCursor ?? undefined;
    if (!cursor) return { status: 200, ids, body: data };
  }
}

describe('metadata', () => {
  it('is {} by default; create keeps its keys, trims its values and leaves out the empty ones', async () => {
    expect((await created({})).metadata).toEqual({});
    const client = await created({ metadata: { crmId: ' 48213 ', empty: '', none: null } });
    expect(client.metadata).toEqual({ crmId: '48213' });
  });

  it('PATCH merges: a key with a value is set, "" or null removes it, the others stay; updatedAt, ETag and an event only on a change', async () => {
    const client = await created({ metadata: { a: '1', b: '2', c: '3' } });
    const first = await patch(client.id, { metadata: { a: 'one', b: '', c: null, d: '4' } });
    expect(first.response.status).toBe(200);
    expect(first.data!.data.metadata).toEqual({ a: 'one', d: '4' });
    expect(first.data!.data.updatedAt > client.updatedAt).toBe(true);
    const etag = first.response.headers.get('ETag');
    const same = await patch(client.id, { metadata: { a: 'one', gone: null } });
    expect(same.data!.data).toEqual(first.data!.data);
    expect(same.response.headers.get('ETag')).toBe(etag);
    // Other fields leave metadata alone.
    expect((await patch(client.id, { notes: 'x' })).data!.data.metadata).toEqual({ a: 'one', d: '4' });
  });

  it.each([
    ['51 keys', Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, 'v']))],
    ['a key of 41 characters', { ['k'.repeat(41)]: 'v' }],
    ['an empty key', { '': 'v' }],
    ['a value of 501 characters', { k: 'v'.repeat(501) }],
    ['a number as a value', { k: 1 }],
    ['a nested object', { k: { deep: 'v' } }],
    ['an array', ['v']],
  ])('%s is 400 naming metadata', async (_label, metadata) => {
    const error = expectError(await create({ metadata }), 400, 'validation_failed');
    expect(Object.keys(error.fields!)).toEqual(['metadata']);
  });

  it('takes 50 keys of 40 characters with values of 500; a PATCH that would leave 51 is 400 naming metadata', async () => {
    const full = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`${i}`.padStart(40, 'k'), 'v'.repeat(500)]));
    const client = await created({ metadata: full });
    expect(client.metadata).toEqual(full);
    const error = expectError(await patch(client.id, { metadata: { extra: 'x' } }), 400, 'validation_failed');
    expect(Object.keys(error.fields!)).toEqual(['metadata']);
    expect((await patch(client.id, { metadata: { [`${0}`.padStart(40, 'k')]: null, extra: 'x' } })).response.status).toBe(200);
  });

  it('is never searched by q', async () => {
    const marker = `zq${randomUUID().slice(0, 8)}`;
    await created({ name: 'Plain', metadata: { note: marker } });
    expect((await listed(`q=${marker}`)).ids).toEqual([]);
  });
});

describe('externalId', () => {
  it('is unique among active clients: a duplicate create is 409 external_id_taken naming the existing client, stored with its key', async () => {
    const externalId = `crm-${randomUUID()}`;
    const first = await created({ externalId: ` ${externalId} ` });
    expect(first.externalId).toBe(externalId);
    const key = randomUUID();
    const refused = await create({ externalId }, api, { 'Idempotency-Key': key });
    const error = expectError(refused, 409, 'external_id_taken');
    expect(error.existingId).toBe(first.id);
    expect(error.fields).toEqual({ externalId: `is the externalId of client ${first.id}` });
    const replay = await create({ externalId }, api, { 'Idempotency-Key': key });
    expect(replay.response.headers.get('Idempotent-Replayed')).toBe('true');
    expect(expectError(replay, 409, 'external_id_taken').existingId).toBe(first.id);
    expect((await listed(`externalId=${externalId}&deleted=include`)).ids).toEqual([first.id]);
  });

  it('a PATCH to a taken externalId is 409 and changes nothing; its own externalId again is fine; null frees it', async () => {
    const externalId = `crm-${randomUUID()}`;
    const holder = await created({ externalId });
    const other = await created({ externalId: `${externalId}-other`, notes: 'before' });
    const error = expectError(await patch(other.id, { externalId, notes: 'after' }), 409, 'external_id_taken');
    expect(error.existingId).toBe(holder.id);
    const read = await api.GET('/clients/{id}', { params: { path: { id: other.id } } });
    expect(read.data!.data).toEqual(other);
    expect((await patch(holder.id, { externalId })).response.status).toBe(200);
    expect((await patch(holder.id, { externalId: null })).data!.data.externalId).toBeNull();
    expect((await patch(other.id, { externalId })).data!.data.externalId).toBe(externalId);
  });

  it('a deleted client does not hold it; restoring it once another took it is 409 naming that one', async () => {
    const externalId = `crm-${randomUUID()}`;
    const old = await created({ externalId });
    expect((await api.DELETE('/clients/{id}', { params: { path: { id: old.id } } })).response.status).toBe(200);
    const taker = await created({ externalId });
    const refused = await api.POST('/clients/{id}/restore', { params: { path: { id: old.id } } });
    expect(expectError(refused, 409, 'external_id_taken').existingId).toBe(taker.id);
    expect((await api.GET('/clients/{id}', { params: { path: { id: old.id } } })).data!.data.deletedAt).not.toBeNull();
    // Freed, the restore goes through, keeping its externalId.
    expect((await patch(taker.id, { externalId: null })).response.status).toBe(200);
    const restored = await api.POST('/clients/{id}/restore', { params: { path: { id: old.id } } });
    expect(restored.response.status).toBe(200);
    expect(restored.data!.data.externalId).toBe(externalId);
  });

  it('concurrent creates with one externalId: exactly one is created, the others are 409 naming it', async () => {
    const externalId = `crm-${randomUUID()}`;
    const answers = await Promise.all(Array.from({ length: 5 }, () => create({ externalId })));
    const made = answers.filter((a) => a.response.status === 201);
    expect(made).toHaveLength(1);
    for (const refused of answers.filter((a) => a.response.status !== 201)) {
      expect(expectError(refused, 409, 'external_id_taken').existingId).toBe(made[0]!.data!.data.id);
    }
  });

  it('is per organisation and environment', async () => {
    const externalId = `crm-${randomUUID()}`;
    const mine = await created({ externalId });
    const other = await server.tenant({ plan: 'studio' });
    const theirs = await created({ externalId }, other.api);
    const live = server.client((await server.mint({ orgName: `live-${randomUUID()}`, env: 'live' })).token);
    await created({ externalId }, live);
    expect((await listed(`externalId=${externalId}`)).ids).toEqual([mine.id]);
    expect((await listed(`externalId=${externalId}`, other.api)).ids).toEqual([theirs.id]);
  });
});

describe('GET /clients exact filters', () => {
  it('externalId, email, taxNumber and metadata[key]=value, combined with each other, with q and deleted, across pages', async () => {
    const tenant = await server.tenant({ plan: 'studio' });
    const on = tenant.api;
    const a = await created(
      { name: 'Alpha', email: 'ap@alpha.test', taxNumber: 'GB1', metadata: { segment: 'enterprise', tier: '1' } },
      on,
    );
    const b = await created({ name: 'Beta', email: 'ap@alpha.test', taxNumber: 'GB2', metadata: { segment: 'enterprise', tier: '2' } }, on);
    const c = await created(
      { name: 'Gamma', email: 'AP@alpha.test', taxNumber: 'GB1', metadata: { segment: 'smb' }, externalId: 'x-1' },
      on,
    );
    const d = await created({ name: 'Delta', email: 'ap@alpha.test', metadata: { segment: 'enterprise', tier: '1' } }, on);
    expect((await on.DELETE('/clients/{id}', { params: { path: { id: d.id } } })).response.status).toBe(200);

    expect((await listed('email=ap%40alpha.test', on)).ids).toEqual([b.id, a.id]);
    // Reserved characters may come unencoded, as an address or an id is typed.
    expect((await listed('email=ap@alpha.test', on)).ids).toEqual([b.id, a.id]);
    expect((await listed('externalId=x-1&taxNumber=GB1', on)).ids).toEqual([c.id]);
    expect((await listed('email=ap%40alpha.test&deleted=include', on)).ids).toEqual([d.id, b.id, a.id]);
    expect((await listed('taxNumber=GB1', on)).ids).toEqual([c.id, a.id]);
    expect((await listed('externalId=x-1', on)).ids).toEqual([c.id]);
    expect((await listed('metadata[segment]=enterprise', on)).ids).toEqual([b.id, a.id]);
    expect((await listed('metadata%5Bsegment%5D=enterprise&metadata%5Btier%5D=1', on)).ids).toEqual([a.id]);
    expect((await listed('metadata[segment]=enterprise&metadata[tier]=1&deleted=only', on)).ids).toEqual([d.id]);
    expect((await listed('metadata[segment]=enterprise&taxNumber=GB2&q=bet', on)).ids).toEqual([b.id]);
    expect((await listed('metadata[segment]=Enterprise', on)).ids).toEqual([]);
    expect((await listed('metadata[nope]=enterprise', on)).ids).toEqual([]);
    // Another tenant's clients match nothing here.
    expect((await listed('taxNumber=GB1')).ids).not.toContain(a.id);
  });

  it.each([
    ['a metadata key of 41 characters', `metadata[${'k'.repeat(41)}]=v`, 'metadata'],
    ['a metadata value of 501 characters', `metadata[k]=${'v'.repeat(501)}`, 'metadata'],
    ['an empty externalId', 'externalId=', 'externalId'],
    ['an empty taxNumber', 'taxNumber=', 'taxNumber'],
    ['an unknown parameter beside metadata', 'metadata[a]=b&page=2', 'page'],
    ['metadata with no key and no value', 'metadata=', 'metadata'],
    ['metadata with no key', 'metadata=x', 'metadata'],
  ])('%s is 400 naming the parameter', async (_label, query, name) => {
    const { status, body } = await listed(query);
    expect(status).toBe(400);
    const error = (body as { error: { code: string; fields: Record<string, string> } }).error;
    expect(error.code).toBe('validation_failed');
    expect(Object.keys(error.fields)).toEqual([name]);
  });
});
