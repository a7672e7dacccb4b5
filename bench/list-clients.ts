/**
 * `npm run bench:list`: how fast GET /clients answers for one organisation with 100,000 clients
 * (BENCH_CLIENTS; 1,000,000 works too), on PostgreSQL, over HTTP against the real app. Not a test:
 * it prints how long seeding took, then median and p99 latency of the first page, a deep page (90%
 * of the way in), the filters (`deleted`, `updatedSince`) and `q` searches (a common and a rare
 * term, and short ones that no index can narrow, which examine a bounded number of rows per
 * request), the worst of them, and what a whole walk of a short search that matches nothing costs.
 *
 * Seeding is set-based (bench/seed-clients.ts: one `insert … select generate_series` per
 * organisation, nothing held in this process); on a scratch database the table's secondary indexes
 * are dropped for it and rebuilt in bulk after (`--seed-incremental` inserts through them instead).
 *
 * Uses DATABASE_URL when set (it must be a database it may fill: the rows stay); otherwise it
 * creates a database on BENCH_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres) and
 * drops it after. BENCH_CLIENTS (default 100000) and BENCH_RUNS (default 300) change the sizes;
 * BENCH_TAIL (default 1000) clients are then created through the API and left unindexed (no search
 * indexer runs here), and two searches measured again: what a lag of that many changes costs;
 * `--explain` also prints the plan PostgreSQL chooses for each query.
 *
 * `--replica`: on a scratch PostgreSQL 15 primary with a streaming replica of it on this machine
 * (test/support/scratch-postgres.ts, both with the same settings), every scenario is measured with
 * `Read-Consistency: strong` (the primary) and `eventual` (the replica), and then the throughput
 * of the first page and of a search, BENCH_CONNECTIONS (16) at once for BENCH_SECONDS (5) each
 * (autocannon), with where each eventual read was served.
 */
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import autocannon from 'autocannon';
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
import { copyClientsIntoSearch } from '../server/clients/client-search.queries.js';
import { openDatabase } from '../server/db/database.js';
import type { ReadConsistency } from '../server/db/reads.js';
import { migrateOrThrow } from '../server/db/migrate.js';
import { caughtUp, createScratchPostgres } from '../test/support/scratch-postgres.js';
import { seedClients, seedWithIndexesRebuilt } from './seed-clients.js';

const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 100_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 300);
const EXPLAIN = process.argv.includes('--explain');
const REPLICA = process.argv.includes('--replica');
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
/** Clients created through the API, left unindexed, before the tail's two rows (BENCH_TAIL, 1000; 0: none). */
const TAIL = Number(process.env.BENCH_TAIL ?? 1000);
/** Insert through the table's indexes instead of rebuilding them after (always so on a DATABASE_URL of yours). */
const INCREMENTAL = process.argv.includes('--seed-incremental') || (process.env.DATABASE_URL !== undefined && !REPLICA);

/** Where to seed and list: a database, and with --replica a streaming replica of it and a way to wait for it. */
interface Target {
  url: string;
  replicaUrl?: string;
  caughtUp?: () => Promise<void>;
}

/** The same memory for both nodes, enough to keep the clients table and its indexes cached. */
const NODE_CONF = ["shared_buffers = '256MB'", "effective_cache_size = '1GB'", 'max_connections = 100'];

async function withReplica<T>(run: (target: Target) => Promise<T>): Promise<T> {
  const primary = await createScratchPostgres({ conf: NODE_CONF });
  try {
    const standby = await primary.replica({ conf: NODE_CONF });
    try {
      return await run({ url: primary.url(), replicaUrl: standby.url(), caughtUp: () => caughtUp(primary, standby) });
    } finally {
      await standby.remove();
    }
  } finally {
    await primary.remove();
  }
}

