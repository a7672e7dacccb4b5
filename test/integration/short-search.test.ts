/**
 * A `q` without three letters or digits in a row has no trigram the search indexes could look up:
 * on an organisation of 24,000 clients each request examines at most SHORT_SEARCH_EXAMINED of
 * them (the plan's own row counts say so), answers the matches among those with a `nextCursor`
 * past the last client examined, and a walk that follows `nextCursor` to its end finds every
 * match exactly once, in the list's order, whatever the filters. Both databases.
 */
import { copyClientsIntoSearch } from '../../server/clients/client-search.queries.js';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClientResource, ClientsApi, paths } from '../../client/index.js';
import { encodeCursor } from '../../server/clients/clients.cursor.js';
import {
  type ClientListFilter,
  listClientRowsExaminingQuery,
  listClientRowsQuery,
  searchUsesIndex,
} from '../../server/clients/clients.queries.js';
import { listClients, SHORT_SEARCH_EXAMINED } from '../../server/clients/clients.service.js';
import { primaryReads } from '../../server/db/reads.js';
import type { MintedToken } from '../../server/tokens/tokens.service.js';
import { startTestServer, type TestServer } from '../support/server.js';

type ListQuery = NonNullable<paths['/clients']['get']['parameters']['query']>;

const CLIENTS = 24_000;
let server: TestServer;
let api: ClientsApi;
let tenant: MintedToken;

/**
 * `count` clients in one statement: client i is created i seconds into 2025; every 1,500th is an
 * "HP" (in its name, or every 1,000th plus 7 in its contact's), every 40th is deleted, and every
 * third was changed in 2026.
 */
async function seedClients(count: number): Promise<void> {
  await sql`
    insert into clients (org_id, env, name, contact_name, email, created_at, updated_at, deleted_at)
    select ${tenant.orgId}, ${tenant.env},
           case when i % 1500 = 0 then 'HP Inc ' || i else 'Client ' || i end,
           case when i % 1000 = 7 then 'Dr. Shp ' || i else 'Contact ' || i end,
           'c' || i || '@example.test',
           timestamptz '2025-01-01' + i * interval '1 second',
           case when i % 3 = 0 then timestamptz '2026-01-01' + i * interval '1 second' else timestamptz '2025-01-01' + i * interval '1 second' end,
           case when i % 40 = 0 then timestamptz '2026-06-01' end
    from generate_series(1, ${count}) as i`.execute(server.database.db);
  // Written without events: into the search table (longer terms are looked up there) as a bulk load would be.
  await copyClientsIntoSearch(server.database.db);
  await sql`analyze clients`.execute(server.database.db);
}

beforeAll(async () => {
  server = await startTestServer();
  const made = await server.tenant({ plan: 'studio' });
  ({ api } = made);
  tenant = made.token;
  await seedClients(CLIENTS);
}, 120_000);
afterAll(() => server?.close());

/** What the database itself finds for a search, in the list's order: the ids every walk must give. */
async function expectedIds(q: string, filter: { deleted?: 'exclude' | 'include' | 'only'; updatedSince?: string } = {}) {
  let query = server.database.db
    .selectFrom('clients')
    .select('id')
    .where('org_id', '=', tenant.orgId)
    .where('env', '=', tenant.env)
    .where((eb) => eb.or(['name', 'contact_name', 'email', 'billing_email'].map((column) => eb(column as 'name', 'ilike', `%${q}%`))));
  const deleted = filter.deleted ?? 'exclude';
  if (deleted === 'exclude') query = query.where('deleted_at', 'is', null);
  if (deleted === 'only') query = query.where('deleted_at', 'is not', null);
  if (filter.updatedSince) query = query.where('updated_at', '>=', new Date(filter.updatedSince));
  return (await query.orderBy('created_at', 'desc').orderBy('id', 'desc').execute()).map((row) => row.id);
}

