/**
 * `npm run bench:list`: how fast GET /clients answers for one organisation with 100,000 clients,
 * on PostgreSQL, over HTTP against the real app. Not a test: it prints median and p99 latency of
 * the first page, a deep page (90,000 rows in), and `q` searches (a common and a rare term, and
 * short ones that no index can narrow, which examine a bounded number of rows per request), and
 * what a whole walk of a short search that matches nothing costs.
 *
 * Uses DATABASE_URL when set (it must be a database it may fill: the rows stay); otherwise it
 * creates a database on BENCH_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres) and
 * drops it after. BENCH_CLIENTS (default 100000) and BENCH_RUNS (default 300) change the sizes;
 * `--explain` also prints the plan PostgreSQL chooses for each query.
 */
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { sql } from 'kysely';
import pg from 'pg';
import { pino } from 'pino';
import { createClientsApi } from '../client/index.js';
import { createApp } from '../server/app.js';
import { mintTokenForOrganisation } from '../server/tokens/tokens.service.js';
import { encodeCursor } from '../server/clients/clients.cursor.js';
import {
  listClientRowsExaminingQuery,
  listClientRowsQuery,
  searchUsesIndex,
  type ClientListFilter,
} from '../server/clients/clients.queries.js';
import { SHORT_SEARCH_EXAMINED } from '../server/clients/clients.service.js';
import { openDatabase } from '../server/db/database.js';
import { migrateOrThrow } from '../server/db/migrate.js';

const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 100_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 300);
const EXPLAIN = process.argv.includes('--explain');

