/**
 * `q` and `email` through the search table (server/clients/client-search.queries.ts), kept off the
 * request path by the search indexer (server/clients/search-indexer.ts): a change is found (or no
 * longer found) at once, through the tail of events the indexer has not passed, and still after
 * it has passed them; the indexer works in batches, goes on after a restart from where it stopped,
 * and its lag shows in the metrics; another organisation's or environment's rows never appear.
 * On PGlite, and on PostgreSQL with TEST_DATABASE_URL.
 */
import { CompiledQuery, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClientsApi } from '../../client/index.js';
import { copyClientsIntoSearch, indexNextBatch, nextBatchStatement, searchIndexLag } from '../../server/clients/client-search.queries.js';
import { type ClientListFilter, listClientRows, listClientRowsQuery } from '../../server/clients/clients.queries.js';
import { indexUntilCaughtUp, startSearchIndexer } from '../../server/clients/search-indexer.js';
import * as clientSearchMigration from '../../server/db/migrations/2026_12_04_0001_client_search.js';
import { preparedStatements } from '../../server/db/prepared.js';
import { createMetrics } from '../../server/metrics/metrics.js';
import { usingPostgres } from '../support/database.js';
import { type PlanNode, planNodes } from '../support/plans.js';
import { startTestServer, type TestServer } from '../support/server.js';

/** Each scan of `clients` in a plan goes through its primary key, reading one row per loop at most. */
function expectOnlyKeyLookups(nodes: PlanNode[]): void {
  const reads = nodes.filter((node) => node['Relation Name'] === 'clients');
  expect(reads.length).toBeGreaterThan(0);
  for (const node of reads) {
    expect(node['Index Name'], node['Node Type']).toBe('clients_pkey');
    expect(node['Actual Rows'], node['Node Type']).toBeLessThanOrEqual(1);
  }
}

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.close());

/**
 * Until every event written so far is below the feed's horizon (no transaction older than it still
 * running). On a shared PostgreSQL server another database's long transaction holds the horizon
 * back (transaction ids are the server's), and the indexer rightly waits for it, as the feed does.
 */
async function waitForHorizon(): Promise<void> {
  await expect
    .poll(
      async () =>
        (
          await sql<{ behind: boolean }>`
            select exists (select 1 from events where txid >= pg_snapshot_xmin(pg_current_snapshot())) as behind`.execute(
            server.database.db,
          )
        ).rows[0]!.behind,
      { timeout: 45_000, interval: 100 },
    )
    .toBe(false);
}

/** The indexer run until it has passed every event written so far. */
async function catchUp(): Promise<void> {
  await waitForHorizon();
  await indexUntilCaughtUp(server.database.db, 1000);
  expect((await searchIndexLag(server.database.db)).events).toBe(0);
}

async function search(api: ClientsApi, query: Record<string, string>): Promise<string[]> {
  const { data, error } = await api.GET('/clients', { params: { query: { limit: 100, ...query } as never } });
  if (error) throw new Error(JSON.stringify(error));
  return data.data.map((c) => c.id);
}

async function indexed(clientId: string) {
  return server.database.db.selectFrom('client_search').selectAll().where('client_id', '=', clientId).executeTakeFirst();
}

async function position() {
  return server.database.db.selectFrom('client_search_position').select(['txid', 'seq']).executeTakeFirstOrThrow();
}

