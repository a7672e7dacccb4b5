/** Idempotency-Key as docs/behaviour.md ("Idempotency") and the spec promise it, through the typed client and raw requests. */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KEY_LIFETIME_MS, purgeExpiredKeys } from '../../server/idempotency/idempotency.js';
import * as idempotencyQueries from '../../server/idempotency/idempotency.queries.js';
import { usingPostgres } from '../support/database.js';
import { readJson } from '../support/json.js';
import { startTestServer, storeFailingFirstSave, type TestServer } from '../support/server.js';

let now = new Date('2026-11-27T12:00:00Z');
let server: TestServer;

beforeAll(async () => {
  // Ten requests of one organisation at once (concurrency, below): no concurrency limit.
  server = await startTestServer({ clock: () => now, concurrencyLimit: false });
});
afterAll(() => server?.close());

const db = () => server.database.db;

async function clientCount(orgId: string): Promise<number> {
  return (await db().selectFrom('clients').select('id').where('org_id', '=', orgId).execute()).length;
}
async function keyCount(orgId: string): Promise<number> {
  return (await db().selectFrom('idempotency_keys').select('key').where('org_id', '=', orgId).execute()).length;
}

async function rawPost(token: string, body: string, key?: string) {
  const headers: Record<string, string> = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };
  if (key !== undefined) headers['Idempotency-Key'] = key;
  const response = await fetch(`${server.baseUrl}/clients`, { method: 'POST', headers, body });
  return { status: response.status, headers: response.headers, body: await readJson(response) };
}

describe('replay', () => {
  it('returns the first response, marked replayed, and writes no second row', async () => {
    const { api, token } = await server.tenant({ plan: 'studio' });
    const key = randomUUID();
    const first = await api.POST('/clients', { body: { name: 'Once', defaultRate: 10 }, headers: { 'Idempotency-Key': key } });
    const second = await api.POST('/clients', { body: { name: 'Once', defaultRate: 10 }, headers: { 'Idempotency-Key': key } });
    expect(first.response.status).toBe(201);
    expect(first.response.headers.get('Idempotent-Replayed')).toBeNull();
    expect(second.response.status).toBe(201);
    expect(second.response.headers.get('Idempotent-Replayed')).toBe('true');
    expect(JSON.stringify(second.data)).toBe(JSON.stringify(first.data));
    expect(second.response.headers.get('Location')).toBe(first.response.headers.get('Location'));
    expect(second.response.headers.get('X-Request-Id')).not.toBe(first.response.headers.get('X-Request-Id'));
    expect(await clientCount(token.orgId)).toBe(1);
    expect(await keyCount(token.orgId)).toBe(1);
  });

  it('fingerprints the parsed body: key order and white space do not matter', async () => {
    const { token } = await server.tenant({ plan: 'studio' });
    const key = randomUUID();
    const first = await rawPost(token.token, '{"name":"Order","email":"a@b.co"}', key);
    const second = await rawPost(token.token, '{ "email" : "a@b.co",\n  "name" : "Order" }', key);
    expect(second.status).toBe(201);
    expect(second.headers.get('Idempotent-Replayed')).toBe('true');
    expect(second.body).toEqual(first.body);
    expect(await clientCount(token.orgId)).toBe(1);
  });

  it('takes a ULID, the quoted form, and either case as the same key', async () => {
    const { token } = await server.tenant({ plan: 'studio' });
    const ulid = '01JDQ3W4J6Y5Z8K2N7P9R1T3V5';
    const a = await rawPost(token.token, '{"name":"Ulid"}', ulid);
    const b = await rawPost(token.token, '{"name":"Ulid"}', `"${ulid.toLowerCase()}"`);
    expect(a.status).toBe(201);
    expect(b.headers.get('Idempotent-Replayed')).toBe('true');
    expect(b.body.data.id).toBe(a.body.data.id);
    expect(await clientCount(token.orgId)).toBe(1);
  });

  it.each([['string'], ['01JDQ3W4J6Y5Z8K2N7P9R1T3VU'], ['"unbalanced'], [`${randomUUID()}x`], ['81JDQ3W4J6Y5Z8K2N7P9R1T3V5']])(
    'refuses the malformed key %j with a 400 naming the header, storing nothing',
    async (key) => {
      const { token } = await server.tenant();
      const { status, body } = await rawPost(token.token, '{"name":"Bad key"}', key);
      expect(status).toBe(400);
      expect(body.error.fields).toEqual({ 'Idempotency-Key': 'must be a UUID or a ULID' });
      expect(await keyCount(token.orgId)).toBe(0);
    },
  );
});