async function withDatabase<T>(run: (target: Target) => Promise<T>): Promise<T> {
  if (REPLICA) return withReplica(run);
  if (process.env.DATABASE_URL) return run({ url: process.env.DATABASE_URL });
  const adminUrl = process.env.BENCH_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const name = `clients_bench_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  try {
    const url = new URL(adminUrl);
    url.pathname = `/${name}`;
    return await run({ url: url.toString() });
  } finally {
    await admin.query(`drop database if exists ${name} with (force)`);
    await admin.end();
  }
}

/** Each request's time, sorted: 20 unmeasured to warm up, then RUNS measured one at a time. */
async function timed(once: () => Promise<void>): Promise<number[]> {
  for (let i = 0; i < 20; i++) await once();
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const started = performance.now();
    await once();
    times.push(performance.now() - started);
  }
  return times.sort((a, b) => a - b);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

await withDatabase(async ({ url, replicaUrl, caughtUp }) => {
  /** Where eventual reads were served since the last reset. */
  const served = { eventual: 0, strong: 0 };
  const database = await openDatabase({
    databaseUrl: url,
    poolSize: 10,
    replicaUrl,
    onEventualRead: (where) => served[where]++,
  });
  const { db } = database;
  try {
    await migrateOrThrow(db);
    const token = await mintTokenForOrganisation(db, { orgName: `bench-${randomBytes(4).toString('hex')}`, plan: 'studio' });
    const noise = await mintTokenForOrganisation(db, { orgName: `bench-noise-${randomBytes(4).toString('hex')}`, plan: 'studio' });

    // Set-based seeding (bench/seed-clients.ts): one statement per organisation. On a scratch
    // database the table's secondary indexes are dropped first and built again after, in bulk
    // (`--seed-incremental`, or a DATABASE_URL of yours, keeps them and inserts through them).
    const seedBoth = async () => {
      await seedClients(db, 'clients', token.orgId, CLIENTS);
      await seedClients(db, 'clients', noise.orgId, Math.round(CLIENTS / 10));
    };
    let started = performance.now();
    const timings = INCREMENTAL ? undefined : await seedWithIndexesRebuilt(db, 'clients', seedBoth);
    if (INCREMENTAL) await seedBoth();
    // The seeded rows have no events: into the search table (what `q` looks up) as the indexer,
    // caught up, would have them; its indexes too are built in bulk after.
    const searchTimings = INCREMENTAL ? undefined : await seedWithIndexesRebuilt(db, 'client_search', () => copyClientsIntoSearch(db));
    if (INCREMENTAL) await copyClientsIntoSearch(db);
    if (timings && searchTimings) {
      timings.insertMs += searchTimings.insertMs;
      timings.indexMs += searchTimings.indexMs;
      timings.indexes.push(...searchTimings.indexes);
    }
    const seededMs = performance.now() - started;
    // The steady state autovacuum keeps: statistics, the visibility map, the GIN pending lists merged.
    started = performance.now();
    await sql`vacuum analyze clients`.execute(db);
    await sql`vacuum analyze client_search`.execute(db);
    const vacuumMs = performance.now() - started;
    // The replica replays the rows and the statistics before anything is measured on it.
    started = performance.now();
    await caughtUp?.();
    const replicaMs = performance.now() - started;
    const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
    console.log(
      `seeded ${CLIENTS} clients (+${Math.round(CLIENTS / 10)} in another organisation) in ${s(seededMs + vacuumMs + replicaMs)}: ` +
        (timings
          ? `insert ${s(timings.insertMs)} (secondary indexes dropped), indexes rebuilt ${s(timings.indexMs)} ` +
            `(${timings.indexes.map((i) => `${i.name} ${s(i.ms)}`).join(', ')}), `
          : `insert through every index ${s(seededMs)}, `) +
        `vacuum analyze ${s(vacuumMs)}${caughtUp ? `, replica caught up ${s(replicaMs)}` : ''}`,
    );
    const [size] = (
      await sql<{ table: string; total: string; search: string }>`
        select pg_size_pretty(pg_table_size('clients')) as table, pg_size_pretty(pg_total_relation_size('clients')) as total,
               pg_size_pretty(pg_total_relation_size('client_search')) as search`.execute(db)
    ).rows;
    console.log(
      `clients: table ${size?.table}, with its indexes ${size?.total}; client_search with its indexes ${size?.search}; ` +
        `this process: ${Math.round(process.memoryUsage().rss / 1048576)} MiB RSS`,
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

    // Rate limiting and the concurrency limit off, as benchmarks have it (2,240 requests of one token).
    const { createServer, warmUp } = createApp({
      db,
      reads: database.replica,
      logger: pino({ level: 'silent' }),
      rateLimits: false,
      concurrencyLimit: false,
    });
    await warmUp();
    const server = createServer().listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const api = createClientsApi({ baseUrl, token: token.token });
    const consistencies: ReadConsistency[] = REPLICA ? ['strong', 'eventual'] : ['strong'];
    if (database.replica) {
      const replica = database.replica;
      while (replica.state() !== 'usable') await new Promise((resolve) => setTimeout(resolve, 100));
    }

    const deep = { at: deepRow.position, id: deepRow.id };
    // The seed's updated_at is 2025-01-01 plus i seconds: the newest 1% of the organisation's clients.
    const recent = new Date(Date.UTC(2025, 0, 1) + Math.floor(CLIENTS * 0.99) * 1000).toISOString();
    // Each scenario as a request, and as the filter the service makes of it (for --explain).
    const scenarios: { label: string; query: Record<string, string>; filter: Partial<ClientListFilter> }[] = [
      { label: 'first page (limit 25)', query: {}, filter: {} },
      { label: `deep page (${depth.toLocaleString('en')} in)`, query: { cursor: encodeCursor(deep) }, filter: { after: deep } },
      { label: 'q, common ("globex", 1 in 8)', query: { q: 'globex' }, filter: { search: 'globex' } },
      { label: `q, rare ("${rare}")`, query: { q: rare }, filter: { search: rare } },
      { label: 'q, e-mail ("@billing.test", 1 in 3)', query: { q: '@billing.test' }, filter: { search: '@billing.test' } },
      { label: 'first page, deleted=include', query: { deleted: 'include' }, filter: { deleted: 'include' } },
      { label: 'first page, deleted=only (1 in 50)', query: { deleted: 'only' }, filter: { deleted: 'only' } },
      { label: 'updatedSince, the newest 1%', query: { updatedSince: recent }, filter: { updatedSince: recent } },
      // Short terms: under 3 letters or digits in a row there is no trigram to look up, so each
      // request examines a bounded number of rows. The worst case matches nothing: pages come back
      // empty, with a nextCursor, until the walk has passed every client.
      { label: 'q, 2 characters, common ("me")', query: { q: 'me' }, filter: { search: 'me' } },
      { label: 'q, 2 characters, no match ("qq")', query: { q: 'qq' }, filter: { search: 'qq' } },
    ];

    const measured: { label: string; median: number; p99: number }[] = [];
    console.log(`\n${RUNS} requests each, one at a time, after 20 to warm up (times in ms)\n`);
    console.log(`${'scenario'.padEnd(36)} ${'read'.padEnd(9)} ${'median'.padStart(8)} ${'p99'.padStart(8)} ${'rows'.padStart(6)}`);
    for (const { label, query } of scenarios) {
      for (const consistency of consistencies) {
        let rows = 0;
        const once = async () => {
          const { data, error, response } = await api.GET('/clients', {
            params: { query: query as never, header: { 'Read-Consistency': consistency } },
          });
          if (error) throw new Error(`${label}: ${JSON.stringify(error)}`);
          if (response.headers.get('Read-Consistency') !== consistency) throw new Error(`${label}: not served ${consistency}`);
          rows = data.data.length;
        };
        const times = await timed(once);
        measured.push({ label: `${label} (${consistency})`, median: percentile(times, 50), p99: percentile(times, 99) });
        console.log(
          `${label.padEnd(36)} ${consistency.padEnd(9)} ${percentile(times, 50).toFixed(2).padStart(8)} ${percentile(times, 99).toFixed(2).padStart(8)} ${String(rows).padStart(6)}`,
        );
      }
    }

    // The search indexer does not run here: clients created now stay in the tail (events after its
    // position), which every search of the organisation reads live. What a lag of TAIL changes costs.
    if (!REPLICA && TAIL > 0) {
      for (let i = 0; i < TAIL; i++) {
        const { error } = await api.POST('/clients', { body: { name: `Tail ${i} Globex`, email: `tail${i}@tail.test` } });
        if (error) throw new Error(`tail: ${JSON.stringify(error)}`);
      }
      for (const [label, query] of [
        [`q, common, ${TAIL} changes not indexed`, { q: 'globex' }],
        [`q, rare, ${TAIL} changes not indexed`, { q: rare }],
      ] as const) {
        const once = async () => {
          const { error } = await api.GET('/clients', { params: { query } });
          if (error) throw new Error(`${label}: ${JSON.stringify(error)}`);
        };
        const times = await timed(once);
        console.log(
          `${label.padEnd(36)} ${'strong'.padEnd(9)} ${percentile(times, 50).toFixed(2).padStart(8)} ${percentile(times, 99).toFixed(2).padStart(8)}`,
        );
      }
    }

    const slowest = measured.reduce((a, b) => (b.median > a.median ? b : a));
    const widest = measured.reduce((a, b) => (b.p99 > a.p99 ? b : a));
    console.log(
      `\nworst case at ${CLIENTS} clients: slowest median ${slowest.median.toFixed(2)} ms (${slowest.label}); ` +
        `highest p99 ${widest.p99.toFixed(2)} ms (${widest.label})`,
    );

    if (REPLICA) {
      const auth = { authorization: `Bearer ${token.token}` };
      /** `connections` lists of `path` for SECONDS, and beside them, when `writers` > 0, that many creating clients. */
      const load = async (path: string, consistency: ReadConsistency, writers: number) => {
        // Requests of the run before that the server was still answering are not this run's.
        await new Promise((resolve) => setTimeout(resolve, 500));
        served.eventual = 0;
        served.strong = 0;
        const [reads, writes] = await Promise.all([
          autocannon({
            url: `${baseUrl}${path}`,
            connections: CONNECTIONS,
            duration: SECONDS,
            headers: { ...auth, 'read-consistency': consistency },
          }),
          writers > 0
            ? autocannon({
                url: `${baseUrl}/clients`,
                connections: writers,
                duration: SECONDS,
                method: 'POST',
                headers: { ...auth, 'content-type': 'application/json' },
                body: JSON.stringify({ name: 'Written During The Run' }),
              })
            : undefined,
        ]);
        return {
          rps: reads.requests.average,
          p50: reads.latency.p50,
          p99: reads.latency.p99,
          failed: reads.errors + reads.non2xx + reads.timeouts + (writes ? writes.errors + writes.non2xx + writes.timeouts : 0),
          writeRps: writes?.requests.average,
          onReplica: consistency === 'eventual' ? served.eventual / Math.max(1, served.eventual + served.strong) : undefined,
        };
      };
      const writers = Math.max(1, Math.round(CONNECTIONS / 2));
      console.log(
        `\nthroughput: ${CONNECTIONS} connections listing, ${SECONDS} s a run, each run twice (strong, eventual, eventual, strong); ` +
          `the mean of both (autocannon; latency in ms)\n`,
      );
      console.log(
        `${'scenario'.padEnd(44)} ${'read'.padEnd(9)} ${'lists/s'.padStart(8)} ${'p50'.padStart(6)} ${'p99'.padStart(6)} ${'creates/s'.padStart(10)} ${'failed'.padStart(7)} ${'on replica'.padStart(11)}`,
      );
      for (const [label, path, writing] of [
        ['first page (limit 25)', '/clients', 0],
        ['q "globex" (1 in 8)', '/clients?q=globex', 0],
        [`first page, ${writers} connections creating beside`, '/clients', writers],
      ] as const) {
        const runs: Record<ReadConsistency, Awaited<ReturnType<typeof load>>[]> = { strong: [], eventual: [] };
        for (const consistency of ['strong', 'eventual', 'eventual', 'strong'] as const)
          runs[consistency].push(await load(path, consistency, writing));
        for (const consistency of consistencies) {
          const [a, b] = runs[consistency] as [Awaited<ReturnType<typeof load>>, Awaited<ReturnType<typeof load>>];
          const mean = (pick: (run: typeof a) => number | undefined) => ((pick(a) ?? 0) + (pick(b) ?? 0)) / 2;
          const creates = writing > 0 ? String(Math.round(mean((run) => run.writeRps))) : '-';
          const onReplica = consistency === 'eventual' ? `${Math.round(100 * mean((run) => run.onReplica))}%` : '-';
          console.log(
            `${label.padEnd(44)} ${consistency.padEnd(9)} ${String(Math.round(mean((run) => run.rps))).padStart(8)} ${mean((run) => run.p50)
              .toFixed(1)
              .padStart(6)} ${mean((run) => run.p99)
              .toFixed(1)
              .padStart(6)} ${creates.padStart(10)} ${String(a.failed + b.failed).padStart(7)} ${onReplica.padStart(11)}`,
          );
        }
      }
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
