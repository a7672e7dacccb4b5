/**
 * The delivery worker when the database stops answering without closing its connections: the
 * worker's connections go through a TCP proxy of this test that freezes them mid-attempt (open,
 * carrying nothing more, as when the primary's node is lost behind a balancer or a virtual IP and
 * no FIN or RST ever comes), while new connections go through. Every query has a deadline on the
 * server's side (server/db/connection.ts), so the attempt whose record hung fails, is logged, and
 * gives its slot back; its lease runs out and the delivery is sent again (the same `webhook-id`),
 * and every event written afterwards is delivered. Without the deadline the record's BEGIN waited
 * forever, holding the organisation's share of the slots, and the worker's loop waited with it.
 * And the deadline itself: a query on a frozen connection fails within it (the request pool and
 * the counters' `pool.query` alike) and the next one gets a new connection; a migration, which
 * lifts the statement limit, runs past it. Needs PostgreSQL (TEST_DATABASE_URL): a TCP path to
 * freeze.
 */
import { Writable } from 'node:stream';
import { type Migration, sql } from 'kysely';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DatabaseAnswerTimeout, openPostgres } from '../../server/db/connection.js';
import { migrateOrThrow } from '../../server/db/migrate.js';
import type { DatabaseHandle } from '../../server/db/handle.js';
import { mintTokenForOrganisation } from '../../server/tokens/tokens.service.js';
import { ephemeralWebhookSettings } from '../../server/webhook-delivery/settings.js';
import { startWebhookWorker, type WebhookWorker } from '../../server/webhook-delivery/worker.js';
import { createTestDatabase, type TestDatabase, usingPostgres } from '../support/database.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { insertEndpoint, insertEvent, type Receiver, startReceiver, waitFor } from '../support/webhook-worker-fixtures.js';

/** The worker's statements may run 300 ms; an answer may take 1.5 s before its connection is given up. */
const STATEMENT_TIMEOUT_MS = 300;
const ANSWER_TIMEOUT_MS = 1_500;
/** One attempt's deadline: its lease is 1 s + 5 s. */
const ATTEMPT_TIMEOUT_MS = 1_000;

