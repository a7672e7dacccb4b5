/**
 * The worker as its own process (`server/worker-main.ts`, what `npm run worker` runs), on
 * PostgreSQL: one killed in the middle of a delivery, whose delivery another worker sends again
 * once the lease has run out; and two at once on one database, sending each event exactly once.
 * And the worker inside `npm start` (server/main.ts), which delivers without a separate process.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { Webhook } from 'standardwebhooks';
import { afterEach, describe, expect, it } from 'vitest';
import { mintTokenForOrganisation } from '../../server/tokens/tokens.service.js';
import { secretBox } from '../../server/webhook-delivery/secrets.js';
import { systemResolve, type WebhookSettings } from '../../server/webhook-delivery/settings.js';
import { createTestDatabase, type TestDatabase, usingPostgres } from '../support/database.js';
import { root, startServerProcess, stopProcess } from '../support/processes.js';
import { insertEndpoint, insertEvent, type Receiver, startReceiver, waitFor } from '../support/webhook-worker-fixtures.js';

const key = randomBytes(32);
const settings: WebhookSettings = { secrets: secretBox(key), allowPrivateNetworks: true, resolve: systemResolve, timeoutMs: 10_000 };

let database: TestDatabase | undefined;
let receiver: Receiver | undefined;
const children: ChildProcess[] = [];

afterEach(async () => {
  // A process killed by a signal has no exit code: stopProcess would wait for an exit long past.
  await Promise.all(
    children
      .splice(0)
      .filter((c) => c.signalCode === null)
      .map(stopProcess),
  );
  await receiver?.close();
  await database?.close();
  database = undefined;
});

/** A port nothing listens on now. */
async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((listening) => probe.listen(0, '127.0.0.1', listening));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise((closed) => probe.close(closed));
  return port;
}

/** Starts a worker process and waits until it says it has started. */
function startWorker(databaseUrl: string, env: Record<string, string> = {}): Promise<ChildProcess & { output: () => string }> {
  return new Promise((done, fail) => {
    // Node itself with tsx's loader (not the tsx wrapper): SIGKILL must reach the worker, not a parent.
    const child = spawn(process.execPath, ['--import', 'tsx', 'server/worker-main.ts'], {
      cwd: root,
      env: {
        ...process.env,
        DATABASE_URL: databaseUrl,
        WEBHOOK_SECRET_KEY: key.toString('base64'),
        WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
        WEBHOOK_POLL_INTERVAL_MS: '50',
        LOG_LEVEL: 'info',
        ...env,
      },
    });
    children.push(child);
    let output = '';
    const timer = setTimeout(() => fail(new Error(`worker did not start:\n${output}`)), 60_000);
    child.stderr.on('data', (d) => (output += d));
    child.stdout.on('data', (d) => {
      output += d;
      if (output.includes('webhook worker started')) {
        clearTimeout(timer);
        done(Object.assign(child, { output: () => output }));
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`worker exited with ${code}:\n${output}`));
    });
  });
}