describe('the same key for something else', () => {
  it('with a different body is 422 idempotency_key_reused, and writes nothing', async () => {
    const { api, token } = await server.tenant();
    const key = randomUUID();
    await api.POST('/clients', { body: { name: 'First' }, headers: { 'Idempotency-Key': key } });
    const { error, response } = await api.POST('/clients', { body: { name: 'Second' }, headers: { 'Idempotency-Key': key } });
    expect(response.status).toBe(422);
    expect(error!.error.code).toBe('idempotency_key_reused');
    expect(await clientCount(token.orgId)).toBe(1);
  });

  it('in another organisation, or the other environment, is independent', async () => {
    const key = randomUUID();
    const a = await server.tenant();
    const b = await server.tenant();
    const orgName = (await db().selectFrom('organisations').select('name').where('id', '=', a.token.orgId).executeTakeFirstOrThrow()).name;
    const aLive = server.client((await server.mint({ orgName, env: 'live' })).token);
    const answers = [];
    for (const api of [a.api, b.api, aLive])
      answers.push(await api.POST('/clients', { body: { name: 'Same key' }, headers: { 'Idempotency-Key': key } }));
    expect(answers.map((r) => r.response.status)).toEqual([201, 201, 201]);
    expect(answers.map((r) => r.response.headers.get('Idempotent-Replayed'))).toEqual([null, null, null]);
    expect(new Set(answers.map((r) => r.data!.data.id)).size).toBe(3);
  });
});

describe('what is stored', () => {
  it("stores the handler's own 4xx (402) and replays it, even after room is made", async () => {
    const { api, token } = await server.tenant({ plan: 'free' });
    for (const name of ['A', 'B', 'C']) await api.POST('/clients', { body: { name } });
    const key = randomUUID();
    const first = await api.POST('/clients', { body: { name: 'D' }, headers: { 'Idempotency-Key': key } });
    expect(first.response.status).toBe(402);
    await db().updateTable('clients').set({ deleted_at: new Date() }).where('org_id', '=', token.orgId).where('name', '=', 'A').execute();
    const again = await api.POST('/clients', { body: { name: 'D' }, headers: { 'Idempotency-Key': key } });
    expect(again.response.status).toBe(402);
    expect(again.response.headers.get('Idempotent-Replayed')).toBe('true');
    expect(again.error).toEqual(first.error);
    // A new key is a new request: now there is room.
    expect((await api.POST('/clients', { body: { name: 'D' } })).response.status).toBe(201);
  });

  it('a 401 or a 400 before the claim does not burn the key', async () => {
    const { token } = await server.tenant();
    const key = randomUUID();
    expect((await rawPost('hsk_test_AAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB', '{"name":"A"}', key)).status).toBe(401);
    expect((await rawPost(token.token, '{"name":""}', key)).status).toBe(400);
    expect((await rawPost(token.token, '{"name":"A",', key)).status).toBe(400);
    expect(await keyCount(token.orgId)).toBe(0);
    const ok = await rawPost(token.token, '{"name":"Different but fine"}', key);
    expect(ok.status).toBe(201);
    expect(ok.headers.get('Idempotent-Replayed')).toBeNull();
  });

  it('a 403 before the claim does not burn the key either', async () => {
    const readOnly = await server.tenant({ scopes: ['clients:read'] });
    const key = randomUUID();
    expect((await rawPost(readOnly.token.token, '{"name":"A"}', key)).status).toBe(403);
    expect(await keyCount(readOnly.token.orgId)).toBe(0);
  });
});

/**
 * Makes every insert into `table` for this organisation fail, inside the statement that writes it,
 * as a database that breaks mid-write would; the returned function mends it.
 */
async function breakInserts(table: 'clients' | 'idempotency_keys', orgId: string): Promise<() => Promise<void>> {
  const name = `broken_${table}_${orgId.replaceAll('-', '')}`;
  await sql
    .raw(`create function ${name}() returns trigger language plpgsql as $$ begin raise exception 'the ${table} store is down'; end $$`)
    .execute(db());
  await sql
    .raw(`create trigger ${name} after insert on ${table} for each row when (new.org_id = '${orgId}') execute function ${name}()`)
    .execute(db());
  return async () => {
    await sql.raw(`drop trigger ${name} on ${table}`).execute(db());
    await sql.raw(`drop function ${name}()`).execute(db());
  };
}