describe('a change is found by q at once, and after the indexer has passed it', () => {
  it('create, update, delete and restore', async () => {
    await catchUp();
    const { api } = await server.tenant({ plan: 'studio' });
    const { data } = await api.POST('/clients', { body: { name: 'Zephyrine Holdings', email: 'ap@zephyrine.test' } });
    const id = data!.data.id;
    // Not indexed yet: found through the tail, by q and by the exact email.
    expect(await indexed(id)).toBeUndefined();
    expect(await search(api, { q: 'zephyr' })).toEqual([id]);
    expect(await search(api, { email: 'ap@zephyrine.test' })).toEqual([id]);
    await catchUp();
    expect(await indexed(id)).toMatchObject({ name: 'Zephyrine Holdings', deleted: false });
    expect(await search(api, { q: 'zephyr' })).toEqual([id]);
    expect(await search(api, { email: 'ap@zephyrine.test' })).toEqual([id]);

    // Renamed: the search table still holds the old name, yet only the new one matches.
    await api.PATCH('/clients/{id}', { params: { path: { id } }, body: { name: 'Quartzite Partners', email: 'ap@quartzite.test' } });
    expect(await indexed(id)).toMatchObject({ name: 'Zephyrine Holdings' });
    expect(await search(api, { q: 'zephyr' })).toEqual([]);
    expect(await search(api, { email: 'ap@zephyrine.test' })).toEqual([]);
    expect(await search(api, { q: 'quartz' })).toEqual([id]);
    await catchUp();
    expect(await indexed(id)).toMatchObject({ name: 'Quartzite Partners', email: 'ap@quartzite.test' });
    expect(await search(api, { q: 'zephyr' })).toEqual([]);
    expect(await search(api, { q: 'quartz' })).toEqual([id]);

    // Deleted: gone from the default list at once, listed by deleted=include and only.
    await api.DELETE('/clients/{id}', { params: { path: { id } } });
    for (const round of ['tail', 'indexed']) {
      expect(await search(api, { q: 'quartz' }), round).toEqual([]);
      expect(await search(api, { q: 'quartz', deleted: 'include' }), round).toEqual([id]);
      expect(await search(api, { q: 'quartz', deleted: 'only' }), round).toEqual([id]);
      await catchUp();
    }
    expect(await indexed(id)).toMatchObject({ deleted: true });

    // Restored: back at once.
    await api.POST('/clients/{id}/restore', { params: { path: { id } } });
    expect(await indexed(id)).toMatchObject({ deleted: true });
    for (const round of ['tail', 'indexed']) {
      expect(await search(api, { q: 'quartz' }), round).toEqual([id]);
      expect(await search(api, { q: 'quartz', deleted: 'only' }), round).toEqual([]);
      await catchUp();
    }
    expect(await indexed(id)).toMatchObject({ deleted: false });
  });

  it("never shows another organisation's or another environment's clients, indexed or not", async () => {
    const orgName = `search-tenancy-${Date.now()}`;
    const owner = { api: server.client((await server.mint({ orgName, env: 'test', plan: 'studio' })).token) };
    const other = await server.tenant({ plan: 'studio', env: 'test' });
    const live = server.client((await server.mint({ orgName, env: 'live', plan: 'studio' })).token);
    const name = { name: 'Obsidian Tenancy', email: 'ap@obsidian.test' };
    const mine = (await owner.api.POST('/clients', { body: name })).data!.data.id;
    const theirs = (await other.api.POST('/clients', { body: name })).data!.data.id;
    const liveOne = (await live.POST('/clients', { body: name })).data!.data.id;
    for (const round of ['tail', 'indexed']) {
      for (const query of [{ q: 'obsidian' }, { email: 'ap@obsidian.test' }, { q: 'obsidian', deleted: 'include' }] as Record<
        string,
        string
      >[]) {
        expect(await search(owner.api, query), round).toEqual([mine]);
        expect(await search(other.api, query), round).toEqual([theirs]);
        expect(await search(live, query), round).toEqual([liveOne]);
      }
      await catchUp();
    }
  });
});