describe.runIf(usingPostgres)('worker processes on one PostgreSQL', () => {
  it('a worker killed mid-delivery: another sends the event again once the lease has run out, with the same webhook-id', {
    timeout: 120_000,
  }, async () => {
    database = await createTestDatabase();
    const db = database.db;
    receiver = await startReceiver();
    const { orgId } = await mintTokenForOrganisation(db, { orgName: 'Killed worker', plan: 'pro' });
    const endpoint = await insertEndpoint(db, settings, { orgId, url: receiver.url });
    const eventId = await insertEvent(db, { orgId });

    // The first worker's attempt is held open by the receiver, and the worker killed meanwhile.
    // Its lease: 5 s of timeout + 5 s, so the second worker waits about ten seconds.
    receiver.answer = (_, index) => (index === 0 ? 'hang' : { status: 200 });
    const first = await startWorker(database.url!, { WEBHOOK_TIMEOUT_MS: '5000' });
    await waitFor(() => receiver!.requests.length >= 1, 'the first attempt', 60_000);
    const exited = new Promise((resolve) => first.once('exit', resolve));
    first.kill('SIGKILL');
    await exited;
    const held = await db.selectFrom('webhook_deliveries').selectAll().where('endpoint_id', '=', endpoint.id).executeTakeFirstOrThrow();
    expect([held.status, held.attempts, held.lease_id !== null]).toEqual(['pending', 0, true]);

    await startWorker(database.url!, { WEBHOOK_TIMEOUT_MS: '1000' });
    await waitFor(() => receiver!.requests.length >= 2, 'the attempt after the lease ran out', 60_000);
    const [lost, again] = receiver.requests;
    expect(again!.headers['webhook-id']).toBe(eventId);
    expect(again!.headers['webhook-id']).toBe(lost!.headers['webhook-id']);
    expect(again!.body).toBe(lost!.body);
    expect(new Webhook(endpoint.secret).verify(again!.body, again!.headers)).toMatchObject({ id: eventId });
    const attempts = await waitFor(
      async () => {
        const rows = await db.selectFrom('webhook_attempts').selectAll().where('endpoint_id', '=', endpoint.id).execute();
        return rows.length > 0 ? rows : undefined;
      },
      'the attempt recorded',
      30_000,
    );
    // The killed worker's attempt left no record; the one that was answered did.
    expect(attempts.map((a) => [a.attempt, a.succeeded, a.status_code])).toEqual([[1, true, 200]]);
  });

  it('two workers on one database: every event delivered exactly once', { timeout: 180_000 }, async () => {
    database = await createTestDatabase();
    const db = database.db;
    receiver = await startReceiver();
    const tenants = await Promise.all([1, 2].map((n) => mintTokenForOrganisation(db, { orgName: `Two workers ${n}`, plan: 'pro' })));
    const endpoints = await Promise.all(tenants.map(({ orgId }) => insertEndpoint(db, settings, { orgId, url: receiver!.url })));
    const perTenant = 150;
    const before = perTenant / 3;
    // Some events wait before the workers start, the rest arrive while they run.
    for (let i = 0; i < before; i++) await Promise.all(tenants.map(({ orgId }) => insertEvent(db, { orgId })));
    // Each serves its metrics, as `npm run worker` does with METRICS_PORT.
    const metricsPorts = [await freePort(), await freePort()];
    await Promise.all(metricsPorts.map((port) => startWorker(database!.url!, { METRICS_PORT: String(port) })));
    for (let i = before; i < perTenant; i++) await Promise.all(tenants.map(({ orgId }) => insertEvent(db, { orgId })));

    const total = perTenant * tenants.length;
    await waitFor(
      async () => {
        const { count } = await db
          .selectFrom('webhook_deliveries')
          .select((eb) => eb.fn.countAll<string>().as('count'))
          .where('status', '=', 'succeeded')
          .executeTakeFirstOrThrow();
        return Number(count) === total;
      },
      'every delivery to succeed',
      150_000,
    );
    const perId = new Map<string, number>();
    for (const request of receiver.requests)
      perId.set(request.headers['webhook-id']!, (perId.get(request.headers['webhook-id']!) ?? 0) + 1);
    expect(perId.size).toBe(total);
    expect([...perId.values()].filter((n) => n !== 1)).toEqual([]);
    const events = await db.selectFrom('events').select('id').execute();
    expect(new Set(perId.keys())).toEqual(new Set(events.map((e) => e.id)));
    const attempts = await db.selectFrom('webhook_attempts').select(['attempt', 'succeeded', 'endpoint_id']).execute();
    expect(attempts).toHaveLength(total);
    expect(attempts.every((a) => a.attempt === 1 && a.succeeded)).toBe(true);
    for (const endpoint of endpoints) expect(attempts.filter((a) => a.endpoint_id === endpoint.id)).toHaveLength(perTenant);
    // The processes' own count agrees: every attempt made once, by one of them.
    let counted = 0;
    for (const port of metricsPorts) {
      const scrape = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      counted += Number(/^webhook_attempts_total\{outcome="succeeded"\} (\d+)$/m.exec(scrape)![1]);
    }
    expect(counted).toBe(total);
  });

  it('npm start delivers by itself (its worker runs inside), and stops it cleanly on SIGTERM', { timeout: 120_000 }, async () => {
    database = await createTestDatabase();
    const db = database.db;
    receiver = await startReceiver();
    const { orgId } = await mintTokenForOrganisation(db, { orgName: 'Worker inside', plan: 'pro' });
    const endpoint = await insertEndpoint(db, settings, { orgId, url: receiver.url });
    const eventId = await insertEvent(db, { orgId });
    const server = await startServerProcess({
      DATABASE_URL: database.url,
      WEBHOOK_SECRET_KEY: key.toString('base64'),
      WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
      WEBHOOK_POLL_INTERVAL_MS: '50',
    });
    children.push(server.child);
    await waitFor(() => receiver!.requests.length >= 1, 'the delivery', 60_000);
    expect(new Webhook(endpoint.secret).verify(receiver.requests[0]!.body, receiver.requests[0]!.headers)).toMatchObject({ id: eventId });
    const exited = new Promise<number | null>((resolve) => server.child.once('exit', resolve));
    server.child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});
