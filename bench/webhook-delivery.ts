/**
 * `npm run bench:webhooks`: delivery throughput against the API's create rate, one worker process
 * and two; then throughput and latency with and without a noisy tenant.
 *
 * First, on PostgreSQL (BENCH_ADMIN_URL, default postgres://postgres@127.0.0.1:5432/postgres;
 * skipped, saying so, when it cannot be reached), each on a scratch database dropped after:
 *
 * - `creates`: the API as `npm start` runs it (server/main.ts, its worker off, rate and
 *   concurrency limits off) takes POST /clients with a fresh Idempotency-Key on each, from
 *   BENCH_CREATE_CONNECTIONS (32) connections for BENCH_CREATE_SECONDS (5): creates per second,
 *   each writing its event, as `npm run bench` measures it.
 * - `one worker`, `two workers`: worker processes as `npm run worker` runs them
 *   (server/worker-main.ts, its defaults), delivering BENCH_THROUGHPUT_EVENTS (20000) events,
 *   committed at once, to one local receiver that answers 204 at once; events per second from the
 *   first delivery to the last. Twice: for one organisation with BENCH_THROUGHPUT_ENDPOINTS (1)
 *   endpoints, then for BENCH_THROUGHPUT_ORGS (4) organisations with as many endpoints each, the
 *   events shared between them. 20,000 makes each round several seconds long, as the creates'
 *   is: over 5,000 (a round of a second or two) the per-endpoint limit's climb from its start and
 *   the pools' first connections were a fair part of what was timed.
 * Then the goal lines of issue 25: one worker at least the create rate (one organisation), two
 *   workers above one (for each), with whether it holds (no exit status on them). One endpoint's
 *   attempts being sent are bounded across all workers by its limit (64 at most), which one worker
 *   alone can fill (its organisation's share is 64 too): there a second worker can add only what
 *   the first leaves. Several organisations' endpoints are what a second worker process is for.
 *
 * Then, in this process, one worker (server/webhook-delivery/worker.ts) with its defaults
 * (128 attempts at once, an adaptive limit per endpoint from 4 up to 64, half the slots per
 * organisation, 10 s per attempt), delivering to local receivers. Two rounds, each on a fresh
 * database:
 *
 * - `quiet`: a normal organisation alone, with BENCH_ENDPOINTS endpoints (1) answering 204.
 * - `noisy`: the same, beside a noisy organisation whose 16 endpoints accept connections and never
 *   answer, with BENCH_NOISY_EVENTS events (20) of its own waiting for each of them (320
 *   deliveries), its attempts under way (4 per endpoint, their starting limit) before the normal
 *   organisation's start.
 *
 * In each round: throughput, BENCH_EVENTS events (2000) of the normal organisation, committed at
 * once with its endpoints, from the first delivery to the last (and how long the first took after
 * the commit); then latency, BENCH_LATENCY_EVENTS (100) events written one every 100 ms while
 * the worker runs, each timed from its write to its arrival at the receiver. Printed: one JSON
 * line per round. No assertion on speed.
 *
 * On the embedded PGlite by default (in this process, like `npm start`); with BENCH_ADMIN_URL
 * (postgres://postgres@127.0.0.1:5432/postgres) on a scratch PostgreSQL database, dropped after.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { loadavg } from 'node:os';
import autocannon from 'autocannon';
import { sql } from 'kysely';
import pg from 'pg';
import { pino } from 'pino';
import { mintTokenForOrganisation } from '../server/tokens/tokens.service.js';
import { secretBox } from '../server/webhook-delivery/secrets.js';
import { ephemeralWebhookSettings } from '../server/webhook-delivery/settings.js';
import { DEFAULT_CONCURRENCY, ENDPOINT_START_LIMIT, organisationShare, startWebhookWorker } from '../server/webhook-delivery/worker.js';
import { createTestDatabase } from '../test/support/database.js';
import { root, stopProcess } from '../test/support/processes.js';
import { insertEndpoint, insertEvent, type Receiver, startReceiver, waitFor } from '../test/support/webhook-worker-fixtures.js';

const events = Number(process.env.BENCH_EVENTS ?? 2000);
const endpoints = Number(process.env.BENCH_ENDPOINTS ?? 1);
const noisyEvents = Number(process.env.BENCH_NOISY_EVENTS ?? 20);
const latencyEvents = Number(process.env.BENCH_LATENCY_EVENTS ?? 100);
const throughputEvents = Number(process.env.BENCH_THROUGHPUT_EVENTS ?? 20000);
const throughputEndpoints = Number(process.env.BENCH_THROUGHPUT_ENDPOINTS ?? 1);
const throughputOrgs = Number(process.env.BENCH_THROUGHPUT_ORGS ?? 4);
const createSeconds = Number(process.env.BENCH_CREATE_SECONDS ?? 5);
const createConnections = Number(process.env.BENCH_CREATE_CONNECTIONS ?? 32);
const adminUrl = process.env.BENCH_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const key = randomBytes(32);

/** The rounds in this process run on PostgreSQL only when BENCH_ADMIN_URL says so. */
function useDatabase(postgres: boolean) {
  if (postgres) process.env.TEST_DATABASE_URL = adminUrl;
  else delete process.env.TEST_DATABASE_URL;
}

