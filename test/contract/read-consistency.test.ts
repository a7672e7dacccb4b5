/**
 * `Read-Consistency`, as the contract states it without a replica (the embedded database, or no
 * DATABASE_REPLICA_URL): accepted on the lists that declare it, answered `strong`, a bad value
 * refused naming the header. And which operations hand the caller's consistency on at all: only
 * the lists and the feed; reads by id and writes never ask for a replica. The same on a real
 * streaming replica: test/integration/read-replica.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClientsApi } from '../../client/index.js';
import type { ReadConsistency, Reads } from '../../server/db/reads.js';
import { createTestDatabase } from '../support/database.js';
import { startTestServer, type TestServer } from '../support/server.js';

describe('without a replica', () => {
  let server: TestServer;
  let api: ClientsApi;
  beforeAll(async () => {
    server = await startTestServer();
    api = (await server.tenant()).api;
    await api.POST('/clients', { body: { name: 'Primary Ltd' } });
  });
  afterAll(() => server?.close());

  it('answers every list and the feed from the primary, saying so, whatever the caller accepts', async () => {
    for (const accepted of [undefined, 'strong', 'eventual'] as const) {
      const headers = accepted ? { 'Read-Consistency': accepted } : {};
      const list = await api.GET('/clients', { params: { header: headers } });
      expect(list.response.status).toBe(200);
      expect(list.response.headers.get('Read-Consistency'), String(accepted)).toBe('strong');
      expect(list.data!.data.map((client) => client.name)).toEqual(['Primary Ltd']);
      const search = await api.GET('/clients', { params: { query: { q: 'primary' }, header: headers } });
      expect(search.response.headers.get('Read-Consistency')).toBe('strong');
      expect(search.data!.data).toHaveLength(1);
      const feed = await api.GET('/events', { params: { header: headers } });
      expect(feed.response.status).toBe(200);
      expect(feed.response.headers.get('Read-Consistency'), String(accepted)).toBe('strong');
    }
  });

  it('refuses any other value with 400 naming the header', async () => {
    for (const path of ['/clients', '/events'] as const) {
      for (const value of ['Eventual', 'stale', 'bounded', '']) {
        const { error, response } = await api.GET(path, { params: { header: { 'Read-Consistency': value as never } } });
        expect(response.status, `${path} ${JSON.stringify(value)}`).toBe(400);
        expect(error!.error.code).toBe('validation_failed');
        expect(error!.error.fields).toEqual({ 'Read-Consistency': 'must be strong or eventual' });
      }
    }
  });
});

describe('which operations may read a replica', () => {
  let server: TestServer;
  let api: ClientsApi;
  let orgId: string;
  /** The consistency of every read handed to `reads`; each runs on the one database all the same. */
  const asked: ReadConsistency[] = [];
  beforeAll(async () => {
    const database = await createTestDatabase();
    const reads: Reads = {
      read: async (consistency, read) => {
        asked.push(consistency);
        return { value: await read(database.db), consistency };
      },
    };
    server = await startTestServer({ reads }, { database });
    const tenant = await server.tenant({ plan: 'studio' });
    api = tenant.api;
    orgId = tenant.token.orgId;
  });
  afterAll(async () => {
    await server?.close();
    await server?.database.close();
  });

  it('lists and the feed pass on what the caller accepts; the answer says what it got', async () => {
    asked.length = 0;
    const eventual = { header: { 'Read-Consistency': 'eventual' as const } };
    const list = await api.GET('/clients', { params: eventual });
    expect(list.response.headers.get('Read-Consistency')).toBe('eventual');
    const feed = await api.GET('/events', { params: eventual });
    expect(feed.response.headers.get('Read-Consistency')).toBe('eventual');
    const strong = await api.GET('/clients');
    expect(strong.response.headers.get('Read-Consistency')).toBe('strong');
    expect(asked).toEqual(['eventual', 'eventual', 'strong']);
  });

  it('a read by id and every write never ask for a replica, whatever the caller sent', async () => {
    asked.length = 0;
    const header = { 'Read-Consistency': 'eventual' };
    const created = await api.POST('/clients', { body: { name: 'Own Write Ltd' }, headers: header });
    expect(created.response.status).toBe(201);
    const id = created.data!.data.id;
    const read = await api.GET('/clients/{id}', { params: { path: { id } }, headers: header });
    expect(read.response.status).toBe(200);
    expect(read.response.headers.get('Read-Consistency')).toBeNull();
    expect((await api.PATCH('/clients/{id}', { params: { path: { id } }, body: { notes: 'x' }, headers: header })).response.status).toBe(
      200,
    );
    // From the table: the feed may wait on another test's transaction on a shared server.
    const event = await server.database.db.selectFrom('events').select('id').where('org_id', '=', orgId).executeTakeFirstOrThrow();
    expect((await api.GET('/events/{id}', { params: { path: { id: event.id } }, headers: header })).response.status).toBe(200);
    expect((await api.DELETE('/clients/{id}', { params: { path: { id } }, headers: header })).response.status).toBe(200);
    expect(asked).toEqual([]);
  });
});
