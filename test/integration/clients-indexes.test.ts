/**
 * The list and search indexes exist on both databases (PGlite loads its contrib pg_trgm), and the
 * planner uses them: the first page reads 26 index entries, a rare `q` term goes through the
 * search table's trigram indexes rather than scanning the organisation's rows, and `clients` itself
 * has no trigram index (a create or update pays none: server/clients/client-search.queries.ts).
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { copyClientsIntoSearch } from '../../server/clients/client-search.queries.js';
import { listClientRowsQuery, type ClientListFilter } from '../../server/clients/clients.queries.js';
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

async function plan(filter: Partial<ClientListFilter>): Promise<string> {
  const rows = await listClientRowsQuery(database.db, tenant, { limit: 26, deleted: 'exclude', ...filter }).explain();
  return rows.map((r) => String(r['QUERY PLAN'])).join('\n');
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
    expect.arrayContaining([
      'client_search_name_trgm_idx',
      'client_search_contact_name_trgm_idx',
      'client_search_email_trgm_idx',
      'client_search_billing_email_trgm_idx',
      'client_search_active_list_idx',
    ]),
  );
});

it('pages active clients through the partial list index', async () => {
  expect(await plan({})).toMatch(/Index Scan using clients_active_list_idx/);
  expect(await plan({ deleted: 'only' })).toMatch(/clients_deleted_list_idx/);
});

it('answers a rare q through the trigram indexes, not by scanning', async () => {
  const rare = (await database.db.selectFrom('clients').select('name').offset(12345).limit(1).executeTakeFirstOrThrow()).name.slice(-8);
  const text = await plan({ search: rare });
  expect(text).toMatch(/client_search_name_trgm_idx/);
  // The tail (clients changed since the indexer's position) through the feed's index, each client by its key.
  expect(text).toMatch(/Index Scan using events_feed_idx/);
  // No scan of a table with a row per client or event (the position's table has one row).
  expect(text).not.toMatch(/Seq Scan on (clients|client_search|events)\b/);
});
