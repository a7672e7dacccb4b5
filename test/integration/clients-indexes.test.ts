/**
 * The list and search indexes exist on both databases (PGlite loads its contrib pg_trgm), and the
 * planner uses them: the first page reads 26 index entries, a rare `q` term goes through the
 * search table's trigram index rather than scanning the organisation's rows, an exact `email`
 * through the search table's b-tree on it, and `clients` itself has no trigram index (a create or
 * update pays none: server/clients/client-search.queries.ts).
 */
import { type Kysely, sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { copyClientsIntoSearch } from '../../server/clients/client-search.queries.js';
import { listClientRowsQuery, type ClientListFilter } from '../../server/clients/clients.queries.js';
import type { Database } from '../../server/db/schema.js';
import { mintTokenForOrganisation, type MintedToken } from '../../server/tokens/tokens.service.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

let database: TestDatabase;
let tenant: MintedToken;

beforeAll(async () => {
  database = await createTestDatabase();
  tenant = await mintTokenForOrganisation(database.db, { orgName: 'Indexed', plan: 'studio' });
  await sql`
    insert into clients (org_id, env, name, contact_name, email, created_at, updated_at)
    select ${tenant.orgId}, 'test', 'Client ' || substr(md5(i::text), 1, 12), 'Contact ' || i, 'c' || i || '@example.test',
           timestamptz '2025-01-01' + i * interval '1 second', timestamptz '2025-01-01' + i * interval '1 second'
    from generate_series(1, 20000) as i`.execute(database.db);
  // As autovacuum would: statistics, and the GIN pending list merged (until then the planner
  // counts the pending list against the trigram indexes).
  // Rows written without events: copied into the search table as a bulk load would be.
  await copyClientsIntoSearch(database.db);
  await sql`vacuum analyze clients`.execute(database.db);
  await sql`vacuum analyze client_search`.execute(database.db);
});
afterAll(() => database?.close());

async function plan(filter: Partial<ClientListFilter>, db: Kysely<Database> = database.db): Promise<string> {
  const rows = await listClientRowsQuery(db, tenant, { limit: 26, deleted: 'exclude', ...filter }).explain();
  return rows.map((r) => String(r['QUERY PLAN'])).join('\n');
}

class RolledBack extends Error {}

/**
 * The plan the list gets if its own indexes were not there (dropped inside a transaction that is
 * rolled back, scans of whole tables priced out): what a planner could fall back on when
 * statistics older than a tenant make every plan look like one row.
 */
async function planWithout(indexes: string[], filter: Partial<ClientListFilter>, table = 'clients'): Promise<string> {
  let text = '';
  await database.db
    .transaction()
    .execute(async (trx) => {
      for (const index of indexes)
        if (index.endsWith('_pkey')) await sql`alter table ${sql.id(table)} drop constraint ${sql.id(index)}`.execute(trx);
        else await sql`drop index ${sql.id(index)}`.execute(trx);
      await sql`set local enable_seqscan = off`.execute(trx);
      text = await plan(filter, trx);
      throw new RolledBack();
    })
    .catch((error: unknown) => {
      if (!(error instanceof RolledBack)) throw error;
    });
  return text;
}

it('creates the list indexes on clients, and the trigram indexes on the search table only', async () => {
  const { rows } = await sql<{
    indexname: string;
  }>`select indexname from pg_indexes where tablename = 'clients' order by indexname`.execute(database.db);
  expect(rows.map((r) => r.indexname)).toEqual(
    expect.arrayContaining(['clients_active_list_idx', 'clients_deleted_list_idx', 'clients_list_idx']),
  );
  expect(rows.map((r) => r.indexname)).not.toContain('clients_active_idx');
  expect(rows.map((r) => r.indexname).filter((name) => name.includes('trgm'))).toEqual([]);
  const search = await sql<{ indexname: string }>`select indexname from pg_indexes where tablename = 'client_search'`.execute(database.db);
  expect(search.rows.map((r) => r.indexname)).toEqual(
    expect.arrayContaining(['client_search_text_trgm_idx', 'client_search_email_idx', 'client_search_active_list_idx']),
  );
  // One trigram index over the four fields (2026_12_06_0001), not one a field.
  expect(search.rows.map((r) => r.indexname).filter((name) => name.includes('trgm'))).toEqual(['client_search_text_trgm_idx']);
});

it('pages active clients through the partial list index', async () => {
  expect(await plan({})).toMatch(/Index Scan using clients_active_list_idx/);
  expect(await plan({ deleted: 'only' })).toMatch(/clients_deleted_list_idx/);
});

it('answers a rare q through the trigram index, not by scanning', async () => {
  const rare = (await database.db.selectFrom('clients').select('name').offset(12345).limit(1).executeTakeFirstOrThrow()).name.slice(-8);
  const text = await plan({ search: rare });
  expect(text).toMatch(/client_search_text_trgm_idx/);
  // The tail (clients changed since the indexer's position) through the feed's index, each client by its key.
  expect(text).toMatch(/Index Scan using events_feed_idx/);
  // No scan of a table with a row per client or event (the position's table has one row).
  expect(text).not.toMatch(/Seq Scan on (clients|client_search|events)\b/);
});

it("pages through the list's own indexes only: no index of a filter can serve a page, whatever the statistics", async () => {
  // With stale statistics the first page was once read through the updatedSince filter's index
  // (every row of the tenant, then a sort): 2026_12_06_0002. Without the list's indexes, nothing
  // else that starts with the tenant's columns may serve it.
  const first = await planWithout(['clients_active_list_idx', 'clients_list_idx'], {});
  expect(first).not.toMatch(/clients_updated_idx/);
  expect(first).toMatch(/Seq Scan on clients\b/);
  // The filter keeps its index: the newest 1% of the tenant's clients by updated_at.
  expect(await plan({ updatedSince: '2025-01-01T05:30:00Z' })).toMatch(/clients_updated_idx/);
  // A search's walk of the tenant's rows: never through the e-mail's b-tree, which only `email` may
  // use. (The table's primary key also starts with the tenant's columns; it is dropped here too,
  // and the search indexer's ANALYZE keeps the planner from it: search-indexer.ts.)
  const search = await planWithout(
    ['client_search_active_list_idx', 'client_search_list_idx', 'client_search_text_trgm_idx', 'client_search_pkey'],
    { search: 'Contact 1' },
    'client_search',
  );
  expect(search).not.toMatch(/client_search_email_idx/);
  expect(search).toMatch(/Seq Scan on client_search s\b/);
});

it("answers an exact email through the search table's b-tree on it, not through the tenant's rows", async () => {
  const text = await plan({ email: 'c12345@example.test' });
  expect(text).toMatch(/client_search_email_idx/);
  expect(text).not.toMatch(/Seq Scan on (clients|client_search|events)\b/);
});
