/**
 * `npm run bench [-- --quick] [-- --only create,replay]`: the real server (compiled JavaScript, on
 * PostgreSQL) against a bare node:http + pg baseline doing the same SQL ("same-SQL",
 * bench/bare-server.ts), driven by wrk (or autocannon) on loopback, runs alternating so both see
 * the same machine, each sent the same requests (a scenario's token and fresh keys included).
 * Prints requests/s, p50 and p99 of each, and the ratio real/bare; also startup time to listening,
 * peak RSS under load, and webhook deliveries per second (bench/webhook-delivery.ts;
 * `--only=webhooks` for that alone).
 *
 * Create with a fresh key is measured against a second baseline too, "plain" (bench/plain-server.ts:
 * the seed's whole client into a table of its own with only its primary key and the tenant's list
 * index; no search index, no idempotency, no event), in the same alternating rounds; the summary
 * prints both ratios beside issue 25's goals (≥ 0.55× plain, ≥ 0.7× same-SQL). No pass/fail on them:
 * a benchmark prints figures.
 *
 * `--seed-clients N` (or BENCH_SEED_CLIENTS=N) first fills N clients of the benchmark's
 * organisation into `clients` (which the real server and the same-SQL baseline share) and into
 * the plain baseline's table, one `insert … select generate_series` each (bench/seed-clients.ts),
 * so that the create's ratio can be measured with a large table (`-- --seed-clients 1000000`). The
 * tables' secondary indexes (the trigram ones included) are dropped for the insert and built again
 * in bulk after, from their own definitions; `--seed-incremental` inserts through them instead
 * (slower by far: minutes per 100,000 rows here).
 *
 * BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test) is where a scratch database
 * is created and dropped. Rate limiting is off (RATE_LIMIT=0, as for every benchmark);
 * `--rate-limited` keeps it on with a budget no run exhausts, so its cost is in the figures. The
 * concurrency limit is off (CONCURRENCY_LIMIT=0) either way: the load is one organisation's, many
 * connections at once.
 *
 * Tracing: the real server runs with tracing off (no OTEL_* variable), as by default. One more
 * row, the create with a fresh key, is measured on a second real server with tracing on
 * (OTEL_TRACES_EXPORTER=otlp, every request sampled, the SDK's batch processor, OTLP over HTTP
 * with protobuf) exporting to a stub collector in this process that reads and drops what it gets
 * (docs/tracing.md); `--no-tracing` leaves that row out.
 */