describe('failures inside the transaction leave nothing, and a retry with the same key succeeds', () => {
  // free: the create is one transaction (the plan's count is checked); studio: one statement.
  it.each([
    ['after inserting the client', 'clients', 'free'],
    ['after inserting the client', 'clients', 'studio'],
    ['storing the response (inside the one statement)', 'idempotency_keys', 'studio'],
  ] as const)('when the write fails %s (%s broken, %s plan)', async (_when, table, plan) => {
    const { api, token } = await server.tenant({ plan });
    const key = randomUUID();
    const mend = await breakInserts(table, token.orgId);
    try {
      const failed = await api.POST('/clients', { body: { name: 'Flaky' }, headers: { 'Idempotency-Key': key } });
      expect(failed.response.status).toBe(500);
      expect(JSON.stringify(failed.error)).not.toContain('store is down');
    } finally {
      await mend();
    }
    expect(await clientCount(token.orgId)).toBe(0);
    expect(await keyCount(token.orgId)).toBe(0);
    const retried = await api.POST('/clients', { body: { name: 'Flaky' }, headers: { 'Idempotency-Key': key } });
    expect(retried.response.status).toBe(201);
    expect(retried.response.headers.get('Idempotent-Replayed')).toBeNull();
    expect(await clientCount(token.orgId)).toBe(1);
    expect(await keyCount(token.orgId)).toBe(1);
  });

  it("when storing the response fails (free plan: the transaction's last statement)", async () => {
    const failing = storeFailingFirstSave();
    const flaky = await startTestServer({ clock: () => now, idempotencyStore: failing.store }, { database: server.database });
    try {
      const { api, token } = await flaky.tenant({ plan: 'free' });
      const key = randomUUID();
      const failed = await api.POST('/clients', { body: { name: 'Store' }, headers: { 'Idempotency-Key': key } });
      expect(failed.response.status).toBe(500);
      expect(failing.saves()).toBe(1);
      expect(JSON.stringify(failed.error)).not.toContain('store is down');
      expect(await clientCount(token.orgId)).toBe(0);
      expect(await keyCount(token.orgId)).toBe(0);
      const retried = await api.POST('/clients', { body: { name: 'Store' }, headers: { 'Idempotency-Key': key } });
      expect(retried.response.status).toBe(201);
      expect(await clientCount(token.orgId)).toBe(1);
      expect(await keyCount(token.orgId)).toBe(1);
    } finally {
      await flaky.close();
    }
  });
});

describe('24 hours', () => {
  it('after which the key is forgotten, and purged', async () => {
    const { api, token } = await server.tenant({ plan: 'studio' });
    const key = randomUUID();
    const start = now;
    try {
      const first = await api.POST('/clients', { body: { name: 'Old' }, headers: { 'Idempotency-Key': key } });
      now = new Date(start.getTime() + KEY_LIFETIME_MS - 1000);
      const within = await api.POST('/clients', { body: { name: 'Old' }, headers: { 'Idempotency-Key': key } });
      expect(within.response.headers.get('Idempotent-Replayed')).toBe('true');
      expect(within.data!.data.id).toBe(first.data!.data.id);

      now = new Date(start.getTime() + KEY_LIFETIME_MS + 1000);
      const after = await api.POST('/clients', { body: { name: 'New' }, headers: { 'Idempotency-Key': key } });
      expect(after.response.status).toBe(201);
      expect(after.response.headers.get('Idempotent-Replayed')).toBeNull();
      expect(after.data!.data.id).not.toBe(first.data!.data.id);

      // A key of its own, left to expire, is purged; a live one is kept.
      const other = randomUUID();
      await api.POST('/clients', { body: { name: 'Purge me' }, headers: { 'Idempotency-Key': other } });
      now = new Date(now.getTime() + 2 * KEY_LIFETIME_MS);
      const removed = await purgeExpiredKeys(db(), now, { batchSize: 1 });
      expect(removed).toBeGreaterThanOrEqual(2);
      expect(await keyCount(token.orgId)).toBe(0);
    } finally {
      now = start;
    }
  });
});