describe('the search matches what the live rows match, whatever the indexer has passed', () => {
  it('for q with every filter, every page, with none, some and all of the events indexed', async () => {
    await catchUp();
    const { api, token } = await server.tenant({ plan: 'studio' });
    const ids: string[] = [];
    for (let i = 0; i < 24; i++) {
      const { data } = await api.POST('/clients', {
        body: {
          name: `${i % 3 === 0 ? 'Hyperion' : 'Tethys'} ${i}`,
          contactName: i % 4 === 0 ? 'Dr Hyperion' : null,
          email: i % 5 === 0 ? 'same@hyperion.test' : `c${i}@moons.test`,
          taxNumber: i % 2 === 0 ? 'EVEN' : 'ODD',
        },
      });
      ids.push(data!.data.id);
    }
    const since = new Date().toISOString();
    await waitForHorizon();
    await indexNextBatch(server.database.db, 10); // some of them indexed
    // Changes after: renamed into and out of the match, deleted, restored.
    for (const [i, body] of [
      [1, { name: 'Hyperion renamed' }],
      [3, { name: 'Tethys renamed' }],
      [4, { contactName: null }],
      [10, { email: 'same@hyperion.test' }],
    ] as const)
      await api.PATCH('/clients/{id}', { params: { path: { id: ids[i]! } }, body });
    for (const i of [6, 7, 12]) await api.DELETE('/clients/{id}', { params: { path: { id: ids[i]! } } });
    await api.POST('/clients/{id}/restore', { params: { path: { id: ids[12]! } } });

    const filters: Partial<ClientListFilter>[] = [
      { search: 'hyperion' },
      { search: 'hyperion', deleted: 'include' },
      { search: 'hyperion', deleted: 'only' },
      { search: 'hyperion', updatedSince: since },
      { search: 'hyperion', taxNumber: 'EVEN' },
      { email: 'same@hyperion.test' },
      { email: 'same@hyperion.test', search: 'hyperion', deleted: 'include' },
      { search: 'renamed' },
    ];
    const expected = async (filter: Partial<ClientListFilter>) => {
      let query = server.database.db.selectFrom('clients').select('id').where('org_id', '=', token.orgId).where('env', '=', token.env);
      const deleted = filter.deleted ?? 'exclude';
      if (deleted === 'exclude') query = query.where('deleted_at', 'is', null);
      if (deleted === 'only') query = query.where('deleted_at', 'is not', null);
      if (filter.search) {
        const p = `%${filter.search}%`;
        query = query.where((eb) =>
          eb.or([eb('name', 'ilike', p), eb('contact_name', 'ilike', p), eb('email', 'ilike', p), eb('billing_email', 'ilike', p)]),
        );
      }
      if (filter.email) query = query.where('email', '=', filter.email);
      if (filter.taxNumber) query = query.where('tax_number', '=', filter.taxNumber);
      if (filter.updatedSince) query = query.where(sql<boolean>`updated_at >= ${filter.updatedSince}::timestamptz`);
      return (await query.orderBy('created_at', 'desc').orderBy('id', 'desc').execute()).map((r) => r.id);
    };
    /** Every page of `limit`, walked by the list's own query. */
    const walked = async (filter: Partial<ClientListFilter>, limit: number) => {
      const seen: string[] = [];
      let after: ClientListFilter['after'];
      for (;;) {
        const rows = await listClientRows(server.database.db, token, { limit: limit + 1, deleted: 'exclude', ...filter, after });
        seen.push(...rows.slice(0, limit).map((r) => r.id));
        if (rows.length <= limit) return seen;
        const last = rows[limit - 1]!;
        after = { at: last.position, id: last.id };
      }
    };
    const check = async (state: string) => {
      for (const filter of filters) {
        const want = await expected(filter);
        expect(want.length, `${JSON.stringify(filter)} finds something`).toBeGreaterThan(
          filter.deleted === 'only' || filter.updatedSince ? 0 : 1,
        );
        for (const limit of [1, 2, 5, 100])
          expect(await walked(filter, limit), `${state} ${JSON.stringify(filter)} limit ${limit}`).toEqual(want);
      }
    };
    await check('partly indexed');
    await catchUp();
    await check('all indexed');
    // The search table emptied of this tenant's rows and the position moved back past its events:
    // everything is read through the tail.
    const { rows } = await sql<{ txid: string; seq: string }>`
      select txid::text, seq::text from events where org_id = ${token.orgId} order by txid, seq limit 1`.execute(server.database.db);
    const before = await position();
    await sql`delete from client_search where org_id = ${token.orgId}`.execute(server.database.db);
    await sql`update client_search_position set txid = ${rows[0]!.txid}::xid8, seq = ${rows[0]!.seq}::bigint - 1`.execute(
      server.database.db,
    );
    await check('nothing indexed');
    await catchUp();
    expect(await position()).toEqual(before);
    await check('indexed again');
  });
});