describe.runIf(usingPostgres)('webhook worker, database connections frozen mid-attempt', { timeout: 60_000 }, () => {
  let database: TestDatabase;
  let proxy: TcpProxy;
  let workerDatabase: DatabaseHandle;
  let receiver: Receiver;
  let worker: WebhookWorker | undefined;
  const logged: { level: number; msg: string; err?: { message?: string } }[] = [];
  const inFlight: number[] = [];

  beforeAll(async () => {
    database = await createTestDatabase();
    const url = new URL(database.url!);
    proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port || 5432) });
    url.host = `127.0.0.1:${proxy.port}`;
    workerDatabase = openPostgres(url.toString(), {
      max: 4,
      statementTimeoutMs: STATEMENT_TIMEOUT_MS,
      answerTimeoutMs: ANSWER_TIMEOUT_MS,
      // Connections frozen under the pool make pg-pool's own errors: the pool drops them.
      onConnectionError: () => {},
    });
    receiver = await startReceiver();
  });

  afterAll(async () => {
    await worker?.stop();
    await receiver?.close();
    await proxy?.close();
    await workerDatabase?.close();
    await database?.close();
  });

  it('gives up the frozen connections, frees the slot and delivers every event, the interrupted one again', async () => {
    const settings = ephemeralWebhookSettings({ allowPrivateNetworks: true });
    const { orgId } = await mintTokenForOrganisation(database.db, { orgName: 'Frozen', plan: 'pro' });
    await insertEndpoint(database.db, settings, { orgId, url: receiver.url });
    const logger = pino(
      { level: 'info' },
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          logged.push(JSON.parse(chunk.toString()));
          done();
        },
      }),
    );
    worker = startWebhookWorker({
      db: workerDatabase.db,
      settings,
      logger,
      pollIntervalMs: 20,
      timeoutMs: ATTEMPT_TIMEOUT_MS,
      // One slot for the organisation: an attempt that never ended would stop its deliveries.
      concurrency: 2,
      observer: { attempt: () => {}, circuitOpened: () => {}, heldBack: () => {}, inFlight: (count) => inFlight.push(count) },
    });

    const ids = (requests = receiver.requests) => requests.map((request) => (JSON.parse(request.body) as { id: string }).id);
    const before = [await insertEvent(database.db, { orgId }), await insertEvent(database.db, { orgId })];
    await waitFor(() => before.every((id) => ids().includes(id)), 'the events before the freeze delivered');

    // The next delivery is answered, but every connection the worker has is frozen as it arrives:
    // its record (and the loop's next pass) go out on connections that will never answer.
    let frozenAt = 0;
    receiver.onRequest = () => {
      if (frozenAt) return;
      proxy.freeze();
      frozenAt = Date.now();
    };
    const interrupted = await insertEvent(database.db, { orgId });
    await waitFor(() => frozenAt > 0, 'the attempt of the interrupted event under way');
    const after = [await insertEvent(database.db, { orgId }), await insertEvent(database.db, { orgId })];

    await waitFor(() => after.every((id) => ids().includes(id)), 'the events written after the freeze delivered', 30_000);
    // The interrupted attempt's record was given up, and said so; nothing waited longer than its
    // deadline and the lease.
    const gaveUp = logged.find((line) => line.level === 50 && line.err?.message === new DatabaseAnswerTimeout(ANSWER_TIMEOUT_MS).message);
    expect(gaveUp, JSON.stringify(logged)).toBeDefined();
    // Sent again once its lease ran out: at least once, with the same webhook-id.
    await waitFor(() => ids().filter((id) => id === interrupted).length >= 2, 'the interrupted event sent again', 20_000);
    const status = () =>
      database.db
        .selectFrom('webhook_deliveries')
        .select('status')
        .where('event_id', '=', interrupted)
        .executeTakeFirstOrThrow()
        .then((row) => row.status);
    await waitFor(async () => (await status()) === 'succeeded', 'the interrupted delivery recorded as succeeded');
    // Every slot came back.
    await waitFor(() => inFlight.at(-1) === 0, 'no attempt in flight');
  });
});

describe.runIf(usingPostgres)('the deadline on every answer', { timeout: 60_000 }, () => {
  let database: TestDatabase;
  let proxy: TcpProxy;
  let handle: DatabaseHandle;

  beforeAll(async () => {
    database = await createTestDatabase();
    const url = new URL(database.url!);
    proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port || 5432) });
    url.host = `127.0.0.1:${proxy.port}`;
    handle = openPostgres(url.toString(), { max: 2, statementTimeoutMs: 200, answerTimeoutMs: 400, onConnectionError: () => {} });
  });

  afterAll(async () => {
    await proxy?.close();
    await handle?.close();
    await database?.close();
  });

  it("cuts a query whose answer does not come, on the request pool and the counters' pool alike", async () => {
    await sql`select 1`.execute(handle.db);
    await handle.counterPool!.query('select 1');
    proxy.freeze();
    const started = Date.now();
    await expect(sql`select 1`.execute(handle.db)).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    await expect(handle.counterPool!.query('select 1')).rejects.toBeInstanceOf(DatabaseAnswerTimeout);
    expect(Date.now() - started).toBeLessThan(3_000);
    // The frozen connections were closed; new ones answer.
    expect((await sql<{ one: number }>`select 1 as one`.execute(handle.db)).rows).toEqual([{ one: 1 }]);
  });

  it('lets a migration run past it, and holds again afterwards', async () => {
    const applied = await sql<{ name: string }>`select name from kysely_migration`.execute(handle.db);
    const list: Record<string, Migration> = Object.fromEntries(applied.rows.map((row) => [row.name, { up: async () => {} }]));
    list['2999_01_01_0001_slow'] = {
      up: async (db) => {
        await sql`select pg_sleep(0.8)`.execute(db);
      },
    };
    expect(await migrateOrThrow(handle.db, list)).toEqual(['2999_01_01_0001_slow']);
    proxy.freeze();
    await expect(sql`select 1`.execute(handle.db)).rejects.toBeInstanceOf(DatabaseAnswerTimeout);
  });
});