describe.runIf(usingPostgres)('a key held by another session (PostgreSQL)', () => {
  it('is 409 on the one-statement path too', async () => {
    const { api, token } = await server.tenant({ plan: 'studio' });
    const key = randomUUID();
    const lock = `idempotency:${token.orgId}:test:${key}`;
    const pool = new pg.Pool({ connectionString: server.database.url, max: 1 });
    const holder = await pool.connect();
    try {
      await holder.query('select pg_advisory_lock(hashtextextended($1, 0))', [lock]);
      const busy = await api.POST('/clients', { body: { name: 'Held' }, headers: { 'Idempotency-Key': key } });
      expect(busy.response.status).toBe(409);
      expect(busy.response.headers.get('Retry-After')).toBe('1');
      expect(await clientCount(token.orgId)).toBe(0);
      await holder.query('select pg_advisory_unlock(hashtextextended($1, 0))', [lock]);
      expect((await api.POST('/clients', { body: { name: 'Held' }, headers: { 'Idempotency-Key': key } })).response.status).toBe(201);
    } finally {
      holder.release();
      await pool.end();
    }
  });
});

describe('concurrency', () => {
  it('replays of a stored key never wait for each other: ten at once all get the replay', async () => {
    const { api, token } = await server.tenant({ plan: 'studio' });
    const key = randomUUID();
    const first = await api.POST('/clients', { body: { name: 'Popular' }, headers: { 'Idempotency-Key': key } });
    const replays = await Promise.all(
      Array.from({ length: 10 }, () => api.POST('/clients', { body: { name: 'Popular' }, headers: { 'Idempotency-Key': key } })),
    );
    for (const replay of replays) {
      expect(replay.response.status).toBe(201);
      expect(replay.response.headers.get('Idempotent-Replayed')).toBe('true');
      expect(replay.data!.data.id).toBe(first.data!.data.id);
    }
    expect(await clientCount(token.orgId)).toBe(1);
  });

  it('ten requests at once with one key: one row, the same 201 or 409 with Retry-After', async () => {
    const { api, token } = await server.tenant({ plan: 'studio' });
    const key = randomUUID();
    const answers = await Promise.all(
      Array.from({ length: 10 }, () => api.POST('/clients', { body: { name: 'Burst' }, headers: { 'Idempotency-Key': key } })),
    );
    const created = answers.filter((a) => a.response.status === 201);
    const busy = answers.filter((a) => a.response.status === 409);
    expect(created.length + busy.length).toBe(10);
    expect(created.length).toBeGreaterThanOrEqual(1);
    expect(new Set(created.map((a) => a.data!.data.id)).size).toBe(1);
    for (const a of busy) {
      expect(a.error!.error.code).toBe('idempotency_request_in_progress');
      expect(a.response.headers.get('Retry-After')).toMatch(/^\d+$/);
    }
    expect(await clientCount(token.orgId)).toBe(1);
  });
});

describe('a request while the first with its key still runs', () => {
  it('is 409 with Retry-After on PostgreSQL; on the embedded database it waits and gets the replay', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const slow = await startTestServer(
      {
        clock: () => now,
        idempotencyStore: {
          saveAnswer: async (...args) => {
            entered();
            await held;
            return idempotencyQueries.saveAnswer(...args);
          },
        },
      },
      { database: server.database },
    );
    try {
      // A plan with a limit: the request runs in a transaction that holds the key until it commits.
      const { api, token } = await slow.tenant({ plan: 'pro' });
      const key = randomUUID();
      const first = api.POST('/clients', { body: { name: 'Slow' }, headers: { 'Idempotency-Key': key } });
      await inside;
      const second = api.POST('/clients', { body: { name: 'Slow' }, headers: { 'Idempotency-Key': key } });
      if (server.database.kind === 'postgres') {
        const busy = await second;
        expect(busy.response.status).toBe(409);
        expect(busy.error!.error.code).toBe('idempotency_request_in_progress');
        expect(busy.response.headers.get('Retry-After')).toBe('1');
        release();
        expect((await first).response.status).toBe(201);
      } else {
        release();
        const [a, b] = await Promise.all([first, second]);
        expect(a.response.status).toBe(201);
        expect(b.response.headers.get('Idempotent-Replayed')).toBe('true');
        expect(b.data!.data.id).toBe(a.data!.data.id);
      }
      expect(await clientCount(token.orgId)).toBe(1);
    } finally {
      release();
      await slow.close();
    }
  });
});