describe('the search statement', () => {
  it("finds a term in one field, never across two fields' boundary in the joined text its trigram index holds", async () => {
    const { api, token } = await server.tenant({ plan: 'studio' });
    const { data } = await api.POST('/clients', {
      body: { name: 'Boundary Works Ltd', contactName: 'Ada Lovelace', email: 'ada@boundary.test', billingEmail: 'ap@boundary.test' },
    });
    const id = data!.data.id;
    const separator = '\u001f';
    // The index's text joins the fields with U+001F: these terms match it, across a boundary ...
    const across = [`Ltd${separator}Ada`, `Lovelace${separator}ada@bound`, `boundary.test${separator}ap@`];
    const within = ['works ltd', 'ADA LOVE', 'ada@boundary', 'ap@boundary.test'];
    for (const state of ['in the tail', 'indexed']) {
      if (state === 'indexed') await catchUp();
      for (const q of across) {
        expect(await search(api, { q }), `${state}: ${JSON.stringify(q)}`).toEqual([]);
        // ... and the query level agrees (the HTTP layer trims q; the statement is tested as it is).
        expect(await listClientRows(server.database.db, token, { limit: 10, deleted: 'exclude', search: q }), state).toEqual([]);
      }
      for (const q of within) expect(await search(api, { q }), `${state}: ${q}`).toEqual([id]);
    }
    const joined = await sql<{ text: string }>`
      select name || E'\\x1f' || contact_name || E'\\x1f' || email || E'\\x1f' || billing_email as text
      from client_search where client_id = ${id}`.execute(server.database.db);
    // The terms above do cross the indexed text's boundaries (so the test would catch a search of the joined text alone).
    for (const q of across) expect(joined.rows[0]!.text.toLowerCase()).toContain(q.toLowerCase());
  });

  it('works out the page once, whatever the statistics say (a tenant grown since the last ANALYZE)', async () => {
    await catchUp();
    const { api, token } = await server.tenant({ plan: 'studio' });
    // Statistics taken while the tenant had one client, then 1,500 more, none analysed since: what
    // a new tenant's first minutes look like before autovacuum, when the planner once ran the
    // page's matches again for every row of the tenant it read (54 s for one search).
    await api.POST('/clients', { body: { name: 'First Acme Ltd' } });
    await catchUp();
    await sql`analyze clients`.execute(server.database.db);
    await sql`analyze client_search`.execute(server.database.db);
    await sql`analyze events`.execute(server.database.db);
    await sql`
      insert into clients (org_id, env, name, created_at, updated_at)
      select ${token.orgId}, 'test', 'Client ' || i || case when i % 7 = 0 then ' Acme Ltd' else '' end,
             now() - i * interval '1 second', now() - i * interval '1 second'
      from generate_series(1, 1500) as i`.execute(server.database.db);
    await copyClientsIntoSearch(server.database.db);
    // A tail: changes the indexer has not passed.
    for (let i = 0; i < 5; i++) await api.POST('/clients', { body: { name: `Tail ${i} Acme Ltd` } });
    const query = listClientRowsQuery(server.database.db, token, { limit: 26, deleted: 'exclude', search: 'acme ltd' });
    const compiled = query.compile();
    const { rows } = await server.database.db.executeQuery<Record<string, unknown>>({
      ...compiled,
      sql: `explain (analyze, format json) ${compiled.sql}`,
    });
    // Every part that finds the matches (the indexed rows, the tail's lookups, their union) runs once.
    const nodes = planNodes(rows);
    const finding = nodes.filter((node) => node['Node Type'] === 'Subquery Scan' && ['indexed', 'fresh'].includes(node.Alias ?? ''));
    expect(finding.length).toBeGreaterThan(0);
    for (const node of finding) expect(node['Actual Loops'], `${node['Node Type']} on ${node.Alias}`).toBe(1);
    // Every client it reads (the tail's, the page's) is found by its key: with the tenant's columns
    // as index conditions the planner walked the tenant's rows in a list index for each one.
    expectOnlyKeyLookups(nodes);
    expect((await listClientRows(server.database.db, token, { limit: 26, deleted: 'exclude', search: 'acme ltd' })).length).toBe(26);

    // The read by id too (GET /clients/{id}, the prepared statement every read runs).
    const byId = preparedStatements.get('client_by_id')!;
    const someone = await sql<{ id: string }>`select id from clients where org_id = ${token.orgId} offset 700 limit 1`.execute(
      server.database.db,
    );
    const values: Record<string, unknown> = { id: someone.rows[0]!.id, orgId: token.orgId, env: 'test' };
    const read = await server.database.db.executeQuery<Record<string, unknown>>(
      CompiledQuery.raw(
        `explain (analyze, format json) ${byId.text}`,
        byId.parameters.map((name) => values[name]),
      ),
    );
    expectOnlyKeyLookups(planNodes(read.rows));
  });
});