const settings = ephemeralWebhookSettings({ allowPrivateNetworks: true, secrets: secretBox(key) });
const load = () => loadavg()[0]!.toFixed(1);
const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;

async function round(noisy: boolean) {
  const database = await createTestDatabase();
  const receivers: Receiver[] = [];
  const receiver = await startReceiver();
  receiver.answer = () => ({ status: 204 });
  receivers.push(receiver);
  const arrived = new Map<string, number>();
  receiver.onRequest = (request) => arrived.set(request.headers['webhook-id']!, performance.now());
  const db = database.db;
  try {
    const normal = await mintTokenForOrganisation(db, { orgName: 'Normal', plan: 'pro' });

    let hanging: Receiver | undefined;
    if (noisy) {
      hanging = await startReceiver();
      hanging.answer = () => 'hang';
      receivers.unshift(hanging);
      const { orgId } = await mintTokenForOrganisation(db, { orgName: 'Noisy', plan: 'pro' });
      for (let i = 0; i < 16; i++) await insertEndpoint(db, settings, { orgId, url: `${hanging.url}/${i}` });
      for (let i = 0; i < noisyEvents; i++) await insertEvent(db, { orgId });
    }
    const worker = startWebhookWorker({ db, settings, logger: pino({ level: 'warn' }), pollIntervalMs: 1000, timeoutMs: 10_000 });
    try {
      if (hanging) {
        const held = hanging;
        const expected = Math.min(organisationShare(DEFAULT_CONCURRENCY), 16 * ENDPOINT_START_LIMIT);
        await waitFor(() => held.open.now >= expected, 'the noisy attempts under way', 60_000);
      }

      // The normal organisation's endpoints and events, committed at once: the endpoints' place in
      // the feed is their transaction, whose events come after it.
      const started = performance.now();
      await db.transaction().execute(async (trx) => {
        for (let i = 0; i < endpoints; i++) await insertEndpoint(trx, settings, { orgId: normal.orgId, url: `${receiver.url}/${i}` });
        await sql`
          insert into events (org_id, env, id, type, created_at, data)
          select ${normal.orgId}, 'test', gen_random_uuid(), 'client.created', now(), ${JSON.stringify({ object: { id: 'bench' } })}
          from generate_series(1, ${events})`.execute(trx);
      });
      await waitFor(() => arrived.size >= events * endpoints, 'every event delivered', 600_000);
      // From the first delivery to the last: before the first, the fan-out may wait for a
      // transaction anywhere on the PostgreSQL server to end (the feed's horizon), which says
      // nothing of the worker.
      const times = [...arrived.values()];
      const first = Math.min(...times);
      const seconds = (Math.max(...times) - first) / 1000;

      const written = new Map<string, number>();
      for (let i = 0; i < latencyEvents; i++) {
        const at = performance.now();
        written.set(await insertEvent(db, { orgId: normal.orgId }), at);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await waitFor(() => [...written.keys()].every((id) => arrived.has(id)), 'the timed events delivered', 120_000);
      const latencies = [...written].map(([id, at]) => arrived.get(id)! - at).sort((a, b) => a - b);

      return {
        round: noisy ? 'noisy' : 'quiet',
        database: database.kind,
        events,
        endpoints,
        noisyOpenAtOnce: hanging?.open.max ?? 0,
        firstDeliveryMs: Math.round(first - started),
        seconds: Number(seconds.toFixed(2)),
        eventsPerSecond: Math.round((events * endpoints) / seconds),
        latencyMs: {
          p50: Math.round(percentile(latencies, 50)),
          p99: Math.round(percentile(latencies, 99)),
          max: Math.round(latencies.at(-1)!),
        },
      };
    } finally {
      // The receivers first: closing them ends the attempts they hold, so the worker stops at once.
      await Promise.all(receivers.map((r) => r.close()));
      await worker.stop();
    }
  } finally {
    await database.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Deliveries against creates, on PostgreSQL, with worker processes.
// ---------------------------------------------------------------------------------------------

async function reachable(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url });
  try {
    await client.connect();
    await client.end();
    return true;
  } catch {
    return false;
  }
}

/** Creates per second through the real API, as `npm start` runs it, on a scratch database. */
async function createRate(): Promise<{ perSecond: number; non2xx: number; errors: number; load: string }> {
  useDatabase(true);
  const database = await createTestDatabase();
  try {
    const { token } = await mintTokenForOrganisation(database.db, { orgName: 'Creates', plan: 'studio' });
    const server = await startProcess('server/main.ts', database.url!, 'listening', {
      WEBHOOK_WORKER: 'false',
      RATE_LIMIT: '0',
      CONCURRENCY_LIMIT: '0',
      PORT: '0',
    });
    try {
      const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
      const body = JSON.stringify({ name: 'Bench client', email: 'bench@example.com', defaultRate: '120.50' });
      const run = (seconds: number) =>
        autocannon({
          url: server.url!,
          connections: createConnections,
          duration: seconds,
          requests: [
            {
              method: 'POST',
              path: '/clients',
              body,
              headers,
              setupRequest: (request: autocannon.Request) => ({ ...request, headers: { ...headers, 'idempotency-key': randomUUID() } }),
            },
          ],
        });
      await run(1); // warm-up: the validator, the prepared statements, the pool
      const during = load();
      const result = await run(createSeconds);
      return {
        perSecond: Math.round(result.requests.average),
        non2xx: result.non2xx,
        errors: result.errors + result.timeouts,
        load: during,
      };
    } finally {
      await stopProcess(server);
    }
  } finally {
    await database.close();
  }
}

/**
 * Starts an entry point (server/main.ts, server/worker-main.ts) through tsx, as `npm start` and
 * `npm run worker` run it (LOG_LEVEL info, as `npm run bench` runs the server), and waits for the
 * log line `ready`; its output is dropped after that. The server's URL, when it says one.
 */
function startProcess(
  entry: string,
  databaseUrl: string,
  ready: string,
  env: Record<string, string> = {},
): Promise<ChildProcess & { url?: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['--import', 'tsx', entry], {
      cwd: root,
      env: {
        ...process.env,
        DATABASE_URL: databaseUrl,
        WEBHOOK_SECRET_KEY: key.toString('base64'),
        WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
        LOG_LEVEL: 'info',
        ...env,
      },
    });
    let output = '';
    let started = false;
    const timer = setTimeout(() => fail(new Error(`${entry} did not start:\n${output}`)), 60_000);
    child.stderr.on('data', (d) => (output += d));
    child.stdout.on('data', (d) => {
      if (started) return;
      output += d;
      const line = output.split('\n').find((l) => l.includes(`"msg":"${ready}"`));
      if (line) {
        started = true;
        clearTimeout(timer);
        const url = (JSON.parse(line) as { url?: string }).url;
        done(Object.assign(child, url ? { url } : {}));
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (!started) fail(new Error(`${entry} exited with ${code}:\n${output}`));
    });
  });
}

