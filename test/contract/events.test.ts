/**
 * Events and the change feed: each change of a client writes exactly one event in its own
 * transaction (none for a replay, a PATCH that changes nothing, or a refused request), the feed
 * walks them in order with a cursor that never skips, and every event is the tenant's own.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClientsApi } from '../../client/index.js';
import { applyUpdate } from '../../server/clients/clients.service.js';
import { purgeExpiredEvents } from '../../server/events/events.service.js';
import { usingPostgres } from '../support/database.js';
import { FUZZ_RATE_LIMITS } from '../support/operation-fixtures.js';
import { startTestServer, storeFailingFirstSave, type TestServer } from '../support/server.js';

let server: TestServer;
let api: ClientsApi;
let orgId: string;

beforeAll(async () => {
  // Consumers here poll as fast as they can: budgets no run reaches (the rate limit is judged elsewhere).
  // Many writers of one organisation at once (concurrent writers, below): no concurrency limit.
  server = await startTestServer({ rateLimits: FUZZ_RATE_LIMITS, concurrencyLimit: false });
  const tenant = await server.tenant({ plan: 'studio' });
  api = tenant.api;
  orgId = tenant.token.orgId;
});
afterAll(() => server?.close());

type FeedEvent = {
  id: string;
  type: string;
  env: string;
  createdAt: string;
  data: { object: Record<string, unknown>; previousAttributes?: Record<string, unknown> };
};

/** One page of the feed. */
async function page(query: { after?: string; type?: string; limit?: number } = {}, on: ClientsApi = api) {
  const { data, response } = await on.GET('/events', { params: { query: query as never } });
  expect(response.status).toBe(200);
  return data! as unknown as { data: FeedEvent[]; nextCursor: string; hasMore: boolean };
}

/**
 * Walks the feed from `after` to its end, as a consumer does: every page, following nextCursor.
 * Another test file's transaction on the same PostgreSQL server can hold the feed back for a
 * moment (the feed waits for every older transaction), so it waits for `expected` events at most.
 */