/** Every page, following nextCursor until it is null. */
async function walk(query: ListQuery) {
  const seen: ClientResource[] = [];
  const sizes: number[] = [];
  let cursor: string | undefined;
  do {
    const { data, error, response } = await api.GET('/clients', { params: { query: { ...query, ...(cursor && { cursor }) } } });
    expect(error, JSON.stringify(error)).toBeUndefined();
    expect(response.status).toBe(200);
    seen.push(...data!.data);
    sizes.push(data!.data.length);
    cursor = data!.nextCursor ?? undefined;
  } while (cursor && sizes.length < 1_000);
  return { ids: seen.map((client) => client.id), sizes };
}

type PlanNode = {
  'Node Type': string;
  'Relation Name'?: string;
  'Actual Rows': number;
  'Actual Loops': number;
  'Rows Removed by Filter'?: number;
  Plans?: PlanNode[];
};

/** Each node of the plan PostgreSQL ran for this statement. */
async function executedPlan(query: { explain(format: 'json', options: ReturnType<typeof sql>): Promise<Record<string, unknown>[]> }) {
  const [row] = await query.explain('json', sql`analyze`);
  const document = row!['QUERY PLAN'];
  const [root] = (typeof document === 'string' ? JSON.parse(document) : document) as { Plan: PlanNode }[];
  const nodes: PlanNode[] = [];
  const visit = (node: PlanNode) => {
    nodes.push(node);
    for (const child of node.Plans ?? []) visit(child);
  };
  visit(root!.Plan);
  return nodes;
}

/** Rows of `clients` the statement looked at: those its scans returned, and those their filters dropped. */
const rowsExamined = (nodes: PlanNode[]) =>
  nodes
    .filter((node) => node['Relation Name'] === 'clients')
    .reduce((sum, node) => sum + (node['Actual Rows'] + (node['Rows Removed by Filter'] ?? 0)) * node['Actual Loops'], 0);

