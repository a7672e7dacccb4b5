/**
 * Eventual reads on a real streaming replica (DATABASE_REPLICA_URL, server/db/replica.ts): a
 * scratch PostgreSQL 15 primary and a hot standby made from it with pg_basebackup
 * (test/support/scratch-postgres.ts). A physical replica cannot hold other rows than its primary,
 * so a read is shown to come from it by pausing its replay (`pg_wal_replay_pause()`): an eventual
 * read then misses what a strong read sees, and the answer's `Read-Consistency` says `eventual`.
 *
 * Runs with TEST_DATABASE_URL (the PostgreSQL suite) when the PostgreSQL 15 binaries are there.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ClientsApi } from '../../client/index.js';
import { applyUpdate } from '../../server/clients/clients.service.js';
import { openDatabase, type DatabaseHandle } from '../../server/db/database.js';
import type { DatabasePooling } from '../../server/db/handle.js';
import { migrateOrThrow } from '../../server/db/migrate.js';
import { mintTokenForOrganisation, type MintedToken } from '../../server/tokens/tokens.service.js';
import { usingPostgres } from '../support/database.js';
import { FUZZ_RATE_LIMITS } from '../support/operation-fixtures.js';
import { freePort, havePgbouncer, startPgbouncer, throughPort, track, type Daemon } from '../support/external.js';
import { startServerProcess, type RunningServer } from '../support/processes.js';
import { caughtUp, createScratchPostgres, havePostgresBinaries, type ScratchPostgres, waitFor } from '../support/scratch-postgres.js';
import { startTestServer, type TestServer } from '../support/server.js';

const configured = usingPostgres && havePostgresBinaries;

type FeedPage = { data: { id: string; type: string; data: { object: { id: string } } }[]; nextCursor: string; hasMore: boolean };

describe.runIf(configured)('eventual reads on a streaming replica', { timeout: 120_000 }, () => {
  let primary: ScratchPostgres;
  let standby: ScratchPostgres;
  /** Open handles and servers, closed after all. */
  const opened: { close(): Promise<void> }[] = [];

  beforeAll(async () => {
    primary = await createScratchPostgres();
    const setup = await openDatabase({ databaseUrl: primary.url() });
    await migrateOrThrow(setup.db);
    await setup.close();
    standby = await primary.replica();
  }, 120_000);
  afterAll(async () => {
    for (const handle of opened.reverse()) await handle.close().catch(() => {});
    await standby?.remove();
    await primary?.remove();
  });
  // A test that fails while replay is paused must not leave the next one a frozen replica.
  afterEach(async () => {
    if (standby?.running) await standby.query('select pg_wal_replay_resume()').catch(() => {});
  });

  const pauseReplay = () => standby.query('select pg_wal_replay_pause()');
  const resumeReplay = () => standby.query('select pg_wal_replay_resume()');

  interface App {
    handle: DatabaseHandle;
    server: TestServer;
    /** A new organisation (studio plan) and a client for it. */
    tenant(): Promise<{ api: ClientsApi; token: MintedToken }>;
  }

  /**
   * The app on the primary with the replica for eventual reads, its lag measured every `checkMs`
   * (a second in production) against a bound of `maxLagMs`.
   */
  async function startApp(options: {
    maxLagMs: number;
    checkMs: number;
    pooling?: DatabasePooling;
    urls?: [string, string];
  }): Promise<App> {
    const [databaseUrl, replicaUrl] = options.urls ?? [primary.url(), standby.url()];
    const handle = await openDatabase({
      databaseUrl,
      replicaUrl,
      replicaMaxLagMs: options.maxLagMs,
      replicaCheckIntervalMs: options.checkMs,
      pooling: options.pooling,
    });
    opened.push(handle);
    // Consumers poll as fast as they can and writers run at once: budgets no test reaches.
    const server = await startTestServer(
      { reads: handle.replica, rateLimits: FUZZ_RATE_LIMITS, concurrencyLimit: false },
      { database: { ...handle, url: databaseUrl } },
    );
    opened.push(server);
    return {
      handle,
      server,
      tenant: async () => {
        const token = await mintTokenForOrganisation(handle.db, { orgName: `replica-${randomUUID()}`, plan: 'studio' });
        return { api: server.client(token.token), token };
      },
    };
  }

  const eventual = { 'Read-Consistency': 'eventual' } as const;

  /** The clients' names an eventual (or strong) list answers, and which copy answered. */
  async function names(api: ClientsApi, consistency: 'eventual' | 'strong', query: { q?: string } = {}) {
    const { data, response } = await api.GET('/clients', { params: { query, header: { 'Read-Consistency': consistency } } });
    expect(response.status).toBe(200);
    return { names: data!.data.map((client) => client.name), servedBy: response.headers.get('Read-Consistency') };
  }

  /** Until an eventual list is answered by the replica (a check has found it within the bound). */
  const replicaInUse = (api: ClientsApi) =>
    waitFor('the replica to serve eventual reads', async () => (await names(api, 'eventual')).servedBy === 'eventual');

  async function feedPage(api: ClientsApi, consistency: 'eventual' | 'strong', after?: string, limit = 100) {
    const { data, response } = await api.GET('/events', {
      params: { query: { limit, ...(after && { after }) }, header: { 'Read-Consistency': consistency } },
    });
    expect(response.status).toBe(200);
    return { page: data as unknown as FeedPage, servedBy: response.headers.get('Read-Consistency') };
  }

  /** Every event after `after` on the primary (strong reads), following nextCursor to the end. */
  async function strongWalk(api: ClientsApi, after?: string) {
    const events: FeedPage['data'] = [];
    let cursor = after;
    for (;;) {
      const { page } = await feedPage(api, 'strong', cursor);
      events.push(...page.data);
      cursor = page.nextCursor;
      if (!page.hasMore) return { events, cursor: cursor! };
    }
  }

  describe('a replica within the bound', () => {
    let app: App;
    beforeAll(async () => {
      // A bound no test reaches: the paused replica stays in use.
      app = await startApp({ maxLagMs: 60_000, checkMs: 100 });
    });

    it('serves eventual lists, searches and the feed: with its replay paused they miss a client created since; strong ones see it', async () => {
      const { api } = await app.tenant();
      await api.POST('/clients', { body: { name: 'Before Pause Ltd' } });
      await caughtUp(primary, standby);
      await replicaInUse(api);
      await pauseReplay();
      const created = await api.POST('/clients', { body: { name: 'During Pause Ltd' } });
      expect(created.response.status).toBe(201);

      expect(await names(api, 'eventual')).toEqual({ names: ['Before Pause Ltd'], servedBy: 'eventual' });
      expect(await names(api, 'eventual', { q: 'pause' })).toEqual({ names: ['Before Pause Ltd'], servedBy: 'eventual' });
      expect(await names(api, 'strong')).toEqual({ names: ['During Pause Ltd', 'Before Pause Ltd'], servedBy: 'strong' });
      // The default is strong.
      const plain = await api.GET('/clients');
      expect(plain.response.headers.get('Read-Consistency')).toBe('strong');
      expect(plain.data!.data).toHaveLength(2);
      const feed = await feedPage(api, 'eventual');
      expect(feed.servedBy).toBe('eventual');
      expect(feed.page.data.map((event) => event.data.object.id)).not.toContain(created.data!.data.id);
      expect((await strongWalk(api)).events.map((event) => event.data.object.id)).toContain(created.data!.data.id);

      await resumeReplay();
      await caughtUp(primary, standby);
      expect(await names(api, 'eventual')).toEqual({ names: ['During Pause Ltd', 'Before Pause Ltd'], servedBy: 'eventual' });
    });

    it('keeps a read by id, a write, and the reads a write makes on the primary', async () => {
      const { api } = await app.tenant();
      await replicaInUse(api);
      await pauseReplay();
      const created = await api.POST('/clients', { body: { name: 'Primary Only Ltd' }, headers: eventual });
      const id = created.data!.data.id;
      // The replica does not have it: anything that found it read the primary.
      expect(await standby.query('select 1 from clients where id = $1', [id])).toEqual([]);
      const read = await api.GET('/clients/{id}', { params: { path: { id } }, headers: eventual });
      expect(read.response.status).toBe(200);
      // A write reads the row it changes (under a lock, for If-Match) in its own transaction.
      const patched = await api.PATCH('/clients/{id}', {
        params: { path: { id }, header: { 'If-Match': read.response.headers.get('ETag')! } },
        body: { notes: 'changed' },
        headers: eventual,
      });
      expect(patched.response.status).toBe(200);
      const { events } = await strongWalk(api);
      const one = await api.GET('/events/{id}', { params: { path: { id: events.at(-1)!.id } }, headers: eventual });
      expect(one.response.status).toBe(200);
      expect((await api.DELETE('/clients/{id}', { params: { path: { id } }, headers: eventual })).response.status).toBe(200);
      expect((await api.POST('/clients/{id}/restore', { params: { path: { id } }, headers: eventual })).response.status).toBe(200);
    });
  });

  describe('the feed across copies', () => {
    let app: App;
    beforeAll(async () => {
      app = await startApp({ maxLagMs: 60_000, checkMs: 100 });
    });

    it('a transaction still running on the primary holds the feed back on the replica too', async () => {
      const { api, token } = await app.tenant();
      const early = (await api.POST('/clients', { body: { name: 'Early Ltd' } })).data!.data.id;
      const start = (await strongWalk(api)).cursor;
      let entered!: () => void;
      let release!: () => void;
      const inside = new Promise<void>((resolve) => (entered = resolve));
      const held = new Promise<void>((resolve) => (release = resolve));
      // A takes its place in the feed first and commits last.
      const a = app.handle.db.transaction().execute(async (trx) => {
        await applyUpdate(trx, token, early, { notes: 'from A' }, undefined);
        entered();
        await held;
      });
      await inside;
      const late = (await api.POST('/clients', { body: { name: 'Late Ltd' } })).data!.data.id;
      await caughtUp(primary, standby);
      await replicaInUse(api);

      // The replica has replayed B's commit, and A's write but not its end: B stays behind A there too.
      const during = await feedPage(api, 'eventual', start);
      expect(during.servedBy).toBe('eventual');
      expect(during.page).toEqual({ data: [], nextCursor: start, hasMore: false });

      release();
      await a;
      await caughtUp(primary, standby);
      const after = await feedPage(api, 'eventual', during.page.nextCursor);
      expect(after.servedBy).toBe('eventual');
      const expected = [
        ['client.updated', early],
        ['client.created', late],
      ];
      expect(after.page.data.map((event) => [event.type, event.data.object.id])).toEqual(expected);
      expect((await strongWalk(api, start)).events.map((event) => [event.type, event.data.object.id])).toEqual(expected);
    });

    it('a cursor given out by either copy is good on the other: a copy behind it answers an empty page and the same cursor', async () => {
      const { api } = await app.tenant();
      await api.POST('/clients', { body: { name: 'Zero Ltd' } });
      await caughtUp(primary, standby);
      await replicaInUse(api);
      const fromReplica = await feedPage(api, 'eventual');
      expect(fromReplica.servedBy).toBe('eventual');
      expect(fromReplica.page.data).toHaveLength(1);
      await pauseReplay();
      for (const name of ['One Ltd', 'Two Ltd', 'Three Ltd']) await api.POST('/clients', { body: { name } });

      // The replica's cursor on the primary: the three new events, none before them.
      const onPrimary = await feedPage(api, 'strong', fromReplica.page.nextCursor);
      expect(onPrimary.page.data.map((event) => event.type)).toEqual(['client.created', 'client.created', 'client.created']);
      // The primary's cursor on the paused replica, which has none of them: nothing skipped, nothing repeated.
      const behind = await feedPage(api, 'eventual', onPrimary.page.nextCursor);
      expect(behind).toEqual({ page: { data: [], nextCursor: onPrimary.page.nextCursor, hasMore: false }, servedBy: 'eventual' });
      const stillBehind = await feedPage(api, 'eventual', fromReplica.page.nextCursor);
      expect(stillBehind).toEqual({ page: { data: [], nextCursor: fromReplica.page.nextCursor, hasMore: false }, servedBy: 'eventual' });

      await resumeReplay();
      await caughtUp(primary, standby);
      const caught = await feedPage(api, 'eventual', fromReplica.page.nextCursor);
      expect(caught.page.data).toEqual(onPrimary.page.data);
      expect((await feedPage(api, 'eventual', onPrimary.page.nextCursor)).page.data).toEqual([]);
    });

    it('a consumer whose reads go to either copy at random, while clients change, transactions hold the feed and replay pauses, sees every event once, in order', async () => {
      const { api, token } = await app.tenant();
      const start = (await strongWalk(api)).cursor;
      await replicaInUse(api);
      let writing = true;
      const writers = Array.from({ length: 3 }, async (_, w) => {
        for (let i = 0; i < 12; i++) {
          const id = (await api.POST('/clients', { body: { name: `Writer ${w} client ${i}` } })).data!.data.id;
          if (i % 3 === 0) await api.PATCH('/clients/{id}', { params: { path: { id } }, body: { notes: `note ${i}` } });
        }
      });
      // Transactions that take their place in the feed, then hold it a while before they commit.
      const holder = (async () => {
        for (let i = 0; i < 6; i++) {
          const id = (await api.POST('/clients', { body: { name: `Held ${i}` } })).data!.data.id;
          await app.handle.db.transaction().execute(async (trx) => {
            await applyUpdate(trx, token, id, { notes: `held ${i}` }, undefined);
            await new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 150));
          });
        }
      })();
      const toggler = (async () => {
        while (writing) {
          await (Math.random() < 0.5 ? pauseReplay() : resumeReplay());
          await new Promise((resolve) => setTimeout(resolve, 30 + Math.random() * 120));
        }
        await resumeReplay();
      })();
      const done = Promise.all([...writers, holder]).finally(() => {
        writing = false;
      });

      const seen: string[] = [];
      const servedBy = { eventual: 0, strong: 0 };
      let cursor = start;
      const readPage = async () => {
        const { page, servedBy: by } = await feedPage(api, Math.random() < 0.5 ? 'eventual' : 'strong', cursor, 7);
        servedBy[by as 'eventual' | 'strong']++;
        seen.push(...page.data.map((event) => event.id));
        cursor = page.nextCursor;
      };
      while (writing) await readPage();
      await done;
      await toggler;
      await caughtUp(primary, standby);
      const expected = (await strongWalk(api, start)).events.map((event) => event.id);
      expect(expected).toHaveLength(3 * 12 + 3 * 4 + 6 * 2);
      await waitFor('the consumer to reach the end of the feed', async () => {
        await readPage();
        return seen.length >= expected.length;
      });
      expect(seen).toEqual(expected);
      expect(servedBy.eventual).toBeGreaterThan(0);
      expect(servedBy.strong).toBeGreaterThan(0);
    });
  });

  it.runIf(havePgbouncer)(
    'behind PgBouncer in transaction mode, on both sides: unnamed statements and the statement limit on the replica too',
    async () => {
      const bouncers: Daemon[] = [];
      try {
        for (const node of [primary, standby]) bouncers.push(await startPgbouncer(node.url(), { mode: 'transaction', poolSize: 2 }));
        const urls = [primary, standby].map((node, i) => throughPort(node.url(), bouncers[i]!.port)) as [string, string];
        const app = await startApp({ maxLagMs: 60_000, checkMs: 100, pooling: 'transaction', urls });
        const { api } = await app.tenant();
        await api.POST('/clients', { body: { name: 'Pooled Ltd' } });
        await caughtUp(primary, standby);
        await replicaInUse(api);
        // Two server connections for 30 requests at once: a named statement would meet itself (42P05) or miss (26000).
        const lists = await Promise.all(Array.from({ length: 30 }, () => names(api, 'eventual', { q: 'pooled' })));
        expect(lists).toEqual(Array(30).fill({ names: ['Pooled Ltd'], servedBy: 'eventual' }));
      } finally {
        for (const bouncer of bouncers) await bouncer.stop();
      }
    },
  );

  it('gives the replica the statement limit of the primary', async () => {
    const handle = await openDatabase({ databaseUrl: primary.url(), replicaUrl: standby.url(), statementTimeoutMs: 1234 });
    opened.push(handle);
    const [row] = (await handle.replica!.pool.query('show statement_timeout')).rows;
    expect(row).toEqual({ statement_timeout: '1234ms' });
    // Through a transaction-mode pooler, each transaction sets it (server/db/connection.ts).
    const pooled = await openDatabase({
      databaseUrl: primary.url(),
      replicaUrl: standby.url(),
      statementTimeoutMs: 1234,
      pooling: 'transaction',
    });
    opened.push(pooled);
    await waitFor('the replica to be in use', async () => pooled.replica!.state() === 'usable');
    const inTransaction = await pooled.replica!.read('eventual', (db) =>
      db.transaction().execute(async (trx) => (await sql<{ statement_timeout: string }>`show statement_timeout`.execute(trx)).rows[0]),
    );
    expect(inTransaction).toEqual({ value: { statement_timeout: '1234ms' }, consistency: 'eventual' });
  });

  describe('a replica behind the bound, or down', () => {
    let strict: App;
    /** Checks so rare that only a failed read can tell the replica has gone. */
    let unwatched: App;
    let serverProcess: RunningServer;
    let processToken: MintedToken;
    let metricsPort: number;

    beforeAll(async () => {
      strict = await startApp({ maxLagMs: 1000, checkMs: 100 });
      unwatched = await startApp({ maxLagMs: 60_000, checkMs: 60_000 });
      metricsPort = await freePort();
      // The real entry point, with the production defaults: a check a second, a bound of 2 s.
      serverProcess = await startServerProcess({
        DATABASE_URL: primary.url(),
        DATABASE_REPLICA_URL: standby.url(),
        METRICS_PORT: String(metricsPort),
        RATE_LIMIT: '0',
        CONCURRENCY_LIMIT: '0',
      });
      track(serverProcess.child);
      opened.push({ close: () => serverProcess.stop() });
      processToken = await mintTokenForOrganisation(strict.handle.db, { orgName: `replica-process-${randomUUID()}`, plan: 'studio' });
    }, 120_000);

    const processList = async () => {
      const response = await fetch(`${serverProcess.url}/clients`, {
        headers: { authorization: `Bearer ${processToken.token}`, 'read-consistency': 'eventual' },
      });
      await response.arrayBuffer();
      return { status: response.status, servedBy: response.headers.get('read-consistency') };
    };
    const scrape = async () => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    /** One sample's value in a scrape (`+Inf` included). */
    const metric = (text: string, sample: string) => {
      const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
      const value = line?.slice(sample.length + 1);
      return value === '+Inf' ? Number.POSITIVE_INFINITY : Number(value);
    };

    it('a server process reads eventual lists from DATABASE_REPLICA_URL, says so in its log, and counts them', async () => {
      await waitFor('the process to read from the replica', async () => (await processList()).servedBy === 'eventual');
      expect(serverProcess.stdout()).toContain('read replica in use for eventual reads');
      const text = await scrape();
      expect(metric(text, 'db_eventual_reads_total{served="replica"}')).toBeGreaterThan(0);
      expect(metric(text, 'db_replica_staleness_seconds')).toBeLessThan(2);
      expect(metric(text, 'db_pool_connections{pool="replica"}')).toBeGreaterThan(0);
    });

    it('further behind than the bound, it is not read: eventual reads go to the primary, and come back once it has caught up', async () => {
      const { api } = await strict.tenant();
      await replicaInUse(api);
      await pauseReplay();
      await api.POST('/clients', { body: { name: 'Behind Ltd' } });
      // Within a second (the bound) and a check, the replica is out; until then it may answer without it.
      await waitFor('eventual reads to go to the primary', async () => (await names(api, 'eventual')).servedBy === 'strong', 10_000);
      expect(await names(api, 'eventual')).toEqual({ names: ['Behind Ltd'], servedBy: 'strong' });
      await resumeReplay();
      await waitFor('the replica to serve again', async () => (await names(api, 'eventual')).servedBy === 'eventual');
      expect(await names(api, 'eventual')).toEqual({ names: ['Behind Ltd'], servedBy: 'eventual' });
    });

    it('down, it fails no request: eventual reads go to the primary, /readyz stays 200, and it is read again once it is back', async () => {
      const apps = [strict, unwatched];
      const tenants = await Promise.all(apps.map((app) => app.tenant()));
      for (const { api } of tenants) {
        await api.POST('/clients', { body: { name: 'Survivor Ltd' } });
        await replicaInUse(api);
      }
      await standby.stop('fast');
      try {
        for (const [i, { api }] of tenants.entries()) {
          // At once, before any check: the reads that meet the dead replica are made again on the primary.
          const answers = await Promise.all(Array.from({ length: 10 }, () => names(api, 'eventual')));
          expect(answers, `app ${i}`).toEqual(Array(10).fill({ names: ['Survivor Ltd'], servedBy: 'strong' }));
          const ready = await fetch(`${apps[i]!.server.serverUrl}/readyz`);
          expect(ready.status).toBe(200);
        }
        await waitFor('the process to notice', async () => /read replica out of use/.test(serverProcess.stdout()));
        expect(await processList()).toEqual({ status: 200, servedBy: 'strong' });
        expect((await fetch(`${serverProcess.url}/readyz`)).status).toBe(200);
        expect(metric(await scrape(), 'db_eventual_reads_total{served="primary"}')).toBeGreaterThan(0);
        expect(metric(await scrape(), 'db_replica_staleness_seconds')).toBe(Number.POSITIVE_INFINITY);
      } finally {
        await standby.start();
      }
      await replicaInUse(tenants[0]!.api);
      await waitFor('the process to read from the replica again', async () => (await processList()).servedBy === 'eventual', 20_000);
    });
  });
});
