/**
 * `npm run bench:webhooks`: delivery throughput. BENCH_EVENTS events (2000), each written in its
 * own transaction as a client change writes it, wait in the feed of one endpoint; then one worker
 * (server/webhooks/worker.ts, BENCH_CONCURRENCY attempts at once, 16) fans them out, signs and
 * POSTs each to a local receiver that answers 204, and records each attempt. Printed: events
 * delivered per second, from the worker's start to the last attempt recorded. No assertion on
 * speed.
 *
 * On the embedded PGlite by default (in this process, like `npm start`); with BENCH_ADMIN_URL
 * (postgres://postgres@127.0.0.1:5432/postgres) on a scratch PostgreSQL database, dropped after.
 */
import { pino } from 'pino';
import { mintTokenForOrganisation } from '../server/tokens/tokens.service.js';
import { ephemeralWebhookSettings } from '../server/webhooks/settings.js';
import { startWebhookWorker } from '../server/webhooks/worker.js';
import { createTestDatabase } from '../test/support/database.js';
import { insertEndpoint, insertEvent, startReceiver, waitFor } from '../test/support/webhook-worker-fixtures.js';

const events = Number(process.env.BENCH_EVENTS ?? 2000);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 16);
if (process.env.BENCH_ADMIN_URL) process.env.TEST_DATABASE_URL = process.env.BENCH_ADMIN_URL;
else delete process.env.TEST_DATABASE_URL;

const database = await createTestDatabase();
const receiver = await startReceiver();
receiver.answer = () => ({ status: 204 });
const settings = ephemeralWebhookSettings({ allowPrivateNetworks: true });
try {
  const { orgId } = await mintTokenForOrganisation(database.db, { orgName: 'Webhook bench', plan: 'pro' });
  await insertEndpoint(database.db, settings, { orgId, url: receiver.url });
  for (let i = 0; i < events; i++) await insertEvent(database.db, { orgId });

  const started = performance.now();
  const worker = startWebhookWorker({
    db: database.db,
    settings,
    logger: pino({ level: 'warn' }),
    pollIntervalMs: 50,
    timeoutMs: 10_000,
    concurrency,
  });
  const delivered = async () => {
    const { count } = await database.db
      .selectFrom('webhook_attempts')
      .select((eb) => eb.fn.countAll<string>().as('count'))
      .where('succeeded', '=', true)
      .executeTakeFirstOrThrow();
    return Number(count) >= events;
  };
  await waitFor(delivered, 'every event delivered', 600_000);
  const seconds = (performance.now() - started) / 1000;
  await worker.stop();
  const unique = new Set(receiver.requests.map((r) => r.headers['webhook-id'])).size;
  console.log(
    JSON.stringify({
      database: database.kind,
      events,
      concurrency,
      requests: receiver.requests.length,
      uniqueWebhookIds: unique,
      seconds: Number(seconds.toFixed(2)),
      eventsPerSecond: Math.round(events / seconds),
    }),
  );
} finally {
  await receiver.close();
  await database.close();
}
