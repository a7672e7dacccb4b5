/**
 * `npm run bench:soak`: the built server under steady mixed traffic for BENCH_SOAK_MINUTES (30),
 * printing each minute what would show a leak or a slow drift: latency, the server's RSS, the
 * event loop's lag, the pool's queue, webhook deliveries and their backlog, the tables' sizes, and
 * how many expired rows the housekeeping purge has still to remove. It stops itself.
 *
 * - A scratch PostgreSQL database on BENCH_ADMIN_URL (postgres://postgres@127.0.0.1:5432/postgres),
 *   dropped after.
 * - The BUILT server as a child process (`npm run -s build` first unless `--no-build`; then
 *   `node dist/server/main.js`, exactly what `npm start` runs, with its in-process webhook worker
 *   and its housekeeping), RATE_LIMIT=0, CONCURRENCY_LIMIT=0, a random WEBHOOK_SECRET_KEY,
 *   WEBHOOK_ALLOW_PRIVATE_NETWORKS=true, metrics on a port of their own (METRICS_PORT).
 * - A local webhook receiver answering 204, registered through the API as an endpoint of the
 *   soak's organisation (studio plan; its token minted as bench/run.ts does).
 * - Before the traffic, an expired backlog for the purge (BENCH_SOAK_EXPIRED, 100,000 of each):
 *   Idempotency-Keys past their 24 hours, and events older than 30 days with a delivery and an
 *   attempt each (of another organisation, on a disabled endpoint). The purge's first cycle comes a
 *   minute after the server starts (server/lifecycle/housekeeping.ts), then every 10 minutes; the
 *   expired rows must fall to 0 and stay there.
 * - Traffic at BENCH_SOAK_RATE requests/s (150) on an open-loop schedule: request n is due at
 *   start + n / rate whether or not the earlier ones have been answered, and its latency is counted
 *   from when it was due, so a stall shows in the latency rather than slowing the load
 *   (no coordinated omission). The mix: 25% creates with a fresh key, 15% PATCH updates, 25% reads
 *   by id, 15% first pages, 10% searches with `q`, 10% replays of a recent create's key.
 *
 * Each minute one line (and with `--json` one JSON line as well): requests answered that minute,
 * non-2xx, errors, p50 and p99 latency, the server's RSS (/proc/<pid>/status VmRSS), the event
 * loop's lag p99 and the main pool's waiting queries (the highest of the /metrics scrapes taken
 * every 5 s that minute; prom-client resets its lag histogram at each scrape), the share of the
 * machine's CPU time the hypervisor took that minute (steal, from /proc/stat), the search table's
 * highest lag that minute (`search_index_lag_seconds`), webhooks received that
 * minute, the backlog (deliveries pending, and events not yet fanned out to the endpoint), the
 * expired rows left, how many of the minute's looks at PostgreSQL's checkpointer (every 5 s)
 * found it writing a checkpoint, the kind of request with the minute's highest p99, and the rows
 * and total size (pg_total_relation_size) of clients, events, idempotency_keys,
 * webhook_deliveries and webhook_attempts. At the end a verdict: the last
 * minute against the second for RSS and p99 (issue 25: within 10%), and whether the key and event
 * tables hold nothing past their retention. BENCH_SOAK_ACTIVITY=<file> appends, every 5 s, the soak
 * database's statements that have run longer than 50 ms (pg_stat_activity), to find a slow one;
 * BENCH_SOAK_SERVER_LOG=<file> appends everything the server writes (its log).
 * Exits 1 when requests failed (the figures are then not those of a healthy run), never on the
 * verdict: a benchmark prints figures.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { appendFileSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import { cpuTicks, stealPercent as stealBetween } from './machine.js';
import { createScratchDatabase } from './scratch-database.js';
import { migrateOrThrow } from '../server/db/migrate.js';
import { mintTokenForOrganisation } from '../server/tokens/tokens.service.js';
import { newSigningSecret, secretBox } from '../server/webhook-delivery/secrets.js';

const root = resolve(import.meta.dirname, '..');
const args = process.argv.slice(2);
const MINUTES = Number(process.env.BENCH_SOAK_MINUTES ?? 30);
const RATE = Number(process.env.BENCH_SOAK_RATE ?? 150);
const EXPIRED = Number(process.env.BENCH_SOAK_EXPIRED ?? 100_000);
const adminUrl = process.env.BENCH_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const JSON_LINES = args.includes('--json');
/** BENCH_SOAK_ACTIVITY=<file>: every 5 s, the statements of the soak's database running longer than 50 ms, appended there. */
const ACTIVITY = process.env.BENCH_SOAK_ACTIVITY;
/** BENCH_SOAK_SERVER_LOG=<file>: the server's output (its log), appended there. */
const SERVER_LOG = process.env.BENCH_SOAK_SERVER_LOG;
const MINUTE_MS = 60_000;
const TABLES = ['clients', 'events', 'idempotency_keys', 'webhook_deliveries', 'webhook_attempts'] as const;
for (const [name, value] of [
  ['BENCH_SOAK_MINUTES', MINUTES],
  ['BENCH_SOAK_RATE', RATE],
] as const)
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a whole number of at least 1, not "${process.env[name]}"`);
if (MINUTES < 3) throw new Error('BENCH_SOAK_MINUTES must be at least 3: the verdict compares the last minute with the second');

/** The mix of requests, by weight out of 100. */
const MIX = [
  ['create', 25],
  ['update', 15],
  ['read', 25],
  ['list', 15],
  ['search', 10],
  ['replay', 10],
] as const;
type Kind = (typeof MIX)[number][0];
const WORDS = ['Acme', 'Globex', 'Initech', 'Umbrella', 'Hooli', 'Stark', 'Wayne', 'Wonka'];
const SEARCHES = ['globex', 'hooli', 'wonka ltd', 'soak', 'billing.test'];

// ---------------------------------------------------------------------------------------------
// The server, as a child process

interface Server {
  child: ChildProcess;
  url: string;
  metricsUrl: string;
  /** Log lines of level warn (40) and above since the last read, and the purges it logged. */
  warnings: number;
  purges: { at: number; keys: number; events: number }[];
  stop(): Promise<void>;
}

function startServer(env: Record<string, string>): Promise<Server> {
  return new Promise((done, fail) => {
    const child = spawn('node', ['dist/server/main.js'], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let early = '';
    let server: Server | undefined;
    let pending = '';
    const onLine = (line: string) => {
      // Only the lines that matter are parsed: the start, warnings and errors, the purge's report.
      if (!server) {
        early += `${line}\n`;
        if (line.includes('"msg":"listening"')) {
          const parsed = JSON.parse(line) as { url: string; metricsPort: number };
          server = {
            child,
            url: parsed.url,
            metricsUrl: `http://127.0.0.1:${parsed.metricsPort}/metrics`,
            warnings: 0,
            purges: [],
            stop: () =>
              new Promise((stopped) => {
                if (child.exitCode !== null) return stopped();
                child.once('exit', () => stopped());
                child.kill('SIGTERM');
              }),
          };
          done(server);
        }
        return;
      }
      if (/"level":(4|5|6)0/.test(line)) server.warnings++;
      if (line.includes('purged expired')) {
        const { purged } = JSON.parse(line) as { purged: { keys: number; events: number } };
        server.purges.push({ at: Date.now(), ...purged });
      }
    };
    const read = (chunk: Buffer) => {
      if (SERVER_LOG) appendFileSync(SERVER_LOG, chunk);
      pending += chunk.toString('utf8');
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) onLine(line);
    };
    child.stdout!.on('data', read);
    child.stderr!.on('data', read);
    child.on('exit', (code) => {
      if (!server) fail(new Error(`node dist/server/main.js exited with ${code}:\n${early}`));
      else if (!stopping) process.stderr.write(`the server exited with ${code} during the soak\n`);
    });
  });
}
let stopping = false;