/** Events per second delivered by `workers` worker processes to one fast receiver, for the endpoints of `orgs` organisations. */
async function deliveryRate(
  workers: number,
  orgs: number,
): Promise<{ perSecond: number; seconds: number; duplicates: number; load: string }> {
  useDatabase(true);
  const database = await createTestDatabase();
  const receiver = await startReceiver();
  receiver.answer = () => ({ status: 204 });
  const arrived = new Map<string, number>();
  let duplicates = 0;
  receiver.onRequest = (request) => {
    const id = `${request.path} ${request.headers['webhook-id']}`;
    if (arrived.has(id)) duplicates++;
    else arrived.set(id, performance.now());
  };
  const children: ChildProcess[] = [];
  try {
    const orgIds: string[] = [];
    for (let o = 0; o < orgs; o++)
      orgIds.push((await mintTokenForOrganisation(database.db, { orgName: `Deliveries ${o}`, plan: 'pro' })).orgId);
    for (let i = 0; i < workers; i++) children.push(await startProcess('server/worker-main.ts', database.url!, 'webhook worker started'));
    await database.db.transaction().execute(async (trx) => {
      for (const [o, orgId] of orgIds.entries()) {
        for (let i = 0; i < throughputEndpoints; i++) await insertEndpoint(trx, settings, { orgId, url: `${receiver.url}/${o}/${i}` });
        await sql`
          insert into events (org_id, env, id, type, created_at, data)
          select ${orgId}, 'test', gen_random_uuid(), 'client.created', now(), ${JSON.stringify({ object: { id: 'bench' } })}
          from generate_series(1, ${Math.round(throughputEvents / orgs)})`.execute(trx);
      }
    });
    const total = Math.round(throughputEvents / orgs) * orgs * throughputEndpoints;
    await waitFor(() => arrived.size >= total / 2, 'half the events delivered', 600_000);
    const during = load();
    await waitFor(() => arrived.size >= total, 'every event delivered', 600_000);
    await new Promise((resolve) => setTimeout(resolve, 300)); // a duplicate would show by now
    const times = [...arrived.values()];
    const seconds = (Math.max(...times) - Math.min(...times)) / 1000;
    return { perSecond: Math.round(total / seconds), seconds: Number(seconds.toFixed(2)), duplicates, load: during };
  } finally {
    await Promise.all(children.map(stopProcess));
    await receiver.close();
    await database.close();
  }
}

