/**
 * `npm run bench:webhooks`: delivery throughput and latency, with and without a noisy tenant.
 *
 * One worker (server/webhook-delivery/worker.ts) with its defaults (16 attempts at once, 4 per endpoint,
 * half the slots per organisation, 10 s per attempt), delivering to local receivers. Two rounds,
 * each on a fresh database:
 *
 * - `quiet`: a normal organisation alone, with BENCH_ENDPOINTS endpoints (1) answering 204.
 * - `noisy`: the same, beside a noisy organisation whose 16 endpoints accept connections and never
 *   answer, with BENCH_NOISY_EVENTS events (20) of its own waiting for each of them (320
 *   deliveries), its attempts under way before the normal organisation's start.
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
import { pino } from 'pino';
import { sql } from 'kysely';
import { mintTokenForOrganisation } from '../server/tokens/tokens.service.js';
import { ephemeralWebhookSettings } from '../server/webhook-delivery/settings.js';
import { DEFAULT_CONCURRENCY, startWebhookWorker } from '../server/webhook-delivery/worker.js';
import { createTestDatabase } from '../test/support/database.js';
import { insertEndpoint, insertEvent, type Receiver, startReceiver, waitFor } from '../test/support/webhook-worker-fixtures.js';

const events = Number(process.env.BENCH_EVENTS ?? 2000);
const endpoints = Number(process.env.BENCH_ENDPOINTS ?? 1);
const noisyEvents = Number(process.env.BENCH_NOISY_EVENTS ?? 20);
const latencyEvents = Number(process.env.BENCH_LATENCY_EVENTS ?? 100);
if (process.env.BENCH_ADMIN_URL) process.env.TEST_DATABASE_URL = process.env.BENCH_ADMIN_URL;
else delete process.env.TEST_DATABASE_URL;

const settings = ephemeralWebhookSettings({ allowPrivateNetworks: true });
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
        await waitFor(() => held.open.now >= DEFAULT_CONCURRENCY / 2, 'the noisy attempts under way', 60_000);
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

for (const noisy of [false, true]) console.log(JSON.stringify(await round(noisy)));
