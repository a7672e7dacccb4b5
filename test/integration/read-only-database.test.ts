/**
 * A database that cannot write, as a node is in a failover (a standby, a replica Patroni already
 * calls primary before PostgreSQL has promoted it, a demoted primary): here, the test's database
 * set `default_transaction_read_only = on` and its sessions ended, so that every new session is
 * read only and every write fails with SQLSTATE 25006. The server process answers each write 503
 * `service_unavailable` with `Retry-After`, never 500; reads go on; `/readyz` says 503; its
 * webhook worker survives. Once the setting is reset, writes succeed again without a restart:
 * the read-only sessions were closed, not kept in the pool. In process: the primary's pool closes
 * such a connection (and those opened before it) on release, a replica's pool keeps its own, and
 * the purge survives and resumes. PostgreSQL only (TEST_DATABASE_URL): PGlite has no sessions.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRequestPool } from '../../server/db/connection.js';
import { openDatabase } from '../../server/db/database.js';
import { isDatabaseUnavailable } from '../../server/db/faults.js';
import { scheduleHousekeeping } from '../../server/lifecycle/housekeeping.js';
import { mintTokenForOrganisation } from '../../server/tokens/tokens.service.js';
import { secretBox } from '../../server/webhook-delivery/secrets.js';
import { systemResolve, type WebhookSettings } from '../../server/webhook-delivery/settings.js';
import { createTestDatabase, type TestDatabase, usingPostgres } from '../support/database.js';
import { type RunningServer, startServerProcess } from '../support/processes.js';
import { insertEndpoint, type Receiver, startReceiver, waitFor } from '../support/webhook-worker-fixtures.js';

const key = randomBytes(32);
const settings: WebhookSettings = { secrets: secretBox(key), allowPrivateNetworks: true, resolve: systemResolve, timeoutMs: 10_000 };

describe.skipIf(!usingPostgres)('a database that cannot write (PostgreSQL)', () => {
  let database: TestDatabase;
  let admin: pg.Client;
  let name: string;

  beforeAll(async () => {
    database = await createTestDatabase();
    name = new URL(database.url!).pathname.slice(1);
    // On the server's own database (not the test's), so that its session is not one this test ends.
    admin = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
    await admin.connect();
  }, 60_000);

  afterAll(async () => {
    await admin?.query(`alter database ${name} reset default_transaction_read_only`).catch(() => {});
    await admin?.end();
    await database?.close();
  });

  /** Every new session of the database read only (or not), and every session it has now ended. */
  async function setReadOnly(on: boolean) {
    await admin.query(`alter database ${name} ${on ? 'set default_transaction_read_only = on' : 'reset default_transaction_read_only'}`);
    if (on)
      await admin.query(`select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and backend_type = 'client backend'`, [
        name,
      ]);
  }

  describe('the server process', () => {
    let server: RunningServer;
    let receiver: Receiver;
    let token: string;
    let orgId: string;

    beforeAll(async () => {
      ({ token, orgId } = await mintTokenForOrganisation(database.db, { orgName: 'Read only', plan: 'pro' }));
      receiver = await startReceiver();
      await insertEndpoint(database.db, settings, { orgId, url: receiver.url });
      server = await startServerProcess({
        DATABASE_URL: database.url,
        RATE_LIMIT: '1000000',
        CONCURRENCY_LIMIT: '0',
        WEBHOOK_SECRET_KEY: key.toString('base64'),
        WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
        WEBHOOK_POLL_INTERVAL_MS: '50',
      });
    }, 120_000);

    afterAll(async () => {
      await server?.stop();
      await receiver?.close();
    });

    const alive = () => server.child.exitCode === null && server.child.signalCode === null;
    const call = async (method: string, path: string, body?: unknown) => {
      const response = await fetch(`${server.url}${path}`, {
        method,
        headers: {
          Authorization: `Bearer ${token}`,
          ...(body !== undefined && { 'Content-Type': 'application/json' }),
          ...(method !== 'GET' && method !== 'DELETE' && { 'Idempotency-Key': randomUUID() }),
        },
        ...(body !== undefined && { body: JSON.stringify(body) }),
      });
      const text = await response.text();
      return { status: response.status, retryAfter: response.headers.get('Retry-After'), body: text ? JSON.parse(text) : undefined };
    };
    const deliveredEvents = () => new Set(receiver.requests.map((request) => (JSON.parse(request.body) as { id: string }).id));

    it('answers every write 503 with Retry-After while read only, then writes again without a restart', { timeout: 120_000 }, async () => {
      // Before: a client to change, one to delete, and the worker delivering.
      const kept = await call('POST', '/clients', { name: 'kept' });
      const doomed = await call('POST', '/clients', { name: 'doomed' });
      expect([kept.status, doomed.status]).toEqual([201, 201]);
      await waitFor(() => receiver.requests.length >= 2, 'the deliveries of the first two events');
      const logBefore = server.stdout().length;

      await setReadOnly(true);
      const writes = [
        () => call('POST', '/clients', { name: 'refused' }),
        () => call('PATCH', `/clients/${kept.body.data.id}`, { notes: 'refused' }),
        () => call('DELETE', `/clients/${doomed.body.data.id}`),
        () => call('POST', '/tokens', { name: 'refused', scopes: ['clients:read'] }),
        () => call('POST', '/webhook-endpoints', { url: receiver.url, enabledEvents: ['*'] }),
      ];
      const answers = [];
      // Several rounds at once: more connections than one, each made read only.
      for (let round = 0; round < 6; round++) answers.push(...(await Promise.all(writes.map((write) => write()))));
      for (const answer of answers) {
        expect(answer).toMatchObject({ status: 503, body: { error: { code: 'service_unavailable' } } });
        expect(Number(answer.retryAfter)).toBeGreaterThan(0);
      }
      // They were refused for being read only (25006), not only for the sessions ended.
      expect(server.stdout().slice(logBefore)).toMatch(/"code":"25006"/);
      // Reads go on.
      expect((await call('GET', `/clients/${kept.body.data.id}`)).status).toBe(200);
      expect((await call('GET', '/clients')).status).toBe(200);
      // Readiness says so within its second.
      await waitFor(async () => (await fetch(`${server.url}/readyz`)).status === 503, 'readiness to say the database is read only');
      const ready = await fetch(`${server.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(Number(ready.headers.get('Retry-After'))).toBeGreaterThan(0);
      // The worker's passes fail meanwhile, and are logged; the process lives on.
      await waitFor(() => server.stdout().slice(logBefore).includes('webhook worker pass failed'), 'a failed pass');
      expect(alive()).toBe(true);
      expect((await fetch(`${server.url}/healthz`)).status).toBe(200);

      await setReadOnly(false);
      // Without a restart: each read-only session is closed once it has failed a write (and those
      // opened before it with it), so consecutive successes come soon, not never.
      const started = Date.now();
      let consecutive = 0;
      let refusedAfterReset = 0;
      while (consecutive < 30) {
        const answer = await call('POST', '/clients', { name: 'after' });
        if (answer.status === 201) consecutive++;
        else {
          expect(answer).toMatchObject({ status: 503, body: { error: { code: 'service_unavailable' } } });
          refusedAfterReset++;
          consecutive = 0;
        }
        expect(Date.now() - started, `${refusedAfterReset} refused since the reset`).toBeLessThan(15_000);
      }
      // A refused session fails at most once: no more refusals than the pool's 10 connections.
      expect(refusedAfterReset).toBeLessThanOrEqual(10);
      // The change, the delete and the token refused before now go through.
      for (const answer of await Promise.all(writes.slice(1, 4).map((write) => write()))) expect(answer.status).toBeLessThan(300);
      await waitFor(async () => (await fetch(`${server.url}/readyz`)).status === 200, 'readiness once it can write');

      // The worker delivers again: the events of the writes made since.
      const { rows } = await sql<{ id: string }>`select id from events where org_id = ${orgId}`.execute(database.db);
      await waitFor(() => rows.every((row) => deliveredEvents().has(row.id)), 'every event delivered', 30_000);
      expect(alive()).toBe(true);
      expect(server.stdout()).not.toMatch(/"msg":"request failed"/);
    });
  });

  it('the primary pool closes read-only connections, a replica pool keeps its own; the purge lives on', { timeout: 60_000 }, async () => {
    const { orgId } = await mintTokenForOrganisation(database.db, { orgName: 'Purged', plan: 'free' });
    const past = new Date(Date.now() - 60_000);
    const expiredKey = () => ({
      org_id: orgId,
      env: 'test' as const,
      key: randomUUID(),
      fingerprint: 'x',
      response_status: 201,
      response_body: '{}',
      response_headers: '{}',
      created_at: past,
      expires_at: past,
    });
    await database.db.insertInto('idempotency_keys').values([expiredKey(), expiredKey()]).execute();
    await setReadOnly(true);

    const primary = await openDatabase({ databaseUrl: database.url, poolSize: 4 });
    const replica = openRequestPool(database.url!, { max: 4 });
    try {
      // On the primary's pool: the connection that failed a write is closed on release.
      const write = (db: typeof primary.db) =>
        db.connection().execute(async (connection) => {
          const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(connection);
          const failure = await sql`update organisations set name = name where id = ${orgId}`.execute(connection).then(
            () => undefined,
            (error: unknown) => error,
          );
          return { pid: rows[0]!.pid, failure };
        });
      const onPrimary = await write(primary.db);
      expect(onPrimary.failure).toMatchObject({ code: '25006' });
      expect(isDatabaseUnavailable(onPrimary.failure)).toBe(true);
      // At once (pg's pool would close an idle one after 10 s anyway).
      expect(primary.pool!.totalCount).toBe(0);
      await waitFor(async () => {
        const { rowCount } = await admin.query('select 1 from pg_stat_activity where pid = $1', [onPrimary.pid]);
        return rowCount === 0;
      }, 'its session gone');
      // On a replica's pool (reads only by design), the connection stays.
      const onReplica = await write(replica.db);
      expect(onReplica.failure).toMatchObject({ code: '25006' });
      expect(replica.pool.totalCount).toBe(1);

      // The purge: its cycles fail while the database is read only, and are reported, not fatal.
      const errors: unknown[] = [];
      const purged: number[] = [];
      const stop = scheduleHousekeeping(primary.db, {
        clock: () => new Date(),
        intervalMs: 100,
        onError: (error) => errors.push(error),
        onPurged: ({ keys }) => purged.push(keys),
      });
      try {
        await waitFor(() => errors.length >= 2, 'failed cycles');
        expect(errors.every((error) => isDatabaseUnavailable(error))).toBe(true);
        await setReadOnly(false);
        await waitFor(() => purged.some((keys) => keys === 2), 'a cycle that purged both keys', 20_000);
      } finally {
        await stop();
      }
      const { rows } = await sql<{ n: number }>`select count(*)::int as n from idempotency_keys where org_id = ${orgId}`.execute(
        database.db,
      );
      expect(rows[0]!.n).toBe(0);
    } finally {
      await setReadOnly(false);
      await primary.close();
      await replica.db.destroy();
    }
  });
});