if (await reachable(adminUrl)) {
  const creates = await createRate();
  console.log(JSON.stringify({ round: 'creates', database: 'postgres', ...creates, loadAverage: creates.load }));
  const rates: Record<number, { one: number; two: number }> = {};
  for (const orgs of [1, throughputOrgs]) {
    const [one, two] = [await deliveryRate(1, orgs), await deliveryRate(2, orgs)];
    for (const [round, rate] of [
      ['one worker', one],
      ['two workers', two],
    ] as const)
      console.log(
        JSON.stringify({
          round,
          database: 'postgres',
          events: throughputEvents,
          organisations: orgs,
          endpoints: throughputEndpoints,
          ...rate,
        }),
      );
    rates[orgs] = { one: one.perSecond, two: two.perSecond };
  }
  const holds = (ok: boolean) => (ok ? 'holds' : 'DOES NOT HOLD');
  const single = rates[1]!;
  console.log(
    `goal: one worker (${single.one}/s, one organisation) >= the create rate (${creates.perSecond}/s): ${holds(single.one >= creates.perSecond)}`,
  );
  for (const [orgs, { one, two }] of Object.entries(rates))
    console.log(
      `goal: two workers (${two}/s) > one worker (${one}/s), ${orgs === '1' ? 'one organisation' : `${orgs} organisations`}: ${holds(two > one)}`,
    );
} else {
  console.log(`PostgreSQL at ${adminUrl} cannot be reached: no create rate and no worker processes (set BENCH_ADMIN_URL)`);
}

useDatabase(Boolean(process.env.BENCH_ADMIN_URL));
for (const noisy of [false, true]) console.log(JSON.stringify(await round(noisy)));