import { spawn, spawnSync, execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { createServer as createHttpServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import autocannon from 'autocannon';
import { summariseProfiles } from './profile-summary.js';
import { sql } from 'kysely';
import { mintTokenForOrganisation } from '../server/tokens/tokens.service.js';
import { migrateOrThrow } from '../server/db/migrate.js';
import { copyClientsIntoSearch } from '../server/clients/client-search.queries.js';
import { cpuPerRequest, cpuSplit, cpuTicks, stealPercent } from './machine.js';
import { PLAIN_TABLE } from './plain-server.js';
import { createScratchDatabase } from './scratch-database.js';
import { seedClients, seedWithIndexesRebuilt } from './seed-clients.js';

const root = resolve(import.meta.dirname, '..');
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const only = args
  .find((a) => a.startsWith('--only='))
  ?.slice(7)
  .split(',');
const connections = 32;
// --quick: one round of 2 s runs, the whole of it (build included) in under a minute.
const duration = quick ? 2 : 10;
const rounds = quick ? 1 : 3;
/** `--warm-up=S`: seconds of load on each server before a scenario's rounds (default 1). */
const warmUpSeconds = (() => {
  const raw = args.find((a) => a.startsWith('--warm-up='))?.split('=')[1] ?? '1';
  const seconds = Number(raw);
  if (!Number.isInteger(seconds) || seconds < 1) throw new Error(`--warm-up must be a whole number of seconds, at least 1, not "${raw}"`);
  return seconds;
})();
const adminUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const rateLimit = args.includes('--rate-limited') ? '1000000000' : '0';
const profile = args.includes('--profile');
const tracing = !args.includes('--no-tracing') && !profile;
/** `--seed-clients N`, `--seed-clients=N` or BENCH_SEED_CLIENTS: clients already in each table before measuring. */
const seedCount = (() => {
  const at = args.findIndex((a) => a === '--seed-clients' || a.startsWith('--seed-clients='));
  const raw = at < 0 ? process.env.BENCH_SEED_CLIENTS : args[at]!.includes('=') ? args[at]!.split('=')[1] : args[at + 1];
  if (raw === undefined || raw === '') return 0;
  const count = Number(raw.replaceAll('_', ''));
  if (!Number.isInteger(count) || count < 0) throw new Error(`--seed-clients must be a whole number, not "${raw}"`);
  return count;
})();
/** `--seed-incremental`: insert the seeded clients through every index rather than rebuilding the secondary ones after. */
const seedIncremental = args.includes('--seed-incremental');
/** Issue 25's goals for create with a fresh key, against each baseline. */
const GOALS = { plain: 0.55, sameSql: 0.7 };
/** wrk where installed (it leaves more of the machine to the servers), autocannon otherwise. */
const wrk = !args.includes('--autocannon') && spawnSync('wrk', ['--version']).error === undefined;

interface Running {
  child: ChildProcess;
  url: string;
  startupMs: number;
  stop(): Promise<void>;
}

function start(command: string, argv: string[], env: Record<string, string | undefined>): Promise<Running> {
  const started = performance.now();
  return new Promise((done, fail) => {
    const child = spawn(command, argv, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let found = false;
    child.stdout!.on('data', (chunk: Buffer) => {
      if (found) return; // keep draining so the server never blocks on a full pipe
      out += chunk;
      const match = /"url":"(http:\/\/[^"]+)"[^\n]*"msg":"listening"|"msg":"listening","url":"(http:\/\/[^"]+)"/.exec(out);
      if (match) {
        found = true;
        done({
          child,
          url: (match[1] ?? match[2])!,
          startupMs: performance.now() - started,
          stop: () =>
            new Promise((stopped) => {
              child.once('exit', () => stopped());
              child.kill('SIGTERM');
            }),
        });
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => (out += chunk));
    child.on('exit', (code) => !found && fail(new Error(`${command} ${argv.join(' ')} exited with ${code}:\n${out}`)));
  });
}

function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

interface Figures {
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
  /** CPU time per request in µs (bench/machine.ts): the server's processes, PostgreSQL's, the rest of the machine. */
  cpu?: { server: number; database: number; rest: number };
}

/** One kind of request, sent over and over; `freshKey`: a new Idempotency-Key on each. */
interface Load {
  url: string;
  method?: 'GET' | 'POST';
  path: string;
  body?: string;
  headers?: Record<string, string>;
  freshKey?: boolean;
}

function loadWithAutocannon(spec: Load, seconds: number): Promise<Figures> {
  const { url, method = 'GET', path, body, headers = {}, freshKey } = spec;
  return autocannon({
    connections,
    duration: seconds,
    url,
    requests: [
      {
        method,
        path,
        ...(body !== undefined && { body }),
        headers,
        ...(freshKey && {
          setupRequest: (request: autocannon.Request) => ({ ...request, headers: { ...headers, 'Idempotency-Key': randomUUID() } }),
        }),
      },
    ],
  }).then((result) => ({
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
  }));
}

function loadWithWrk(spec: Load, seconds: number): Promise<Figures> {
  const env = {
    ...process.env,
    BENCH_METHOD: spec.method ?? 'GET',
    BENCH_PATH: spec.path,
    BENCH_BODY: spec.body ?? '',
    BENCH_HEADERS: Object.entries(spec.headers ?? {})
      .map(([name, value]) => `${name}: ${value}`)
      .join('\n'),
    ...(spec.freshKey && { BENCH_KEY_PREFIX: randomBytes(4).toString('hex') }),
  };
  const argv = ['-t2', `-c${connections}`, `-d${seconds}s`, '-s', join(root, 'bench/wrk.lua'), spec.url];
  return new Promise((done, fail) =>
    execFile('wrk', argv, { env }, (error, stdout) => {
      if (error) return fail(error);
      const line = stdout.trim().split('\n').at(-1)!;
      const r = JSON.parse(line) as { requests: number; durationUs: number; p50Us: number; p99Us: number; non2xx: number; errors: number };
      done({ rps: r.requests / (r.durationUs / 1e6), p50: r.p50Us / 1000, p99: r.p99Us / 1000, non2xx: r.non2xx, errors: r.errors });
    }),
  );
}

const load = (spec: Load, seconds = duration) => (wrk ? loadWithWrk(spec, seconds) : loadWithAutocannon(spec, seconds));

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

function summarise(runs: Figures[]): Figures {
  const cpu = runs.flatMap((r) => (r.cpu ? [r.cpu] : []));
  return {
    ...(cpu.length > 0 && {
      cpu: { server: median(cpu.map((c) => c.server)), database: median(cpu.map((c) => c.database)), rest: median(cpu.map((c) => c.rest)) },
    }),
    rps: median(runs.map((r) => r.rps)),
    p50: median(runs.map((r) => r.p50)),
    p99: median(runs.map((r) => r.p99)),
    non2xx: runs.reduce((n, r) => n + r.non2xx, 0),
    errors: runs.reduce((n, r) => n + r.errors, 0),
  };
}

/**
 * One kind of request, sent alike to the real server and to each baseline measured with it: the
 * same bytes (the token, a fresh Idempotency-Key each time where the scenario has one, which the
 * baselines read past), so the load generator, on the same two cores, costs each the same.
 */
interface Scenario {
  name: string;
  request: Omit<Load, 'url'>;
  /** The same-SQL baseline (bench/bare-server.ts) is measured too. */
  bare?: boolean;
  /** The plain baseline (bench/plain-server.ts), measured in the same rounds: create with a fresh key only. */
  plain?: boolean;
  /** Measured on the server with tracing on, rather than the one without. */
  traced?: boolean;
}

/** What the stub collector was sent. */
interface Collected {
  requests: number;
  bytes: number;
}

/** An OTLP/HTTP receiver that reads each export, answers 200 and keeps nothing: a collector that costs the server nothing more than a real one. */
async function startStubCollector(): Promise<{ url: string; collected: Collected; server: Server }> {
  const collected: Collected = { requests: 0, bytes: 0 };
  const server = createHttpServer((req, res) => {
    collected.requests++;
    req.on('data', (chunk: Buffer) => (collected.bytes += chunk.length));
    req.on('end', () => res.writeHead(200, { 'Content-Type': 'application/x-protobuf' }).end());
  });
  await new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, collected, server };
}

async function main() {
  if (!args.includes('--no-build')) execFileSync('npm', ['run', '-s', 'build'], { cwd: root, stdio: 'inherit' });

  const scratch = await createScratchDatabase(adminUrl, 'clients_bench');
  const { url: databaseUrl, handle } = scratch;
  const dataDir = mkdtempSync(join(tmpdir(), 'clients-bench-'));
  const servers: Running[] = [];
  try {
    await migrateOrThrow(handle.db);
    const minted = await mintTokenForOrganisation(handle.db, { orgName: 'Bench', plan: 'studio' });
    const auth = { Authorization: `Bearer ${minted.token}`, 'Content-Type': 'application/json' };
    const { id: clientId } = await handle.db
      .insertInto('clients')
      .values({ org_id: minted.orgId, env: 'test', name: 'Read me', email: 'read@example.com', default_rate: '120.5000' })
      .returning('id')
      .executeTakeFirstOrThrow();
    await handle.db
      .insertInto('clients')
      .values(Array.from({ length: 100 }, (_, i) => ({ org_id: minted.orgId, env: 'test' as const, name: `Seed ${i}` })))
      .execute();

    // The plain baseline's table (made here so that it can be filled before its server starts).
    await handle.db.executeQuery(sql.raw(PLAIN_TABLE).compile(handle.db));
    let seeded: string | undefined;
    if (seedCount > 0) {
      process.stderr.write(`seeding ${seedCount} clients into clients and plain_clients...\n`);
      const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
      const seedInto = async (table: string) => {
        const fill = () => seedClients(handle.db, table, minted.orgId, seedCount);
        if (seedIncremental) {
          const at = performance.now();
          await fill();
          return `${table} ${s(performance.now() - at)} (through its indexes)`;
        }
        const t = await seedWithIndexesRebuilt(handle.db, table, fill);
        return `${table} ${s(t.dropMs + t.insertMs + t.indexMs)} (insert ${s(t.insertMs)}, ${t.indexes.length} secondary indexes rebuilt ${s(t.indexMs)})`;
      };
      seeded = `${await seedInto('clients')}, ${await seedInto('plain_clients')}`;
      // Seeded without events: into the search table as the search indexer, caught up, would have them.
      if (seedIncremental) await copyClientsIntoSearch(handle.db);
      else await seedWithIndexesRebuilt(handle.db, 'client_search', () => copyClientsIntoSearch(handle.db));
      // The steady state autovacuum keeps: statistics, the visibility map.
      await handle.db.executeQuery(sql`vacuum analyze clients`.compile(handle.db));
      await handle.db.executeQuery(sql`vacuum analyze client_search`.compile(handle.db));
      await handle.db.executeQuery(sql`vacuum analyze plain_clients`.compile(handle.db));
    }

    const profileDir = mkdtempSync(join(tmpdir(), 'clients-profile-'));
    const real = await start('node', [...(profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []), 'dist/server/main.js'], {
      DATABASE_URL: databaseUrl,
      // On PostgreSQL the server does not start without the key that seals webhook secrets.
      WEBHOOK_SECRET_KEY: randomBytes(32).toString('base64'),
      PORT: '0',
      LOG_LEVEL: 'info',
      RATE_LIMIT: rateLimit,
      CONCURRENCY_LIMIT: '0',
    });
    const bare = await start(join(root, 'node_modules/.bin/tsx'), ['bench/bare-server.ts'], {
      DATABASE_URL: databaseUrl,
      PORT: '0',
      ORG_ID: minted.orgId,
    });
    const plain = await start(join(root, 'node_modules/.bin/tsx'), ['bench/plain-server.ts'], {
      DATABASE_URL: databaseUrl,
      PORT: '0',
      ORG_ID: minted.orgId,
    });
    servers.push(real, bare, plain);
    // Tracing on, exporting to the stub collector: the same build, the same database.
    const wantTraced = tracing && (!only || only.some((o) => 'create, fresh Idempotency-Key, tracing on'.includes(o)));
    const collector = wantTraced ? await startStubCollector() : undefined;
    const traced = collector
      ? await start('node', ['dist/server/main.js'], {
          DATABASE_URL: databaseUrl,
          WEBHOOK_SECRET_KEY: randomBytes(32).toString('base64'),
          PORT: '0',
          LOG_LEVEL: 'info',
          RATE_LIMIT: rateLimit,
          CONCURRENCY_LIMIT: '0',
          OTEL_TRACES_EXPORTER: 'otlp',
          OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
          OTEL_TRACES_SAMPLER: 'parentbased_always_on',
        })
      : undefined;
    if (traced) servers.push(traced);

    const body = JSON.stringify({ name: 'Bench client', email: 'bench@example.com', defaultRate: '120.50' });
    const replayKey = randomUUID();
    const scenarios: Scenario[] = [
      {
        name: 'create, fresh Idempotency-Key',
        request: { method: 'POST', path: '/clients', body, headers: auth, freshKey: true },
        bare: true,
        plain: true,
      },
      {
        name: 'create, fresh Idempotency-Key, tracing on',
        request: { method: 'POST', path: '/clients', body, headers: auth, freshKey: true },
        bare: true,
        traced: true,
      },
      {
        name: 'create, replayed Idempotency-Key',
        request: { method: 'POST', path: '/clients', body, headers: { ...auth, 'Idempotency-Key': replayKey } },
        bare: true,
      },
      { name: 'GET /clients/{id}', request: { path: `/clients/${clientId}`, headers: auth }, bare: true },
      { name: 'GET /clients (first page)', request: { path: '/clients', headers: auth }, bare: true },
    ];
    // The replayed key must exist before its scenario is measured.
    await fetch(`${real.url}/clients`, { method: 'POST', body, headers: { ...auth, 'Idempotency-Key': replayKey } });

    const rows: {
      name: string;
      real: Figures;
      bare?: Figures;
      plain?: Figures;
      ratios?: { sameSql: number[]; plain: number[] };
      steal?: number[];
    }[] = [];
    for (const scenario of scenarios) {
      if (only && !only.some((o) => scenario.name.includes(o))) continue;
      if (scenario.traced && !traced) continue;
      const server = scenario.traced ? traced! : real;
      // The create runs add tens of thousands of rows in a minute, faster than autovacuum analyses
      // them: with stale statistics the planner can pick the list index over the primary key for a
      // read by id. Analyse as a running system would have by then.
      await handle.db.executeQuery(sql`analyze clients`.compile(handle.db));
      const realRuns: Figures[] = [];
      const bareRuns: Figures[] = [];
      const plainRuns: Figures[] = [];
      // Warm-up, the same length for every server: V8 optimises a server's hot code over its first
      // tens of thousands of requests, and the real server has far more of it than a baseline.
      await load({ url: server.url, ...scenario.request }, warmUpSeconds);
      if (scenario.bare && !profile) await load({ url: bare.url, ...scenario.request }, warmUpSeconds);
      if (scenario.plain && !profile) await load({ url: plain.url, ...scenario.request }, warmUpSeconds);
      const steal: number[] = [];
      /** One run, with the CPU time each part of the machine spent per request during it. */
      const measured = async (target: Running, spec: Load): Promise<Figures> => {
        const before = cpuSplit(target.child.pid!);
        const figures = await load(spec);
        return { ...figures, cpu: cpuPerRequest(before, cpuSplit(target.child.pid!), figures.rps * duration) };
      };
      for (let round = 0; round < rounds; round++) {
        const before = cpuTicks();
        if (scenario.bare && !profile) bareRuns.push(await measured(bare, { url: bare.url, ...scenario.request }));
        if (scenario.plain && !profile) plainRuns.push(await measured(plain, { url: plain.url, ...scenario.request }));
        realRuns.push(await measured(server, { url: server.url, ...scenario.request }));
        steal.push(stealPercent(before, cpuTicks()));
      }
      rows.push({
        name: scenario.name,
        real: summarise(realRuns),
        ...(bareRuns.length > 0 && { bare: summarise(bareRuns) }),
        ...(plainRuns.length > 0 && {
          plain: summarise(plainRuns),
          // Each round's own ratios: how much of the spread is the machine's.
          ratios: {
            sameSql: realRuns.map((r, i) => r.rps / bareRuns[i]!.rps),
            plain: realRuns.map((r, i) => r.rps / plainRuns[i]!.rps),
          },
          steal,
        }),
      });
      process.stderr.write(`measured: ${scenario.name}\n`);
    }
    const peakRss = peakRssMb(real.child.pid!);
    const tracedPeakRss = traced && peakRssMb(traced.child.pid!);
    // Stopping exports what is still pending (server/main.ts): the collector's count is complete after.
    await Promise.all(servers.splice(0).map((s) => s.stop()));
    if (collector) await new Promise((closed) => collector.server.close(closed));

    // The embedded database: a figure only (PGlite runs inside the server's one thread).
    let pglite: Figures | undefined;
    let pgliteStartupMs: number | undefined;
    if (!profile && (!only || only.some((o) => 'pglite'.includes(o)))) {
      // The webhook key is made beside the data directory: both in dataDir, removed after.
      const env = { DATA_DIR: join(dataDir, 'data'), DATABASE_URL: '' };
      const cli = JSON.parse(
        execFileSync(
          join(root, 'node_modules/.bin/tsx'),
          ['server/cli.ts', 'token', 'create', '--org', 'Bench', '--plan', 'studio', '--json'],
          {
            cwd: root,
            env: { ...process.env, ...env },
          },
        )
          .toString()
          .trim()
          .split('\n')
          .at(-1)!,
      );
      const embedded = await start('node', ['dist/server/main.js'], {
        ...env,
        PORT: '0',
        LOG_LEVEL: 'info',
        RATE_LIMIT: rateLimit,
        CONCURRENCY_LIMIT: '0',
      });
      servers.push(embedded);
      pgliteStartupMs = embedded.startupMs;
      const pgliteAuth = { Authorization: `Bearer ${cli.token}`, 'Content-Type': 'application/json' };
      const pgliteCreate: Load = { url: embedded.url, method: 'POST', path: '/clients', body, headers: pgliteAuth, freshKey: true };
      await load(pgliteCreate, 1); // warm-up, as for every scenario
      pglite = await load(pgliteCreate);
      await Promise.all(servers.splice(0).map((s) => s.stop()));
    }

    const fmt = (n: number, digits = 0) => n.toFixed(digits).padStart(8);
    console.log(
      `\nClients API benchmark: ${connections} connections, ${duration} s per run, ${rounds} alternating round(s), median of rounds`,
    );
    console.log(
      `load from ${wrk ? 'wrk (2 threads)' : 'autocannon'}; rate limiting ${rateLimit === '0' ? 'off (RATE_LIMIT=0)' : 'on (PostgreSQL store, a budget no run exhausts)'}; concurrency limit off (CONCURRENCY_LIMIT=0); node ${process.version}${profile ? '; PROFILED (slower): figures for the profile only' : ''}\n`,
    );
    console.log('| scenario | real req/s | p50 ms | p99 ms | bare req/s | p50 ms | p99 ms | real/bare | errors, non-2xx |');
    console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const row of rows) {
      const b = row.bare;
      console.log(
        `| ${row.name} | ${fmt(row.real.rps)} | ${fmt(row.real.p50, 1)} | ${fmt(row.real.p99, 1)} | ${b ? fmt(b.rps) : '-'} | ${b ? fmt(b.p50, 1) : '-'} | ${b ? fmt(b.p99, 1) : '-'} | ${b ? (row.real.rps / b.rps).toFixed(2) : '-'} | ${row.real.errors + (b?.errors ?? 0)}, ${row.real.non2xx + (b?.non2xx ?? 0)} |`,
      );
    }
    if (pglite) {
      console.log(
        `| create on PGlite (figure only) | ${fmt(pglite.rps)} | ${fmt(pglite.p50, 1)} | ${fmt(pglite.p99, 1)} | - | - | - | - | ${pglite.errors}, ${pglite.non2xx} |`,
      );
    }
    const create = rows.find((r) => r.plain);
    if (create?.plain && create.bare && create.ratios) {
      const c = { ...create, plain: create.plain, bare: create.bare, ratios: create.ratios, steal: create.steal ?? [] };
      const plainRatio = c.real.rps / c.plain.rps;
      const sameSqlRatio = c.real.rps / c.bare.rps;
      const perRound = (ratios: number[]) => ratios.map((r) => r.toFixed(2)).join(', ');
      const verdict = (ratio: number, goal: number) => (ratio >= goal ? 'meets it' : 'below it');
      console.log(
        `\nCreate with a fresh key against both baselines, the same ${rounds} alternating round(s)${seedCount > 0 ? `, with ${seedCount} clients already in each table` : ''}:\n`,
      );
      console.log('| baseline | baseline req/s | p50 ms | p99 ms | real req/s | real/baseline | per round | goal (issue 25) |');
      console.log('|---|---:|---:|---:|---:|---:|---|---:|');
      console.log(
        `| plain (bench/plain-server.ts: whole client, own table, primary key + list index only) | ${fmt(c.plain.rps)} | ${fmt(c.plain.p50, 1)} | ${fmt(c.plain.p99, 1)} | ${fmt(c.real.rps)} | **${plainRatio.toFixed(2)}** | ${perRound(c.ratios.plain)} | ≥ ${GOALS.plain.toFixed(2)} |`,
      );
      console.log(
        `| same-SQL (bench/bare-server.ts: the server's clients table and its indexes) | ${fmt(c.bare.rps)} | ${fmt(c.bare.p50, 1)} | ${fmt(c.bare.p99, 1)} | ${fmt(c.real.rps)} | **${sameSqlRatio.toFixed(2)}** | ${perRound(c.ratios.sameSql)} | ≥ ${GOALS.sameSql.toFixed(2)} |`,
      );
      console.log(
        `\ngoals (issue 25), create with a fresh key: ≥ ${GOALS.plain}× plain, measured ${plainRatio.toFixed(2)} (${verdict(plainRatio, GOALS.plain)}); ` +
          `≥ ${GOALS.sameSql}× same-SQL, measured ${sameSqlRatio.toFixed(2)} (${verdict(sameSqlRatio, GOALS.sameSql)}); plain errors, non-2xx: ${c.plain.errors}, ${c.plain.non2xx}`,
      );
      const cpuLine = (name: string, f: Figures) =>
        f.cpu
          ? `| ${name} | ${fmt(f.cpu.server)} | ${fmt(f.cpu.database)} | ${fmt(f.cpu.rest)} | ${fmt(f.cpu.server + f.cpu.database + f.cpu.rest)} |`
          : `| ${name} | - | - | - | - |`;
      console.log(
        "\nCPU time per create, µs (medians of rounds; /proc: the server's processes, every postgres process, the rest of the machine: wrk, the benchmark):\n",
      );
      console.log('| server | its processes | PostgreSQL | rest | all |');
      console.log('|---|---:|---:|---:|---:|');
      console.log(cpuLine('real', c.real));
      console.log(cpuLine('same-SQL', c.bare));
      console.log(cpuLine('plain', c.plain));
      console.log(
        `\nsteal (the machine's CPU time the hypervisor took) in each round: ${c.steal.map((p) => `${p.toFixed(1)}%`).join(', ')}` +
          ' (bench/machine.ts; a round with much of it ran on a slower machine, its ratio least of all comparable)',
      );
    }
    if (seeded) console.log(`\nseeded ${seedCount} clients of the benchmark's organisation before measuring: ${seeded}`);
    console.log(`\nstartup to listening (node dist/server/main.js, PostgreSQL): ${real.startupMs.toFixed(0)} ms`);
    if (pgliteStartupMs !== undefined)
      console.log(`startup to listening (embedded PGlite, existing data): ${pgliteStartupMs.toFixed(0)} ms`);
    console.log(`peak RSS of the real server under load: ${peakRss.toFixed(0)} MiB`);
    if (collector && tracedPeakRss !== undefined)
      console.log(
        `tracing on: OTLP/HTTP protobuf to a local stub collector, every request sampled; ${collector.collected.requests} exports, ${(collector.collected.bytes / 1024 / 1024).toFixed(1)} MiB received; peak RSS ${tracedPeakRss.toFixed(0)} MiB`,
      );
    if (!only || only.includes('webhooks')) console.log(webhookThroughput());
    if (profile) console.log(`\n${summariseProfiles(profileDir)}`);
    const failures =
      rows.reduce(
        (n, r) =>
          n +
          r.real.errors +
          r.real.non2xx +
          (r.bare?.errors ?? 0) +
          (r.bare?.non2xx ?? 0) +
          (r.plain?.errors ?? 0) +
          (r.plain?.non2xx ?? 0),
        0,
      ) + (pglite ? pglite.errors + pglite.non2xx : 0);
    if (failures > 0) {
      console.log(`\n${failures} errors or non-2xx answers: the figures above are not valid.`);
      process.exitCode = 1;
    }
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    await scratch.drop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/**
 * Webhook deliveries per second to a local receiver (bench/webhook-delivery.ts: one worker with
 * its defaults, each attempt signed, sent and recorded), alone and beside a noisy tenant whose
 * receivers never answer, on a scratch database of the same server.
 */
function webhookThroughput(): string {
  const out = execFileSync(join(root, 'node_modules/.bin/tsx'), [join(root, 'bench/webhook-delivery.ts')], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, BENCH_ADMIN_URL: adminUrl, BENCH_EVENTS: '1000' },
  });
  type Line = { round: string; events?: number; eventsPerSecond?: number; perSecond?: number; latencyMs?: { p50: number; p99: number } };
  const lines = out
    .trim()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Line);
  const rate = (round: string) => lines.find((line) => line.round === round)?.perSecond;
  const rounds = lines.filter((line) => line.latencyMs !== undefined);
  const processes =
    rate('creates') === undefined
      ? ''
      : `webhook deliveries against creates (PostgreSQL, worker processes, one fast receiver): creates ${rate('creates')}/s, one worker ${rate('one worker')} events/s, two workers ${rate('two workers')} events/s\n`;
  return `${processes}webhook deliveries (one worker in process, ${rounds[0]?.events} events to a local receiver): ${rounds
    .map((r) => `${r.round} ${r.eventsPerSecond} events/s, latency p50 ${r.latencyMs!.p50} ms p99 ${r.latencyMs!.p99} ms`)
    .join('; ')}`;
}

await main();