async function walk(after?: string, expected = 0, on: ClientsApi = api): Promise<{ events: FeedEvent[]; cursor: string }> {
  const events: FeedEvent[] = [];
  let cursor = after;
  const deadline = Date.now() + 15_000;
  for (;;) {
    const got = await page(cursor === undefined ? {} : { after: cursor }, on);
    events.push(...got.data);
    cursor = got.nextCursor;
    if (got.hasMore) continue;
    if (events.length >= expected || Date.now() > deadline) return { events, cursor };
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function eventCount(): Promise<number> {
  const { n } = await server.database.db
    .selectFrom('events')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('org_id', '=', orgId)
    .executeTakeFirstOrThrow();
  return Number(n);
}

describe("a client's contacts' changes write their events", () => {
  it('contact.created, contact.updated (with the changed fields before, the demoted primary too), contact.deleted: in order', async () => {
    const start = (await walk()).cursor;
    const clientId = (await api.POST('/clients', { body: { name: 'Contacts Inc' } })).data!.data.id;
    const path = { id: clientId };
    const marge = await api.POST('/clients/{id}/contacts', {
      params: { path },
      body: { name: 'Marge', isPrimary: true, metadata: { a: '1' } },
    });
    const homer = await api.POST('/clients/{id}/contacts', { params: { path }, body: { name: 'Homer', isPrimary: true } });
    const margeNow = await api.GET('/clients/{id}/contacts/{contactId}', { params: { path: { ...path, contactId: marge.data!.data.id } } });
    const renamed = await api.PATCH('/clients/{id}/contacts/{contactId}', {
      params: { path: { ...path, contactId: homer.data!.data.id } },
      body: { role: 'Owner', metadata: { b: '2' } },
    });
    // Changes of nothing and refusals write none.
    await api.PATCH('/clients/{id}/contacts/{contactId}', {
      params: { path: { ...path, contactId: homer.data!.data.id } },
      body: { role: 'Owner', metadata: { b: '2', gone: null } },
    });
    const stale = await api.PATCH('/clients/{id}/contacts/{contactId}', {
      params: { path: { ...path, contactId: homer.data!.data.id }, header: { 'If-Match': '"stale"' } },
      body: { role: 'Never' },
    });
    expect(stale.response.status).toBe(412);
    const deleted = await api.DELETE('/clients/{id}/contacts/{contactId}', {
      params: { path: { ...path, contactId: marge.data!.data.id } },
    });

    const { events } = await walk(start, 6);
    expect(events.map((e) => e.type)).toEqual([
      'client.created',
      'contact.created',
      'contact.updated',
      'contact.created',
      'contact.updated',
      'contact.deleted',
    ]);
    const [, created, demoted, second, updated, removed] = events;
    expect(created!.data).toEqual({ object: marge.data!.data });
    expect(demoted!.data).toEqual({
      object: margeNow.data!.data,
      previousAttributes: { isPrimary: true, updatedAt: marge.data!.data.updatedAt },
    });
    expect(second!.data).toEqual({ object: homer.data!.data });
    expect(updated!.data).toEqual({
      object: renamed.data!.data,
      previousAttributes: { role: null, metadata: {}, updatedAt: homer.data!.data.updatedAt },
    });
    expect(removed!.data).toEqual({ object: deleted.data!.data });
    for (const event of events.slice(1, 5)) expect(event.createdAt).toBe(event.data.object.updatedAt);
    expect(removed!.createdAt >= deleted.data!.data.updatedAt).toBe(true);

    // Filtered by type, and each readable by id.
    const onlyDeleted = (await walk(start, 1)).events.filter((e) => e.type === 'contact.deleted');
    expect(onlyDeleted).toHaveLength(1);
    const typed = await page({ after: start, type: 'contact.deleted' });
    expect(typed.data.map((e) => e.id)).toEqual([removed!.id]);
    const one = await api.GET('/events/{id}', { params: { path: { id: removed!.id } } });
    expect(one.data!.data).toEqual(removed);
    // Each carries its object's id as a column too (what the search indexer reads): the client's, then the contacts'.
    const { rows } = await sql<{ object_id: string }>`
      select object_id from events where id = any (${events.map((e) => e.id)}::uuid[]) order by txid, seq`.execute(server.database.db);
    expect(rows.map((r) => r.object_id)).toEqual(events.map((e) => e.data.object.id));
  });
});

describe('each change writes its event', () => {
  it('created, updated, deleted, restored: in order, with the client after each change', async () => {
    const start = (await walk()).cursor;
    const created = await api.POST('/clients', { body: { name: 'Initech', currency: 'usd', defaultRate: 120.5 } });
    const id = created.data!.data.id;
    const updated = await api.PATCH('/clients/{id}', {
      params: { path: { id } },
      body: { name: 'Initech Ltd', email: 'billing@initech.test' },
    });
    const deleted = await api.DELETE('/clients/{id}', { params: { path: { id } } });
    const restored = await api.POST('/clients/{id}/restore', { params: { path: { id } } });

    const { events } = await walk(start, 4);
    expect(events.map((e) => e.type)).toEqual(['client.created', 'client.updated', 'client.deleted', 'client.restored']);
    expect(events.map((e) => e.data.object)).toEqual([created.data!.data, updated.data!.data, deleted.data!.data, restored.data!.data]);
    expect(events.map((e) => e.createdAt)).toEqual(events.map((e) => e.data.object.updatedAt));
    expect(events.every((e) => e.env === 'test')).toBe(true);
    expect(events[1]!.data.previousAttributes).toEqual({
      name: 'Initech',
      email: null,
      updatedAt: created.data!.data.updatedAt,
    });
    for (const event of [events[0]!, events[2]!, events[3]!]) expect(event.data).not.toHaveProperty('previousAttributes');
    expect(new Set(events.map((e) => e.id)).size).toBe(4);

    const one = await api.GET('/events/{id}', { params: { path: { id: events[1]!.id } } });
    expect(one.response.status).toBe(200);
    expect(one.data!.data).toEqual(events[1]);
  });

  it('writes none for a replay, a PATCH that changes nothing, or a refused request', async () => {
    const key = randomUUID();
    const first = await api.POST('/clients', { body: { name: 'Replayed' }, headers: { 'Idempotency-Key': key } });
    const id = first.data!.data.id;
    const before = await eventCount();

    const replay = await api.POST('/clients', { body: { name: 'Replayed' }, headers: { 'Idempotency-Key': key } });
    expect(replay.response.headers.get('Idempotent-Replayed')).toBe('true');
    expect((await api.PATCH('/clients/{id}', { params: { path: { id } }, body: {} })).response.status).toBe(200);
    expect((await api.PATCH('/clients/{id}', { params: { path: { id } }, body: { name: 'Replayed', email: '' } })).response.status).toBe(
      200,
    );
    const stale = await api.PATCH('/clients/{id}', {
      params: { path: { id }, header: { 'If-Match': '"stale"' } },
      body: { name: 'Never' },
    });
    expect(stale.response.status).toBe(412);
    expect((await api.PATCH('/clients/{id}', { params: { path: { id } }, body: { name: '' } as never })).response.status).toBe(400);
    expect((await api.POST('/clients/{id}/restore', { params: { path: { id } } })).response.status).toBe(200); // not deleted: no change
    expect((await api.PATCH('/clients/{id}', { params: { path: { id: randomUUID() } }, body: { name: 'Nobody' } })).response.status).toBe(
      404,
    );
    expect(await eventCount()).toBe(before);

    expect((await api.DELETE('/clients/{id}', { params: { path: { id } } })).response.status).toBe(200);
    expect((await api.DELETE('/clients/{id}', { params: { path: { id } } })).response.status).toBe(200); // already deleted
    expect(await eventCount()).toBe(before + 1);
  });

  it('writes none when the plan refuses the change', async () => {
    const { api: free, token } = await server.tenant({ plan: 'free' });
    for (let i = 0; i < 3; i++) expect((await free.POST('/clients', { body: { name: `Slot ${i}` } })).response.status).toBe(201);
    expect((await free.POST('/clients', { body: { name: 'One too many' } })).response.status).toBe(402);
    const { n } = await server.database.db
      .selectFrom('events')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('org_id', '=', token.orgId)
      .executeTakeFirstOrThrow();
    expect(Number(n)).toBe(3);
  });
});

describe('no change without its event, no event without its change', () => {
  it('a write whose transaction fails after the change leaves neither the change nor its event', async () => {
    const flaky = await startTestServer({ idempotencyStore: storeFailingFirstSave().store }, { database: server.database });
    try {
      const { api: on, token } = await flaky.tenant({ plan: 'studio' });
      const created = await on.POST('/clients', { body: { name: 'Before' } });
      const id = created.data!.data.id;
      const key = randomUUID();
      const failed = await on.PATCH('/clients/{id}', {
        params: { path: { id } },
        body: { name: 'After' },
        headers: { 'Idempotency-Key': key },
      });
      expect(failed.response.status).toBe(500);
      const types = async () =>
        (await server.database.db.selectFrom('events').select('type').where('org_id', '=', token.orgId).orderBy('seq').execute()).map(
          (r) => r.type,
        );
      expect(await types()).toEqual(['client.created']);
      expect((await on.GET('/clients/{id}', { params: { path: { id } } })).data!.data.name).toBe('Before');

      const retried = await on.PATCH('/clients/{id}', {
        params: { path: { id } },
        body: { name: 'After' },
        headers: { 'Idempotency-Key': key },
      });
      expect(retried.response.status).toBe(200);
      expect(await types()).toEqual(['client.created', 'client.updated']);
    } finally {
      await flaky.close();
    }
  });

  it('an event that cannot be written takes its change with it, in the one-statement create too', async () => {
    const { api: on, token } = await server.tenant({ plan: 'studio' });
    const db = server.database.db;
    // A trigger that refuses this organisation's events: the failure is inside the create's one statement.
    await sql
      .raw(`
      create or replace function refuse_event() returns trigger language plpgsql as $$
      begin
        if new.org_id = '${token.orgId}' then raise exception 'event refused'; end if;
        return new;
      end $$`)
      .execute(db);
    await sql.raw('create trigger refuse_event before insert on events for each row execute function refuse_event()').execute(db);
    try {
      for (const headers of [{}, { 'Idempotency-Key': randomUUID() }]) {
        const refused = await on.POST('/clients', { body: { name: 'Eventless' }, headers });
        expect(refused.response.status).toBe(500);
      }
      const clients = await db.selectFrom('clients').select('id').where('org_id', '=', token.orgId).execute();
      expect(clients).toEqual([]);
    } finally {
      await sql.raw('drop trigger refuse_event on events').execute(db);
      await sql.raw('drop function refuse_event()').execute(db);
    }
  });

  it('after any mix of changes, each client is exactly what its last event says, with one event per change', async () => {
    const { api: on, token } = await server.tenant({ plan: 'pro' });
    const expected = new Map<string, unknown>();
    let changes = 0;
    const ids: string[] = [];
    for (let step = 0; step < 40; step++) {
      const id = ids[step % Math.max(ids.length, 1)];
      const choice = step % 5;
      let answer: { response: Response; data?: { data: unknown } };
      if (choice === 0 || !id) answer = (await on.POST('/clients', { body: { name: `Client ${step}` } })) as never;
      else if (choice === 1)
        answer = (await on.PATCH('/clients/{id}', { params: { path: { id } }, body: { notes: `step ${step}` } })) as never;
      else if (choice === 2) answer = (await on.DELETE('/clients/{id}', { params: { path: { id } } })) as never;
      else if (choice === 3) answer = (await on.POST('/clients/{id}/restore', { params: { path: { id } } })) as never;
      else answer = (await on.PATCH('/clients/{id}', { params: { path: { id } }, body: { notes: `step ${step - 1}` } })) as never;
      if (!answer.response.ok) continue;
      const client = answer.data!.data as { id: string };
      if (!ids.includes(client.id)) ids.push(client.id);
      if (JSON.stringify(expected.get(client.id)) !== JSON.stringify(client)) changes++;
      expected.set(client.id, client);
    }
    const rows = await server.database.db
      .selectFrom('events')
      .select(['type', 'data', 'object_id'])
      .where('org_id', '=', token.orgId)
      .orderBy(sql`txid`)
      .orderBy('seq')
      .execute();
    expect(rows.length).toBe(changes);
    const last = new Map<string, unknown>();
    for (const row of rows) {
      const object = (row.data as { object: { id: string } }).object;
      expect(row.object_id).toBe(object.id);
      last.set(object.id, object);
    }
    expect(last).toEqual(expected);
  });
});

describe('GET /events', () => {
  it('pages with limit and hasMore, filters by type, and polling at the end returns the same cursor', async () => {
    const { api: on } = await server.tenant({ plan: 'studio' });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await on.POST('/clients', { body: { name: `Paged ${i}` } })).data!.data.id);
    await on.DELETE('/clients/{id}', { params: { path: { id: ids[0]! } } });

    const all = (await walk(undefined, 6, on)).events;
    expect(all.map((e) => e.type)).toEqual([...Array(5).fill('client.created'), 'client.deleted']);
    const first = await page({ limit: 2 }, on);
    expect(first.data).toEqual(all.slice(0, 2));
    expect(first.hasMore).toBe(true);
    const second = await page({ limit: 4, after: first.nextCursor }, on);
    expect(second.data).toEqual(all.slice(2, 6));
    expect(second.hasMore).toBe(false);
    const end = await page({ after: second.nextCursor }, on);
    expect(end).toEqual({ data: [], nextCursor: second.nextCursor, hasMore: false });

    const deletions = await page({ type: 'client.deleted' }, on);
    expect(deletions.data).toEqual([all[5]]);
  });

  it('orders by transaction id as a number: 9, 10, 99, 100, never "10" before "9"', async () => {
    const { api: on, token } = await server.tenant({ plan: 'studio' });
    const names = ['Nine', 'Ten', 'Ninety-nine', 'Hundred'];
    for (const name of names) await on.POST('/clients', { body: { name } });
    // Ids that cross powers of ten, as a database's transaction ids do (and a new epoch of them).
    for (const [i, txid] of ['9', '10', '99', '100'].entries()) {
      await sql`update events set txid = ${txid}::xid8 where org_id = ${token.orgId} and data->'object'->>'name' = ${names[i]}`.execute(
        server.database.db,
      );
    }
    const seen: string[] = [];
    let after: string | undefined;
    for (let i = 0; i < 5; i++) {
      const got = await page({ limit: 1, ...(after && { after }) }, on);
      seen.push(...got.data.map((e) => e.data.object.name as string));
      after = got.nextCursor;
    }
    expect(seen).toEqual(names);
  });

  it('refuses a cursor it did not give out, naming after', async () => {
    for (const after of [
      'nonsense',
      Buffer.from('1.2.3').toString('base64url'),
      Buffer.from('99999999999999999999.1').toString('base64url'),
    ]) {
      const { response, error } = await api.GET('/events', { params: { query: { after } } });
      expect(response.status).toBe(400);
      expect((error as { error: { fields: Record<string, string> } }).error.fields).toHaveProperty('after');
    }
  });

  it('shows only the token’s organisation and environment', async () => {
    const mine = await server.tenant({ plan: 'studio' });
    const theirs = await server.tenant({ plan: 'studio' });
    const live = server.client((await server.mint({ orgName: (await orgName(mine.token.orgId))!, env: 'live' })).token);
    const created = await theirs.api.POST('/clients', { body: { name: 'Theirs' } });
    await live.POST('/clients', { body: { name: 'Live' } });
    await mine.api.POST('/clients', { body: { name: 'Mine' } });

    const seen = (await walk(undefined, 1, mine.api)).events;
    expect(seen.map((e) => e.data.object.name)).toEqual(['Mine']);
    const theirEvent = (await walk(undefined, 1, theirs.api)).events[0]!;
    expect(theirEvent.data.object.id).toBe(created.data!.data.id);
    expect((await mine.api.GET('/events/{id}', { params: { path: { id: theirEvent.id } } })).response.status).toBe(404);
    const liveEvent = (await walk(undefined, 1, live)).events[0]!;
    expect(liveEvent.env).toBe('live');
    expect((await mine.api.GET('/events/{id}', { params: { path: { id: liveEvent.id } } })).response.status).toBe(404);
    expect((await mine.api.GET('/events/{id}', { params: { path: { id: 'not-a-uuid' } } })).response.status).toBe(404);
  });
});