describe('a short q on a large organisation', () => {
  it('is told apart by its letters and digits: three in a row can use the indexes', () => {
    for (const short of ['q', 'hp', 'HP', '7', '@b', 'a.b', 'a b', '...', '%_', 'é1']) expect(searchUsesIndex(short), short).toBe(false);
    for (const long of ['acme', 'hp1', 'abc', '@billing.test', 'x 123', 'été', '日本語']) expect(searchUsesIndex(long), long).toBe(true);
  });

  it('examines at most the bound of rows per request, where the same term without the bound read every client', async () => {
    const filter: ClientListFilter = { limit: 26, deleted: 'exclude', search: 'qq' };
    const deeper = { ...filter, after: { at: '2025-01-01T03:00:00.000000Z', id: 'ffffffff-ffff-4fff-bfff-ffffffffffff' } };
    for (const page of [filter, deeper]) {
      const examined = rowsExamined(
        await executedPlan(listClientRowsExaminingQuery(server.database.db, tenant, page, SHORT_SEARCH_EXAMINED)),
      );
      // The window numbering the rows may read one ahead of the limit.
      expect(examined).toBeGreaterThanOrEqual(SHORT_SEARCH_EXAMINED);
      expect(examined).toBeLessThanOrEqual(SHORT_SEARCH_EXAMINED + 1);
    }
    const active = CLIENTS - CLIENTS / 40;
    expect(rowsExamined(await executedPlan(listClientRowsQuery(server.database.db, tenant, filter)))).toBeGreaterThanOrEqual(active);
  });

  it('answers a term that matches nothing with empty pages that move on, and ends once every client was examined', async () => {
    const { ids, sizes } = await walk({ q: 'qq', limit: 100 });
    expect(ids).toEqual([]);
    const active = CLIENTS - CLIENTS / 40;
    expect(sizes.length).toBe(Math.ceil(active / SHORT_SEARCH_EXAMINED));
  });

  it.each<[string, ListQuery]>([
    ['hp, 3 at a time', { q: 'hp', limit: 3 }],
    ['HP, 25 at a time (case ignored)', { q: 'HP' }],
    ['hp with deleted=include', { q: 'hp', limit: 4, deleted: 'include' }],
    ['hp with deleted=only', { q: 'hp', deleted: 'only' }],
    ['hp changed since 2026', { q: 'hp', limit: 5, updatedSince: '2026-01-01T00:00:00Z' }],
    ['a one-character term that matches often', { q: '9', limit: 100 }],
  ])('finds every match exactly once, in order, following nextCursor: %s', async (_label, query) => {
    const { ids, sizes } = await walk(query);
    const expected = await expectedIds(query.q!, { deleted: query.deleted, updatedSince: query.updatedSince });
    expect(expected.length).toBeGreaterThan(0);
    expect(ids).toEqual(expected);
    expect(sizes.every((size) => size <= (query.limit ?? 25))).toBe(true);
  });

  it('may answer a page with fewer than limit clients and a nextCursor: the matches among the clients examined', async () => {
    const { sizes } = await walk({ q: 'hp', limit: 3 });
    const shortPages = sizes.slice(0, -1).filter((size) => size < 3);
    expect(shortPages.length).toBeGreaterThan(0);
    // Its nextCursor continues from the last client examined, not from the last match.
    const first = await api.GET('/clients', { params: { query: { q: 'zz', limit: 10 } } });
    const newest = await server.database.db
      .selectFrom('clients')
      .select(['id', sql<string>`to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`.as('position')])
      .where('org_id', '=', tenant.orgId)
      .where('deleted_at', 'is', null)
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .offset(SHORT_SEARCH_EXAMINED - 1)
      .limit(1)
      .executeTakeFirstOrThrow();
    expect(first.data).toEqual({ data: [], nextCursor: encodeCursor({ at: newest.position, id: newest.id }) });
  });

  it('leaves a term the indexes can look up as it was: full pages', async () => {
    const { sizes } = await walk({ q: 'HP Inc', limit: 3 });
    expect(sizes.slice(0, -1).every((size) => size === 3)).toBe(true);
  });
});

describe('the walk of a short q, at every bound and page size', () => {
  it('finds every match exactly once, in order, wherever the pages and the bounds fall', async () => {
    const small = await server.tenant({ plan: 'studio' });
    const id = (i: number) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
    // 30 clients, newest last; the matches bunched and spread: at the ends, in a run, alone.
    const matching = new Set([1, 2, 3, 9, 15, 16, 17, 18, 19, 24, 30]);
    await server.database.db
      .insertInto('clients')
      .values(
        Array.from({ length: 30 }, (_, k) => ({
          id: id(k + 1),
          org_id: small.token.orgId,
          env: small.token.env,
          name: matching.has(k + 1) ? `HP ${k + 1}` : `Client ${k + 1}`,
          created_at: new Date(Date.UTC(2025, 0, 1, 0, 0, k + 1)),
          updated_at: new Date(Date.UTC(2025, 0, 1, 0, 0, k + 1)),
        })),
      )
      .execute();
    const expected = [...matching].sort((a, b) => b - a).map(id);
    for (const bound of [1, 2, 3, 4, 5, 7, 10, 29, 30, 31]) {
      for (const limit of [1, 2, 3, 4, 5, 11, 12]) {
        const ids: string[] = [];
        let cursor: string | undefined;
        let requests = 0;
        do {
          const { value: page } = await listClients(
            primaryReads(server.database.db),
            small.token,
            { q: 'hp', limit, ...(cursor && { cursor }) },
            'strong',
            bound,
          );
          expect(page.data.length).toBeLessThanOrEqual(limit);
          ids.push(...page.data.map((client) => client.id));
          cursor = page.nextCursor ?? undefined;
          requests++;
        } while (cursor && requests < 100);
        expect(ids, `bound ${bound}, limit ${limit}`).toEqual(expected);
      }
    }
  });
});