describe('the indexer', () => {
  it('works in batches, one statement each, and goes on after a restart from where it stopped', async () => {
    await catchUp();
    const { api } = await server.tenant({ plan: 'studio' });
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push((await api.POST('/clients', { body: { name: `Batch ${i}` } })).data!.data.id);
    await waitForHorizon();
    const first = await indexNextBatch(server.database.db, 3);
    expect(first).toEqual({ events: 3, changed: 3 });
    expect((await Promise.all(ids.map(indexed))).filter(Boolean)).toHaveLength(3);
    const stoppedAt = await position();

    // A new indexer (a restarted process) starts from the stored position, in batches of 3.
    const indexer = startSearchIndexer({
      db: server.database.db,
      logger: { error: () => {}, debug: () => {} },
      intervalMs: 10,
      batchSize: 3,
    });
    try {
      await expect.poll(async () => (await Promise.all(ids.map(indexed))).every(Boolean), { timeout: 10_000 }).toBe(true);
    } finally {
      await indexer.stop();
    }
    expect(await position()).not.toEqual(stoppedAt);
    // Caught up: nothing more to read; indexing the same events again would change nothing.
    expect(await indexNextBatch(server.database.db, 3)).toEqual({ events: 0, changed: 0 });
  });

  it("merges each batch's trigram entries into the indexes in bulk: no pending list outlives a batch", async () => {
    await catchUp();
    const db = server.database.db;
    const gin = await sql<{ index: string; options: string[] | null }>`
      select c.relname as index, c.reloptions as options
      from pg_index i join pg_class c on c.oid = i.indexrelid join pg_am am on am.oid = c.relam
      where i.indrelid = 'client_search'::regclass and am.amname = 'gin' order by c.relname`.execute(db);
    expect(gin.rows.map((row) => row.index)).toEqual(['client_search_text_trgm_idx']);
    // The batch's insert puts its entries in each index's pending list (cheap), ...
    for (const row of gin.rows) expect(row.options, row.index).toContain('fastupdate=on');
    const { api } = await server.tenant({ plan: 'studio' });
    for (let i = 0; i < 20; i++) {
      const body = {
        name: `Pending ${i} Ltd`,
        contactName: `Ada ${i}`,
        email: `pending${i}@example.com`,
        billingEmail: `ap${i}@example.com`,
      };
      expect((await api.POST('/clients', { body })).response.status).toBe(201);
    }
    await waitForHorizon();
    expect(await indexNextBatch(db, 100)).toEqual({ events: 20, changed: 20 });
    // ... and the batch merged them into the indexes before it ended: nothing left for a search to
    // read through (gin_clean_pending_list answers the pages it had to merge).
    for (const { index } of gin.rows) {
      const { rows } = await sql<{ pages: number | string }>`select gin_clean_pending_list(${index}::regclass) as pages`.execute(db);
      expect(Number(rows[0]!.pages), index).toBe(0);
    }
    expect(await search(api, { q: 'pending 7 ltd' })).toHaveLength(1);
  });

  it('analyses the search table once it has written enough rows, so that a grown tenant is planned as it is', async () => {
    await catchUp();
    const db = server.database.db;
    const analysedRows = async () =>
      Number(
        (
          await sql<{
            rows: number | string;
          }>`select reltuples::bigint as rows from pg_class where oid = 'client_search'::regclass`.execute(db)
        ).rows[0]!.rows,
      );
    const tableRows = async () => Number((await sql<{ n: string }>`select count(*) as n from client_search`.execute(db)).rows[0]!.n);
    await sql`analyze client_search`.execute(db);
    const { api } = await server.tenant({ plan: 'studio' });
    for (let i = 0; i < 8; i++) expect((await api.POST('/clients', { body: { name: `Analysed ${i}` } })).response.status).toBe(201);
    await waitForHorizon();
    expect(await analysedRows()).toBe(await tableRows());
    const indexer = startSearchIndexer({
      db,
      logger: { error: () => {}, debug: () => {} },
      intervalMs: 10,
      batchSize: 3,
      analyzeAfterRows: 5,
    });
    try {
      // Its statistics counted the rows before the 8; after the indexer has written 5 or more it analyses.
      await expect.poll(tableRows, { timeout: 10_000 }).toBeGreaterThanOrEqual((await analysedRows()) + 8);
      await expect.poll(async () => (await analysedRows()) >= (await tableRows()) - 3, { timeout: 10_000 }).toBe(true);
    } finally {
      await indexer.stop();
    }
  });

  it('reads only the events after its position, however long the feed behind it', async () => {
    const { token } = await server.tenant({ plan: 'studio' });
    // 300 events behind the position (the feed keeps 30 days of them), then 3 after it.
    await sql`insert into events (org_id, env, id, type, created_at, data)
      select ${token.orgId}, 'test', gen_random_uuid(), 'client.created', now(), json_build_object('object', json_build_object('id', gen_random_uuid()))
      from generate_series(1, 300)`.execute(server.database.db);
    await catchUp();
    const { api } = await server.tenant({ plan: 'studio' });
    for (let i = 0; i < 3; i++) await api.POST('/clients', { body: { name: `After the position ${i}` } });
    await waitForHorizon();
    const compiled = nextBatchStatement(2).compile(server.database.db);
    const { rows } = await server.database.db.executeQuery<Record<string, unknown>>({
      ...compiled,
      sql: `explain (analyze, format json) ${compiled.sql}`,
    });
    // Joined to the position as a table, the feed's index was read from its start (every event of
    // the 30 days) and the position applied as a filter after: hundreds of rows here.
    const reads = planNodes(rows).filter((node) => node['Relation Name'] === 'events');
    expect(reads.length).toBeGreaterThan(0);
    for (const node of reads) expect(node['Actual Rows'] * node['Actual Loops'], node['Node Type']).toBeLessThanOrEqual(2);
    // client_search is read only for a client gone for good (none here), never walked per client.
    const searchReads = planNodes(rows).filter((node) => node['Relation Name'] === 'client_search' && node['Node Type'] !== 'ModifyTable');
    for (const node of searchReads) expect(node['Actual Loops'], `${node['Node Type']} on client_search`).toBe(0);
    expect((await indexNextBatch(server.database.db, 10))?.events).toBe(1);
  });

  it("takes each event's client from its object_id column, and from its JSON only for an event written before the column", async () => {
    await catchUp();
    const { api, token } = await server.tenant({ plan: 'studio' });
    // What the service writes: every event carries its object's id as a column.
    const created = (await api.POST('/clients', { body: { name: 'Column of its own' } })).data!.data.id;
    const { rows: written } = await sql<{ object_id: string | null }>`
      select object_id from events where org_id = ${token.orgId} and type = 'client.created'`.execute(server.database.db);
    expect(written).toEqual([{ object_id: created }]);
    // Two clients written without events (as an import would), then an event for each by hand: one
    // names its client only in the column (its JSON holds no id), one only in its JSON (an event from
    // before the column).
    const [byColumn, byJson] = ['00000000-0000-4000-8000-00000000c011', '00000000-0000-4000-8000-0000000050a1'];
    await server.database.db
      .insertInto('clients')
      .values([byColumn, byJson].map((id, i) => ({ id, org_id: token.orgId, env: token.env, name: `Column of its own ${i}` })))
      .execute();
    await sql`insert into events (org_id, env, id, type, created_at, data, object_id) values
      (${token.orgId}, 'test', gen_random_uuid(), 'client.updated', now(), '{"object":{}}', ${byColumn}),
      (${token.orgId}, 'test', gen_random_uuid(), 'client.updated', now(), json_build_object('object', json_build_object('id', ${byJson}::uuid)), null)`.execute(
      server.database.db,
    );
    // The search's tail finds both before the indexer has passed them, and the indexer indexes both.
    expect((await search(api, { q: 'column of its own' })).sort()).toEqual([created, byColumn, byJson].sort());
    await catchUp();
    expect(await indexed(byColumn)).toMatchObject({ name: 'Column of its own 0' });
    expect(await indexed(byJson)).toMatchObject({ name: 'Column of its own 1' });
  });

  it('passes over an event whose object id is not a UUID, instead of failing on it for ever', async () => {
    await catchUp();
    const { api, token } = await server.tenant({ plan: 'studio' });
    // A hand-written event (an import, a repair) between two real ones.
    const before = (await api.POST('/clients', { body: { name: 'Before the odd event' } })).data!.data.id;
    await sql`insert into events (org_id, env, id, type, created_at, data)
      values (${token.orgId}, 'test', gen_random_uuid(), 'client.created', now(), '{"object":{"id":"not-a-uuid"}}')`.execute(
      server.database.db,
    );
    const after = (await api.POST('/clients', { body: { name: 'After the odd event' } })).data!.data.id;
    // Searches still answer while it waits in the tail…
    expect((await search(api, { q: 'odd event' })).sort()).toEqual([before, after].sort());
    // …and the indexer passes it, indexing both real ones.
    await catchUp();
    expect(await indexed(before)).toMatchObject({ name: 'Before the odd event' });
    expect(await indexed(after)).toMatchObject({ name: 'After the odd event' });
    expect((await search(api, { q: 'odd event' })).sort()).toEqual([before, after].sort());
  });

  it('leaves a batch to the process that holds it (another indexer; PostgreSQL, where processes share the database)', async () => {
    const { api } = await server.tenant({ plan: 'studio' });
    await api.POST('/clients', { body: { name: 'Held' } });
    await waitForHorizon();
    // The embedded database is one process's: no other indexer can hold it there.
    if (!usingPostgres) return expect((await indexNextBatch(server.database.db, 100))?.events).toBe(1);
    const connection = await server.database.pool!.connect();
    try {
      await connection.query('begin');
      await connection.query(`select pg_advisory_xact_lock(hashtextextended('client_search_indexer', 0))`);
      expect(await indexNextBatch(server.database.db, 100)).toBeUndefined();
      await connection.query('rollback');
    } finally {
      connection.release();
    }
    expect((await indexNextBatch(server.database.db, 100))?.events).toBeGreaterThan(0);
  });

  it('shows its lag in the metrics: rising while stopped, back to zero once caught up', async () => {
    await catchUp();
    const metrics = createMetrics();
    metrics.watchSearchIndex(() => searchIndexLag(server.database.db));
    const scrape = async () => {
      const text = await metrics.registry.metrics();
      const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
      return { seconds: value('search_index_lag_seconds'), events: value('search_index_lag_events') };
    };
    expect(await scrape()).toEqual({ seconds: 0, events: 0 });
    const { api } = await server.tenant({ plan: 'studio' });
    for (let i = 0; i < 3; i++) await api.POST('/clients', { body: { name: `Lagging ${i}` } });
    await new Promise((resolve) => setTimeout(resolve, 20));
    const behind = await scrape();
    expect(behind.events).toBe(3);
    expect(behind.seconds).toBeGreaterThan(0);
    await catchUp();
    expect(await scrape()).toEqual({ seconds: 0, events: 0 });
  });
});

describe('the migration', () => {
  it('runs again safely, and fills the search table from the clients', async () => {
    await catchUp();
    const { token } = await server.tenant({ plan: 'studio' });
    // A row written without an event (as a bulk load would): only a copy puts it in the search table.
    const { id } = await server.database.db
      .insertInto('clients')
      .values({ org_id: token.orgId, env: token.env, name: 'Loaded Directly', created_at: new Date(), updated_at: new Date() })
      .returning('id')
      .executeTakeFirstOrThrow();
    expect(await listClientRows(server.database.db, token, { limit: 10, deleted: 'exclude', search: 'loaded' })).toEqual([]);
    await clientSearchMigration.up(server.database.db as never);
    expect((await listClientRows(server.database.db, token, { limit: 10, deleted: 'exclude', search: 'loaded' })).map((r) => r.id)).toEqual(
      [id],
    );
    await copyClientsIntoSearch(server.database.db);
    expect(await indexed(id)).toMatchObject({ name: 'Loaded Directly' });
    const { rows } = await sql<{ indexname: string }>`select indexname from pg_indexes where tablename = 'clients'`.execute(
      server.database.db,
    );
    expect(rows.map((r) => r.indexname).filter((name) => name.includes('trgm'))).toEqual([]);
  });
});