// ---------------------------------------------------------------------------------------------
// The webhook receiver

function startReceiver(): Promise<{ url: string; received: () => number; close: () => Promise<void> }> {
  let received = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      received++;
      res.writeHead(204).end();
    });
  });
  return new Promise((listening) =>
    server.listen(0, '127.0.0.1', () =>
      listening({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`,
        received: () => received,
        close: () => {
          server.closeAllConnections();
          return new Promise((closed) => server.close(() => closed()));
        },
      }),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Requests

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

interface Answer {
  status: number;
  body: string;
}

/**
 * One request on a kept-alive connection. A connection the server closed as idle (its keep-alive
 * timeout) just as the request was written on it fails with ECONNRESET before the server read
 * anything: that one is sent again on a new connection, as Node's documentation advises
 * (`request.reusedSocket`); every other failure counts.
 */
function request(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
  retried = false,
): Promise<Answer> {
  return new Promise((done, fail) => {
    const url = new URL(path, base);
    const req = http.request(
      url,
      {
        method,
        agent,
        headers: { ...headers, ...(body !== undefined && { 'Content-Length': String(Buffer.byteLength(body)) }) },
        timeout: 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => done({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', fail);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out after 30 s')));
    req.on('error', (error: NodeJS.ErrnoException) => {
      if (!retried && req.reusedSocket && error.code === 'ECONNRESET') done(request(base, method, path, headers, body, true));
      else fail(error);
    });
    req.end(body);
  });
}

// ---------------------------------------------------------------------------------------------
// What each minute gathers

interface MinuteStats {
  latencies: number[];
  non2xx: number;
  errors: number;
  byKind: Record<Kind, number>;
  /** The highest event-loop lag p99 (s) and pool queue among this minute's scrapes. */
  lagP99: number;
  poolWaiting: number;
  heapUsed: number;
  /** The highest search index lag (s) among this minute's scrapes. */
  searchLag: number;
  /** This minute's looks at PostgreSQL's checkpointer (every 5 s), and how many found it writing a checkpoint. */
  looks: number;
  checkpointing: number;
  /** Latencies by kind of request (ms), for the minute's p99 of each. */
  kindLatencies: Record<Kind, number[]>;
}

const newMinute = (): MinuteStats => ({
  latencies: [],
  non2xx: 0,
  errors: 0,
  byKind: { create: 0, update: 0, read: 0, list: 0, search: 0, replay: 0 },
  lagP99: 0,
  poolWaiting: 0,
  heapUsed: 0,
  searchLag: 0,
  looks: 0,
  checkpointing: 0,
  kindLatencies: { create: [], update: [], read: [], list: [], search: [], replay: [] },
});

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** The p99 of these latencies in ms, to a tenth (0 when there are none). */
function p99Ms(latencies: number[]): number {
  return latencies.length === 0
    ? 0
    : Number(
        percentile(
          latencies.sort((a, b) => a - b),
          99,
        ).toFixed(1),
      );
}

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

/** One value of a Prometheus text exposition: the first sample of `name` whose labels contain `labels`. */
function metric(text: string, name: string, labels = ''): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (!(rest.startsWith(' ') || rest.startsWith('{'))) continue;
    if (labels && !rest.includes(labels)) continue;
    return Number(rest.slice(rest.lastIndexOf(' ') + 1));
  }
  return undefined;
}

interface Minute {
  minute: number;
  requests: number;
  non2xx: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
  rssMiB: number;
  heapUsedMiB: number;
  eventLoopLagP99Ms: number;
  poolWaiting: number;
  /** The search table's highest lag that minute (s). */
  searchLagSeconds: number;
  /** Share of the machine's CPU time the hypervisor took that minute (steal), in %. */
  stealPercent: number;
  serverWarnings: number;
  webhooksDelivered: number;
  backlog: { pendingDeliveries: number; notFannedOut: number };
  expired: { keys: number; events: number; deliveries: number; attempts: number };
  purged: { keys: number; events: number } | null;
  /** Looks that found a checkpoint being written, of the minute's looks ("3/12"). */
  checkpointing: string;
  /** p99 latency of each kind of request that minute (ms). */
  p99ByKindMs: Record<Kind, number>;
  tables: Record<(typeof TABLES)[number], { rows: number; mib: number }>;
  mix: Record<Kind, number>;
}

// ---------------------------------------------------------------------------------------------

async function main() {
  if (!args.includes('--no-build')) execFileSync('npm', ['run', '-s', 'build'], { cwd: root, stdio: 'inherit' });

  const scratch = await createScratchDatabase(adminUrl, 'clients_soak', { poolSize: 2 });
  const { url: databaseUrl, handle } = scratch;
  const { db } = handle;
  const webhookKey = randomBytes(32);
  let server: Server | undefined;
  let receiver: Awaited<ReturnType<typeof startReceiver>> | undefined;
  try {
    await migrateOrThrow(db);
    const soak = await mintTokenForOrganisation(db, { orgName: 'Soak', plan: 'studio' });

    // The expired backlog, set-based, against the current schema: keys a day past their 24 hours;
    // events 31 days old with a succeeded delivery and its attempt each, of an organisation whose
    // one endpoint is disabled (so the worker has nothing to do with them).
    let at = performance.now();
    const retired = await mintTokenForOrganisation(db, { orgName: 'Retired', plan: 'pro' });
    const endpointId = randomUUID();
    await db
      .insertInto('webhook_endpoints')
      .values({
        org_id: retired.orgId,
        env: 'test',
        id: endpointId,
        url: 'https://retired.example/hooks',
        description: 'soak: the expired backlog',
        enabled_events: ['*'],
        disabled: true,
        disabled_reason: 'manual',
        failing_since: null,
        secret: secretBox(webhookKey).seal(newSigningSecret(), endpointId),
        previous_secret: null,
        previous_secret_expires_at: null,
        feed_txid: sql<string>`pg_current_xact_id()`,
        created_at: sql<Date>`now() - interval '60 days'`,
        updated_at: sql<Date>`now() - interval '60 days'`,
      })
      .execute();
    await sql`
      insert into idempotency_keys (org_id, env, key, fingerprint, response_status, response_body, response_headers, created_at, expires_at)
      select ${soak.orgId}::uuid, 'test', gen_random_uuid()::text, md5(i::text), 201, '{"data":{}}', '{}',
             now() - interval '48 hours' - i * interval '1 millisecond', now() - interval '24 hours' - i * interval '1 millisecond'
      from generate_series(1, ${EXPIRED}::int) as i`.execute(db);
    await sql`
      with event as (
        insert into events (org_id, env, id, type, created_at, data)
        select ${retired.orgId}::uuid, 'test', gen_random_uuid(), 'client.created',
               now() - interval '31 days' - i * interval '10 milliseconds', json_build_object('object', json_build_object('id', gen_random_uuid()))
        from generate_series(1, ${EXPIRED}::int) as i
        returning id, created_at
      ), delivery as (
        insert into webhook_deliveries (org_id, id, endpoint_id, event_id, status, attempts, next_attempt_at, created_at)
        select ${retired.orgId}::uuid, gen_random_uuid(), ${endpointId}::uuid, event.id, 'succeeded', 1, event.created_at, event.created_at
        from event
        returning id, event_id, created_at
      )
      insert into webhook_attempts (org_id, id, delivery_id, endpoint_id, event_id, event_type, attempt, attempted_at, duration_ms, status_code, error, succeeded, next_retry_at)
      select ${retired.orgId}::uuid, gen_random_uuid(), delivery.id, ${endpointId}::uuid, delivery.event_id, 'client.created', 1,
             delivery.created_at, 12, 204, null, true, null
      from delivery`.execute(db);
    await sql`analyze`.execute(db);
    const seededMs = performance.now() - at;

    receiver = await startReceiver();
    at = performance.now();
    server = await startServer({
      DATABASE_URL: databaseUrl,
      PORT: '0',
      METRICS_PORT: '0',
      LOG_LEVEL: 'info',
      RATE_LIMIT: '0',
      CONCURRENCY_LIMIT: '0',
      WEBHOOK_SECRET_KEY: webhookKey.toString('base64'),
      WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
    });
    const serverStarted = Date.now();
    const base = server.url;
    const json = { 'Content-Type': 'application/json' };
    const auth = { Authorization: `Bearer ${soak.token}`, ...json };
    const registered = await request(
      base,
      'POST',
      '/webhook-endpoints',
      auth,
      JSON.stringify({ url: receiver.url, enabledEvents: ['*'], description: 'soak receiver' }),
    );
    if (registered.status !== 201) throw new Error(`registering the receiver: ${registered.status} ${registered.body}`);
    const soakEndpointId = (JSON.parse(registered.body) as { data: { id: string } }).data.id;

    // Clients to read and update from the start, and keys to replay.
    const ids: string[] = [];
    const recentCreates: { key: string; body: string }[] = [];
    let created = 0;
    const newBody = () => {
      created++;
      const word = WORDS[created % WORDS.length]!;
      return JSON.stringify({
        name: `${word} ${created % 7 === 0 ? 'Ltd' : 'Soak'} ${randomBytes(4).toString('hex')}`,
        contactName: `Contact ${created}`,
        email: `office${created}@${word.toLowerCase()}.test`,
        ...(created % 3 === 0 && { billingEmail: `ap${created}@billing.test` }),
        currency: 'eur',
        defaultRate: `${(created % 500) + 0.5}`,
      });
    };
    const remember = (answer: Answer) => {
      const id = (JSON.parse(answer.body) as { data: { id: string } }).data.id;
      if (ids.length < 20_000) ids.push(id);
      else ids[Math.floor(Math.random() * ids.length)] = id;
    };
    for (let i = 0; i < 100; i++) {
      const key = randomUUID();
      const body = newBody();
      const answer = await request(base, 'POST', '/clients', { ...auth, 'Idempotency-Key': key }, body);
      if (answer.status !== 201) throw new Error(`a first create: ${answer.status} ${answer.body}`);
      remember(answer);
      recentCreates.push({ key, body });
    }
    const pick = <T>(list: T[]) => list[Math.floor(Math.random() * list.length)]!;

    /** One request of `kind`: its method, path, headers and body, and what to do with its answer. */
    const compose = (
      kind: Kind,
    ): { method: string; path: string; headers: Record<string, string>; body?: string; onAnswer?: (a: Answer) => void } => {
      switch (kind) {
        case 'create': {
          const key = randomUUID();
          const body = newBody();
          return {
            method: 'POST',
            path: '/clients',
            headers: { ...auth, 'Idempotency-Key': key },
            body,
            onAnswer: (answer) => {
              if (answer.status !== 201) return;
              remember(answer);
              recentCreates.push({ key, body });
              if (recentCreates.length > 1000) recentCreates.shift();
            },
          };
        }
        case 'replay': {
          const { key, body } = pick(recentCreates);
          return { method: 'POST', path: '/clients', headers: { ...auth, 'Idempotency-Key': key }, body };
        }
        case 'update':
          return {
            method: 'PATCH',
            path: `/clients/${pick(ids)}`,
            headers: { ...auth, 'Idempotency-Key': randomUUID() },
            body: JSON.stringify({
              notes: `soak update ${randomBytes(6).toString('hex')}`,
              phone: `+44 20 ${Math.floor(Math.random() * 1e8)}`,
            }),
          };
        case 'read':
          return { method: 'GET', path: `/clients/${pick(ids)}`, headers: auth };
        case 'list':
          return { method: 'GET', path: '/clients', headers: auth };
        case 'search':
          return { method: 'GET', path: `/clients?q=${encodeURIComponent(pick(SEARCHES))}`, headers: auth };
      }
    };
    const kinds: Kind[] = MIX.flatMap(([kind, weight]) => Array.from({ length: weight }, () => kind));

    // ------------------------------------------------------------------------------------------
    // The run

    // One connection; a pool of one queues the looks that meet (the scrapes', the watcher's, the minute's).
    const monitor = new pg.Pool({ connectionString: databaseUrl, max: 1 });
    const interval = 1000 / RATE;
    const start = performance.now();
    const end = start + MINUTES * MINUTE_MS;
    let current = newMinute();
    let sent = 0;
    let inFlight = 0;
    let deliveredBefore = receiver.received();
    let cpuBefore = cpuTicks();
    let purgesShown = 0;
    const minutes: Minute[] = [];

    const scrape = async (into: MinuteStats = current) => {
      try {
        const text = await (await fetch(server!.metricsUrl)).text();
        into.lagP99 = Math.max(into.lagP99, metric(text, 'nodejs_eventloop_lag_p99_seconds') ?? 0);
        into.poolWaiting = Math.max(into.poolWaiting, metric(text, 'db_pool_waiting_requests', 'pool="main"') ?? 0);
        into.heapUsed = Math.max(into.heapUsed, metric(text, 'nodejs_heap_size_used_bytes') ?? 0);
        into.searchLag = Math.max(into.searchLag, metric(text, 'search_index_lag_seconds') ?? 0);
      } catch {
        // A missed scrape leaves the minute's figure to the others.
      }
      try {
        // Between checkpoints the checkpointer waits in CheckpointerMain; during one it writes, or
        // sleeps between writes (CheckpointWriteDelay) to spread them (checkpoint_completion_target).
        const { rows } = await monitor.query<{ writing: boolean }>(
          `select coalesce(wait_event, '') <> 'CheckpointerMain' as writing from pg_stat_activity where backend_type = 'checkpointer'`,
        );
        into.looks++;
        if (rows[0]?.writing) into.checkpointing++;
      } catch {
        // As above.
      }
    };
    const scraper = setInterval(scrape, 5000);
    const watcher =
      ACTIVITY === undefined
        ? undefined
        : setInterval(async () => {
            try {
              const { rows } = await monitor.query<{ line: string }>(
                `select concat_ws(' | ', to_char(now(), 'HH24:MI:SS'), pid, round(extract(epoch from now() - query_start) * 1000) || ' ms',
                                  state, wait_event_type || ':' || wait_event, left(regexp_replace(query, '\\s+', ' ', 'g'), 300)) as line
                 from pg_stat_activity
                 where datname = current_database() and pid <> pg_backend_pid() and state <> 'idle'
                   and now() - query_start > interval '50 milliseconds'
                 order by query_start`,
              );
              if (rows.length > 0) appendFileSync(ACTIVITY, `${rows.map((row) => row.line).join('\n')}\n`);
            } catch {
              // A missed look leaves the next one.
            }
          }, 5000);

    const snapshot = async (index: number, stats: MinuteStats): Promise<Minute> => {
      const latencies = stats.latencies.sort((a, b) => a - b);
      const tables = {} as Minute['tables'];
      for (const table of TABLES) {
        const { rows } = await monitor.query<{ rows: string; bytes: string }>(
          `select (select count(*) from ${table}) as rows, pg_total_relation_size('${table}') as bytes`,
        );
        tables[table] = { rows: Number(rows[0]!.rows), mib: Number((Number(rows[0]!.bytes) / 1048576).toFixed(1)) };
      }
      const expired = (
        await monitor.query<Record<keyof Minute['expired'], string>>(`
          select (select count(*) from idempotency_keys where expires_at <= now()) as keys,
                 (select count(*) from events where created_at < now() - interval '30 days') as events,
                 (select count(*) from webhook_deliveries where created_at < now() - interval '30 days') as deliveries,
                 (select count(*) from webhook_attempts where attempted_at < now() - interval '30 days') as attempts`)
      ).rows[0]!;
      const backlog = (
        await monitor.query<{ pending: string; unfanned: string }>(
          `select (select count(*) from webhook_deliveries where status = 'pending') as pending,
                  (select count(*) from events e join webhook_endpoints w on w.org_id = e.org_id and w.id = $2
                   where e.org_id = $1 and e.env = 'test' and (e.txid, e.seq) > (w.feed_txid, w.feed_seq)) as unfanned`,
          [soak.orgId, soakEndpointId],
        )
      ).rows[0]!;
      const delivered = receiver!.received();
      const cpu = cpuTicks();
      const stealPercent = Number(stealBetween(cpuBefore, cpu).toFixed(1));
      cpuBefore = cpu;
      const newPurges = server!.purges.slice(purgesShown);
      purgesShown = server!.purges.length;
      const minute: Minute = {
        minute: index,
        requests: latencies.length + stats.errors,
        non2xx: stats.non2xx,
        errors: stats.errors,
        p50Ms: Number(percentile(latencies, 50).toFixed(1)),
        p99Ms: Number(percentile(latencies, 99).toFixed(1)),
        rssMiB: Number(rssMiB(server!.child.pid!).toFixed(1)),
        heapUsedMiB: Number((stats.heapUsed / 1048576).toFixed(1)),
        eventLoopLagP99Ms: Number((stats.lagP99 * 1000).toFixed(1)),
        poolWaiting: stats.poolWaiting,
        stealPercent,
        searchLagSeconds: Number(stats.searchLag.toFixed(1)),
        serverWarnings: server!.warnings,
        webhooksDelivered: delivered - deliveredBefore,
        backlog: { pendingDeliveries: Number(backlog.pending), notFannedOut: Number(backlog.unfanned) },
        expired: {
          keys: Number(expired.keys),
          events: Number(expired.events),
          deliveries: Number(expired.deliveries),
          attempts: Number(expired.attempts),
        },
        purged:
          newPurges.length === 0
            ? null
            : newPurges.reduce((sum, p) => ({ keys: sum.keys + p.keys, events: sum.events + p.events }), { keys: 0, events: 0 }),
        checkpointing: `${stats.checkpointing}/${stats.looks}`,
        p99ByKindMs: Object.fromEntries(Object.entries(stats.kindLatencies).map(([kind, values]) => [kind, p99Ms(values)])) as Record<
          Kind,
          number
        >,
        tables,
        mix: stats.byKind,
      };
      server!.warnings = 0;
      deliveredBefore = delivered;
      return minute;
    };

    const k = (n: number) => (n >= 10_000 ? `${Math.round(n / 1000)}k` : String(n));
    /** The kind of request with the minute's highest p99, and that p99. */
    const slowest = (m: Minute) => {
      const [kind, ms] = Object.entries(m.p99ByKindMs).sort((a, b) => b[1] - a[1])[0]!;
      return `${kind} ${ms.toFixed(0)}`;
    };
    const printMinute = (m: Minute) => {
      const sizes = TABLES.map(
        (t) => `${t.replace('webhook_', 'wh_').replace('idempotency_', '')} ${k(m.tables[t].rows)}/${m.tables[t].mib}M`,
      ).join(' ');
      console.log(
        `${String(m.minute).padStart(3)} ${String(m.requests).padStart(6)} ${String(m.non2xx).padStart(6)} ${String(m.errors).padStart(4)} ` +
          `${m.p50Ms.toFixed(1).padStart(7)} ${m.p99Ms.toFixed(1).padStart(7)} ${m.rssMiB.toFixed(0).padStart(5)} ${m.heapUsedMiB.toFixed(0).padStart(5)} ` +
          `${m.eventLoopLagP99Ms.toFixed(1).padStart(6)} ${String(m.poolWaiting).padStart(4)} ${m.stealPercent.toFixed(0).padStart(5)} ${m.searchLagSeconds.toFixed(1).padStart(6)} ${String(m.webhooksDelivered).padStart(6)} ` +
          `${`${m.backlog.pendingDeliveries}+${m.backlog.notFannedOut}`.padStart(8)} ` +
          `${`${k(m.expired.keys)}/${k(m.expired.events)}/${k(m.expired.deliveries)}/${k(m.expired.attempts)}`.padStart(19)} ` +
          `${m.purged ? `${k(m.purged.keys)}/${k(m.purged.events)}` : '-'}`.padEnd(10) +
          ` ${m.checkpointing.padStart(5)} ${slowest(m).padEnd(14)} ${sizes}`,
      );
      if (JSON_LINES) console.log(JSON.stringify(m));
    };

    console.log(
      `soak: ${MINUTES} min at ${RATE} requests/s, open loop (${MIX.map(([kind, w]) => `${kind} ${w}%`).join(', ')}); ` +
        `node ${process.version}; server started in ${Math.round(performance.now() - at)} ms; ` +
        `expired backlog seeded in ${(seededMs / 1000).toFixed(1)} s (${EXPIRED} keys past 24 h, ${EXPIRED} events past 30 days with a delivery and an attempt each); ` +
        `the purge's first cycle is due ${Math.round((serverStarted + MINUTE_MS - Date.now()) / 1000)} s after traffic starts`,
    );
    console.log(
      `${'min'.padStart(3)} ${'reqs'.padStart(6)} ${'non2xx'.padStart(6)} ${'err'.padStart(4)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ` +
        `${'RSS M'.padStart(5)} ${'heap'.padStart(5)} ${'lag99'.padStart(6)} ${'wait'.padStart(4)} ${'steal'.padStart(5)} ${'search'.padStart(6)} ${'hooks'.padStart(6)} ${'backlog'.padStart(8)} ` +
        `${'expired k/e/d/a'.padStart(19)} ${'purged k/e'.padEnd(10)} ${'ckpt'.padStart(5)} ${'slowest p99'.padEnd(14)} rows/size of clients events keys deliveries attempts`,
    );

    let failures = 0;
    const send = (due: number) => {
      const kind = kinds[sent % kinds.length]!;
      sent++;
      const spec = compose(kind);
      inFlight++;
      request(base, spec.method, spec.path, spec.headers, spec.body).then(
        (answer) => {
          inFlight--;
          const latency = performance.now() - due;
          current.latencies.push(latency);
          current.kindLatencies[kind].push(latency);
          current.byKind[kind]++;
          if (answer.status < 200 || answer.status > 299) {
            current.non2xx++;
            failures++;
            if (failures <= 5) process.stderr.write(`${kind} ${spec.method} ${spec.path}: ${answer.status} ${answer.body.slice(0, 300)}\n`);
          }
          spec.onAnswer?.(answer);
        },
        (error: Error) => {
          inFlight--;
          current.errors++;
          failures++;
          if (failures <= 5) process.stderr.write(`${kind} ${spec.method} ${spec.path}: ${error.message}\n`);
        },
      );
    };

    // Interleave the kinds so that each stretch of the schedule has the whole mix.
    for (let i = kinds.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [kinds[i], kinds[j]] = [kinds[j]!, kinds[i]!];
    }
    // Sending runs on its own timer, so that gathering a minute's figures never delays a request.
    const pump = () => {
      const now = performance.now();
      // Everything due by now goes out, however late: the schedule does not wait for answers.
      while (start + sent * interval <= now && start + sent * interval < end) send(start + sent * interval);
    };
    const pumper = setInterval(pump, 2);
    for (let minuteIndex = 1; minuteIndex < MINUTES; minuteIndex++) {
      await new Promise((resolve) => setTimeout(resolve, start + minuteIndex * MINUTE_MS - performance.now()));
      const finished = current;
      current = newMinute();
      // The minute's scrapes so far, and one at its end.
      await scrape(finished);
      const minute = await snapshot(minuteIndex, finished);
      minutes.push(minute);
      printMinute(minute);
    }
    await new Promise((resolve) => setTimeout(resolve, end - performance.now()));
    pump();
    clearInterval(pumper);
    // The last minute: what was still in flight at the end belongs to it.
    const deadline = performance.now() + 30_000;
    while (inFlight > 0 && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    await scrape();
    clearInterval(scraper);
    if (watcher) clearInterval(watcher);
    const lastMinute = await snapshot(MINUTES, current);
    minutes.push(lastMinute);
    printMinute(lastMinute);
    await monitor.end();

    // ------------------------------------------------------------------------------------------
    // The verdict

    const second = minutes[1]!;
    const last = minutes.at(-1)!;
    const within = (a: number, b: number) => Math.abs(b - a) / a <= 0.1;
    const change = (a: number, b: number) => `${b >= a ? '+' : ''}${(((b - a) / a) * 100).toFixed(1)}%`;
    const totals = minutes.reduce(
      (sum, m) => ({
        requests: sum.requests + m.requests,
        non2xx: sum.non2xx + m.non2xx,
        errors: sum.errors + m.errors,
        hooks: sum.hooks + m.webhooksDelivered,
      }),
      { requests: 0, non2xx: 0, errors: 0, hooks: 0 },
    );
    const firstClean = minutes.findIndex((m) => m.expired.keys + m.expired.events + m.expired.deliveries + m.expired.attempts === 0);
    const cleanAfter = firstClean >= 0 && minutes.slice(firstClean).every((m) => m.expired.keys + m.expired.events === 0);
    console.log(
      `\ntotal: ${totals.requests} requests (${(totals.requests / (MINUTES * 60)).toFixed(1)}/s of ${RATE} scheduled), ${totals.non2xx} non-2xx, ${totals.errors} errors; ` +
        `${totals.hooks} webhooks delivered; backlog at the end ${last.backlog.pendingDeliveries} pending + ${last.backlog.notFannedOut} not fanned out`,
    );
    console.log(
      `verdict (issue 25: the last minute within 10% of the second):\n` +
        `  RSS  minute 2 ${second.rssMiB} MiB, minute ${last.minute} ${last.rssMiB} MiB (${change(second.rssMiB, last.rssMiB)}): ${within(second.rssMiB, last.rssMiB) ? 'within 10%' : 'NOT within 10%'}\n` +
        `  p99  minute 2 ${second.p99Ms} ms, minute ${last.minute} ${last.p99Ms} ms (${change(second.p99Ms, last.p99Ms)}): ${within(second.p99Ms, last.p99Ms) ? 'within 10%' : 'NOT within 10%'}\n` +
        `  steal (the machine's CPU the hypervisor took): minute 2 ${second.stealPercent}%, minute ${last.minute} ${last.stealPercent}%, ` +
        `the most in a minute ${Math.max(...minutes.map((m) => m.stealPercent))}%\n` +
        `  retention: ${
          cleanAfter
            ? `no key past 24 h and no event past 30 days from minute ${minutes[firstClean]!.minute} to the end (the ${EXPIRED} + ${EXPIRED} seeded purged)`
            : `expired rows remain at the end: ${last.expired.keys} keys, ${last.expired.events} events, ${last.expired.deliveries} deliveries, ${last.expired.attempts} attempts`
        }; purge cycles logged: ${server.purges.map((p) => `+${Math.round((p.at - serverStarted) / 1000)} s ${p.keys} keys ${p.events} events`).join('; ') || 'none'}`,
    );
    if (totals.non2xx + totals.errors > 0) {
      console.log(`\n${totals.non2xx + totals.errors} requests failed: these are not the figures of a healthy run.`);
      process.exitCode = 1;
    }
  } finally {
    stopping = true;
    agent.destroy();
    await server?.stop();
    await receiver?.close();
    await scratch.drop();
  }
}

await main();