async function orgName(id: string) {
  return (await server.database.db.selectFrom('organisations').select('name').where('id', '=', id).executeTakeFirst())?.name;
}

it('keeps events 30 days, purged in batches', async () => {
  const { api: on, token } = await server.tenant({ plan: 'studio' });
  for (let i = 0; i < 5; i++) await on.POST('/clients', { body: { name: `Old ${i}` } });
  await on.POST('/clients', { body: { name: 'Recent' } });
  const db = server.database.db;
  const now = new Date();
  await db
    .updateTable('events')
    .set({ created_at: new Date(now.getTime() - 31 * 86_400_000) })
    .where('org_id', '=', token.orgId)
    .where(sql<boolean>`data->'object'->>'name' like 'Old %'`)
    .execute();
  expect(await purgeExpiredEvents(db, now, { batchSize: 2 })).toBeGreaterThanOrEqual(5);
  const left = await db
    .selectFrom('events')
    .select(sql<string>`data->'object'->>'name'`.as('name'))
    .where('org_id', '=', token.orgId)
    .execute();
  expect(left.map((r) => r.name)).toEqual(['Recent']);
});

describe('concurrent writers', () => {
  it.runIf(usingPostgres)('a consumer never misses an event from a transaction that began earlier and committed later', async () => {
    const { api: on, token } = await server.tenant({ plan: 'studio' });
    const tenant = { orgId: token.orgId, env: token.env, plan: 'studio' as const };
    const early = (await on.POST('/clients', { body: { name: 'Early' } })).data!.data.id;
    const { cursor } = await walk(undefined, 1, on);

    // Transaction A changes a client through the service's own write path, and stays open.
    let entered!: () => void;
    let release!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const held = new Promise<void>((resolve) => (release = resolve));
    const a = server.database.db.transaction().execute(async (trx) => {
      await applyUpdate(trx, tenant, early, { notes: 'from A' }, undefined);
      entered();
      await held;
    });
    await inside;
    // B starts later and commits first.
    const b = (await on.POST('/clients', { body: { name: 'Late' } })).data!.data.id;
    const txids = await server.database.db
      .selectFrom('events')
      .select([sql<string>`txid::text`.as('txid'), sql<string>`data->'object'->>'id'`.as('client')])
      .where('org_id', '=', token.orgId)
      .orderBy(sql`txid`)
      .orderBy('seq')
      .execute();
    // What makes this interleaving the dangerous one: B's event is committed, with a place after A's.
    expect(txids.map((r) => r.client)).toEqual([early, b]);

    // Meanwhile the consumer polls: B's event is held back behind the running A, not shown ahead of it.
    const during = await page({ after: cursor }, on);
    expect(during.data).toEqual([]);
    expect(during.nextCursor).toBe(cursor);

    release();
    await a;
    const { events } = await walk(during.nextCursor, 2, on);
    expect(events.map((e) => [e.type, e.data.object.id])).toEqual([
      ['client.updated', early],
      ['client.created', b],
    ]);
  });

  it('consumers polling while many writers commit see every event once, in feed order', async () => {
    const { api: on, token } = await server.tenant({ plan: 'studio' });
    const seen: FeedEvent[] = [];
    let cursor: string | undefined;
    let writing = true;
    const consumer = (async () => {
      while (writing) {
        const got = await page(cursor === undefined ? {} : { after: cursor }, on);
        seen.push(...got.data);
        cursor = got.nextCursor;
      }
    })();
    const writers = Array.from({ length: 8 }, async (_, w) => {
      for (let i = 0; i < 8; i++) {
        const id = (await on.POST('/clients', { body: { name: `W${w}-${i}` } })).data!.data.id;
        await on.PATCH('/clients/{id}', { params: { path: { id } }, body: { notes: 'changed' } });
      }
    });
    await Promise.all(writers);
    writing = false;
    await consumer;
    seen.push(...(await walk(cursor, 128 - seen.length, on)).events);

    const stored = await server.database.db
      .selectFrom('events')
      .select('id')
      .where('org_id', '=', token.orgId)
      .orderBy(sql`txid`)
      .orderBy('seq')
      .execute();
    expect(stored).toHaveLength(128);
    expect(seen.map((e) => e.id)).toEqual(stored.map((r) => r.id));
  });
});