async function withDatabase<T>(run: (url: string) => Promise<T>): Promise<T> {
  if (process.env.DATABASE_URL) return run(process.env.DATABASE_URL);
  const adminUrl = process.env.BENCH_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const name = `clients_bench_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  try {
    const url = new URL(adminUrl);
    url.pathname = `/${name}`;
    return await run(url.toString());
  } finally {
    await admin.query(`drop database if exists ${name} with (force)`);
    await admin.end();
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

await withDatabase(async (url) => {
  const database = await openDatabase({ databaseUrl: url, poolSize: 10 });
  const { db } = database;
  try {
    await migrateOrThrow(db);
    const token = await mintTokenForOrganisation(db, { orgName: `bench-${randomBytes(4).toString('hex')}`, plan: 'studio' });
    const noise = await mintTokenForOrganisation(db, { orgName: `bench-noise-${randomBytes(4).toString('hex')}`, plan: 'studio' });

    // Set-based seeding: one statement per organisation. One client in eight is a "Globex"; one in
    // fifty is deleted; created_at one second apart, with microseconds, like real rows.
    const seed = (orgId: string, count: number) =>
      sql`
      insert into clients (org_id, env, name, contact_name, email, billing_email, currency, default_rate, created_at, updated_at, deleted_at)
      select ${orgId}, 'test',
             (array['Acme', 'Globex', 'Initech', 'Umbrella', 'Hooli', 'Stark', 'Wayne', 'Wonka'])[1 + i % 8] || ' ' || substr(md5(i::text), 1, 10),
             'Contact ' || substr(md5((i * 7)::text), 1, 12),
             'office' || i || '@' || substr(md5((i * 3)::text), 1, 8) || '.test',
             case when i % 3 = 0 then 'ap' || i || '@billing.test' end,
             'USD', (i % 1000) + 0.5,
             timestamptz '2025-01-01' + i * interval '1 second' + (i % 997) * interval '1 microsecond',
             timestamptz '2025-01-01' + i * interval '1 second',
             case when i % 50 = 0 then timestamptz '2026-01-01' end
      from generate_series(1, ${count}) as i`.execute(db);
    let started = performance.now();
    await seed(token.orgId, CLIENTS);
    await seed(noise.orgId, Math.round(CLIENTS / 10));
    // The steady state autovacuum keeps: statistics, and the GIN pending lists merged.
    await sql`vacuum analyze clients`.execute(db);
    console.log(
      `seeded ${CLIENTS} clients (+${Math.round(CLIENTS / 10)} in another organisation) in ${Math.round(performance.now() - started)} ms`,
    );

    // A deep page: the cursor of the active client 90% of the way down (98% of clients are active).
    const depth = Math.floor(CLIENTS * 0.9);
    const deepRow = await db
      .selectFrom('clients')
      .select(['id', sql<string>`to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`.as('position')])
      .where('org_id', '=', token.orgId)
      .where('env', '=', 'test')
      .where('deleted_at', 'is', null)
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .offset(depth)
      .limit(1)
      .executeTakeFirstOrThrow();
    // A rare term: part of one client's name (a few matches at most).
    const rare = (
      await db
        .selectFrom('clients')
        .select('name')
        .where('org_id', '=', token.orgId)
        .offset(CLIENTS / 2)
        .limit(1)
        .executeTakeFirstOrThrow()
    ).name.slice(-8);

    // Rate limiting and the concurrency limit off, as product.md has it for benchmarks (2,240 requests of one token).
    const { createServer, warmUp } = createApp({ db, logger: pino({ level: 'silent' }), rateLimits: false, concurrencyLimit: false });
    await warmUp();
    const server = createServer().listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const api = createClientsApi({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: token.token });

    const deep = { createdAt: deepRow.position, id: deepRow.id };
    // Each scenario as a request, and as the filter the service makes of it (for --explain).
    const scenarios: { label: string; query: Record<string, string>; filter: Partial<ClientListFilter> }[] = [
      { label: 'first page (limit 25)', query: {}, filter: {} },
      { label: `deep page (${depth.toLocaleString('en')} in)`, query: { cursor: encodeCursor(deep) }, filter: { after: deep } },
      { label: 'q, common ("globex", 1 in 8)', query: { q: 'globex' }, filter: { search: 'globex' } },
      { label: `q, rare ("${rare}")`, query: { q: rare }, filter: { search: rare } },
      { label: 'q, e-mail ("@billing.test", 1 in 3)', query: { q: '@billing.test' }, filter: { search: '@billing.test' } },
      { label: 'first page, deleted=include', query: { deleted: 'include' }, filter: { deleted: 'include' } },
      // Short terms: under 3 letters or digits in a row there is no trigram to look up, so each
      // request examines a bounded number of rows. The worst case matches nothing: pages come back
      // empty, with a nextCursor, until the walk has passed every client.
      { label: 'q, 2 characters, common ("me")', query: { q: 'me' }, filter: { search: 'me' } },
      { label: 'q, 2 characters, no match ("qq")', query: { q: 'qq' }, filter: { search: 'qq' } },
    ];

    console.log(`\n${RUNS} requests each, one at a time, after 20 to warm up (times in ms)\n`);
    console.log(`${'scenario'.padEnd(36)} ${'median'.padStart(8)} ${'p99'.padStart(8)} ${'rows'.padStart(6)}`);
    for (const { label, query } of scenarios) {
      let rows = 0;
      const once = async () => {
        const { data, error } = await api.GET('/clients', { params: { query: query as never } });
        if (error) throw new Error(`${label}: ${JSON.stringify(error)}`);
        rows = data.data.length;
      };
      for (let i = 0; i < 20; i++) await once();
      const times: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        started = performance.now();
        await once();
        times.push(performance.now() - started);
      }
      times.sort((a, b) => a - b);
      console.log(
        `${label.padEnd(36)} ${percentile(times, 50).toFixed(2).padStart(8)} ${percentile(times, 99).toFixed(2).padStart(8)} ${String(rows).padStart(6)}`,
      );
    }

    // A client's whole walk of the worst short search, following nextCursor until it is null.
    const walk = async () => {
      let requests = 0;
      let found = 0;
      let cursor: string | undefined;
      do {
        const { data, error } = await api.GET('/clients', { params: { query: { q: 'qq', limit: 100, ...(cursor && { cursor }) } } });
        if (error) throw new Error(`walk: ${JSON.stringify(error)}`);
        requests++;
        found += data.data.length;
        cursor = data.nextCursor ?? undefined;
      } while (cursor);
      return { requests, found };
    };
    await walk();
    const walks: number[] = [];
    let walked = { requests: 0, found: 0 };
    for (let i = 0; i < 5; i++) {
      started = performance.now();
      walked = await walk();
      walks.push(performance.now() - started);
    }
    walks.sort((a, b) => a - b);
    console.log(
      `\nwhole walk of q "qq" (limit 100): ${walked.requests} requests of at most ${SHORT_SEARCH_EXAMINED} rows examined, ` +
        `${walked.found} found; median of 5 walks ${percentile(walks, 50).toFixed(1)} ms`,
    );

    if (EXPLAIN) {
      for (const { label, filter } of scenarios) {
        const full: ClientListFilter = { limit: 26, deleted: 'exclude', ...filter };
        const query =
          full.search === undefined || searchUsesIndex(full.search)
            ? listClientRowsQuery(db, token, full)
            : listClientRowsExaminingQuery(db, token, full, SHORT_SEARCH_EXAMINED);
        const plan = await query.explain('text', sql`analyze`);
        console.log(`\n${label}\n${plan.map((r) => `  ${String(r['QUERY PLAN'])}`).join('\n')}`);
      }
    }
    server.close();
  } finally {
    await database.close();
  }
});
