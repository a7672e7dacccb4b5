/**
 * The server process against a PostgreSQL that goes away, as an operator would see it: 16 clients
 * creating and then changing clients continuously (every write with its Idempotency-Key, retried
 * with the same key on a 503), while the test
 *  - terminates the database's backends, round after round, until several were killed inside an
 *    open transaction: the process never dies, and no answer is anything but a success or a 503;
 *  - cuts the server's path to PostgreSQL (a TCP proxy of this test: new connections refused, open
 *    ones terminated): only 503 with `Retry-After` in the envelope, `/readyz` 503, then recovery
 *    without a restart once the path is back; the typed client's own retries get the 201.
 * Afterwards every acknowledged write is there exactly once, and nothing else is. Needs a
 * PostgreSQL server (TEST_DATABASE_URL); the shared server is never restarted: only this test's
 * own database's backends are terminated.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClientsApi } from '../../client/index.js';
import { mintTokenForOrganisation } from '../../server/tokens/tokens.service.js';
import { createTestDatabase, usingPostgres, type TestDatabase } from '../support/database.js';
import { startServerProcess, type RunningServer } from '../support/processes.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 120_000): Promise<void> {
  const started = Date.now();
  while (!(await condition())) {
    if (Date.now() - started > timeoutMs) throw new Error(`gave up waiting: ${what}`);
    await sleep(50);
  }
}

interface Load {
  /** The names of this load's clients start with it. */
  prefix: string;
  /** Client id by the Idempotency-Key of the create that made it, for every create answered 201. */
  created: Map<string, string>;
  /** Ids whose change was answered 200. */
  changed: Set<string>;
  statuses: Map<number, number>;
  /** What should never happen: another status, a 503 not in the envelope, a network error. */
  problems: string[];
  stop(): Promise<void>;
}

/**
 * `workers` loops, each: create a client (name = its key), then change it; every request retried
 * with its key until it is answered with a success, so every write is eventually acknowledged.
 */
function startLoad(baseUrl: string, token: string, prefix: string, workers = 16): Load {
  let running = true;
  const load: Omit<Load, 'stop'> = { prefix, created: new Map(), changed: new Set(), statuses: new Map(), problems: [] };
  const send = async (
    method: string,
    path: string,
    key: string,
    body: unknown,
    success: number,
  ): Promise<{ data: { id: string } } | undefined> => {
    for (let attempt = 0; attempt < 2_000; attempt++) {
      let response: Response;
      try {
        response = await fetch(`${baseUrl}${path}`, {
          method,
          headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', 'Idempotency-Key': key },
          body: JSON.stringify(body),
        });
      } catch (error) {
        load.problems.push(`${method} ${path}: network error ${String((error as Error).cause ?? error)}`);
        await sleep(50);
        continue;
      }
      const text = await response.text();
      load.statuses.set(response.status, (load.statuses.get(response.status) ?? 0) + 1);
      if (response.status === success) return JSON.parse(text);
      if (response.status === 503) {
        const retryAfter = response.headers.get('Retry-After') ?? '';
        const code = (JSON.parse(text) as { error?: { code?: string } }).error?.code;
        if (!/^[1-9][0-9]?$/.test(retryAfter) || code !== 'service_unavailable')
          load.problems.push(`503 with Retry-After ${retryAfter} and ${text}`);
        await sleep(50);
        continue;
      }
      load.problems.push(`${method} ${path}: ${response.status} ${text}`);
      return undefined;
    }
    load.problems.push(`${method} ${path}: no success after 2000 attempts`);
    return undefined;
  };
  const worker = async () => {
    while (running) {
      const key = randomUUID();
      const created = await send('POST', '/clients', key, { name: `${prefix}${key}` }, 201);
      if (!created) continue;
      load.created.set(key, created.data.id);
      const changed = await send('PATCH', `/clients/${created.data.id}`, randomUUID(), { notes: 'changed' }, 200);
      if (changed) load.changed.add(created.data.id);
    }
  };
  const loops = Array.from({ length: workers }, worker);
  return {
    ...load,
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

describe.skipIf(!usingPostgres)('the database going away under load (PostgreSQL)', () => {
  let database: TestDatabase;
  let proxy: TcpProxy;
  let server: RunningServer;
  let token: string;
  let orgId: string;

  beforeAll(async () => {
    database = await createTestDatabase();
    ({ token, orgId } = await mintTokenForOrganisation(database.db, { orgName: 'Faults', plan: 'studio' }));
    const url = new URL(database.url!);
    proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port || 5432) });
    url.host = `127.0.0.1:${proxy.port}`;
    // 16 loops of one organisation at once: no concurrency limit.
    server = await startServerProcess({ DATABASE_URL: url.toString(), RATE_LIMIT: '1000000', CONCURRENCY_LIMIT: '0' });
  }, 120_000);

  afterAll(async () => {
    await server?.stop();
    await proxy?.close();
    await database?.close();
  });

  const alive = () => server.child.exitCode === null && server.child.signalCode === null;
  const readiness = async () => {
    const response = await fetch(`${server.url}/readyz`);
    return {
      status: response.status,
      retryAfter: response.headers.get('Retry-After'),
      body: (await response.json()) as { error?: { code: string } },
    };
  };

  /** Every acknowledged create is there once, changed; nothing else of the load is. */
  async function expectExactlyTheAcknowledgedWrites(load: Load) {
    const rows = await database.db
      .selectFrom('clients')
      .select(['id', 'name', 'notes'])
      .where('org_id', '=', orgId)
      .where('name', 'like', `${load.prefix}%`)
      .execute();
    expect(rows.length).toBe(load.created.size);
    expect(new Set(rows.map((row) => row.name))).toEqual(new Set([...load.created.keys()].map((key) => `${load.prefix}${key}`)));
    for (const row of rows)
      expect({ id: row.id, notes: row.notes }).toEqual({ id: load.created.get(row.name.slice(load.prefix.length)), notes: 'changed' });
    expect(load.changed.size).toBe(load.created.size);
  }

  it('survives its backends terminated again and again, transactions open', { timeout: 300_000 }, async () => {
    const admin = new pg.Client({ connectionString: database.url });
    await admin.connect();
    const load = startLoad(server.url, token, 'terminated-');
    let rounds = 0;
    let killed = 0;
    let killedInTransaction = 0;
    try {
      await until(() => load.created.size >= 20, 'the load to get going');
      // Until several backends were killed with a transaction open (begun before the statement it
      // was running, or idle inside one), and at least 30 rounds in all.
      while ((rounds < 30 || killedInTransaction < 5) && rounds < 1_000) {
        const { rows } = await admin.query<{ killed: number; in_transaction: number }>(
          `select count(*)::int as killed,
                  count(*) filter (where state = 'idle in transaction' or xact_start < query_start)::int as in_transaction
             from (select pid, state, xact_start, query_start, pg_terminate_backend(pid)
                     from pg_stat_activity
                    where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend') as t`,
        );
        rounds++;
        killed += rows[0]!.killed;
        killedInTransaction += rows[0]!.in_transaction;
        await sleep(20 + Math.random() * 150);
        expect(alive(), server.stdout()).toBe(true);
      }
    } finally {
      await load.stop();
      await admin.end();
    }
    expect(killedInTransaction).toBeGreaterThanOrEqual(5);
    expect(killed).toBeGreaterThan(killedInTransaction);
    expect(alive()).toBe(true);
    expect(load.problems).toEqual([]);
    expect([...load.statuses.keys()].sort()).toEqual([200, 201, 503]);
    await until(async () => (await readiness()).status === 200, 'readiness after the faults');
    await expectExactlyTheAcknowledgedWrites(load);
    expect(server.stdout()).not.toMatch(/"level":50.*"msg":"request failed"/);
  });

  it('answers 503 while PostgreSQL is unreachable, and recovers without a restart', { timeout: 300_000 }, async () => {
    const load = startLoad(server.url, token, 'unreachable-');
    const typedStatuses: number[] = [];
    const typed = createClientsApi({
      baseUrl: server.url,
      token,
      retry: { maxAttempts: 100, maxElapsedMs: 240_000 },
      fetch: async (request) => {
        const response = await fetch(request);
        typedStatuses.push(response.status);
        return response;
      },
    });
    const createTyped = () => typed.POST('/clients', { body: { name: 'typed-retry' } });
    let typedCall: ReturnType<typeof createTyped> | undefined;
    try {
      await until(() => load.created.size >= 20, 'the load to get going');
      await proxy.cut();
      const unavailableAtCut = load.statuses.get(503) ?? 0;
      const createdAtCut = load.created.size;
      await until(() => (load.statuses.get(503) ?? 0) >= unavailableAtCut + 50, '503s while the database is unreachable');
      // Readiness answers from a check at most a second old: a check begun after the cut sees it
      // (once its connection attempt fails), within seconds.
      let ready = await readiness();
      await until(
        async () => {
          ready = await readiness();
          return ready.status === 503;
        },
        'readiness to see the database away',
        15_000,
      );
      expect(ready).toMatchObject({ status: 503, body: { error: { code: 'service_unavailable' } } });
      expect(Number(ready.retryAfter)).toBeGreaterThan(0);
      // Nothing is acknowledged while the database is away (a create in flight at the cut may be).
      expect(load.created.size).toBeLessThanOrEqual(createdAtCut + 16);

      typedCall = createTyped();
      await until(() => typedStatuses.includes(503), "the typed client's first 503");
      await proxy.restore();
      await until(async () => (await readiness()).status === 200, 'readiness once the database is back');
      const createdAtRestore = load.created.size;
      await until(() => load.created.size >= createdAtRestore + 20, 'creates again');
    } finally {
      await proxy.restore();
      await load.stop();
    }
    const result = await typedCall!;
    expect(result.response.status).toBe(201);
    expect(typedStatuses[0]).toBe(503);
    expect(typedStatuses.at(-1)).toBe(201);
    expect(new Set(typedStatuses)).toEqual(new Set([503, 201]));
    const typedRows = await database.db
      .selectFrom('clients')
      .select('id')
      .where('org_id', '=', orgId)
      .where('name', '=', 'typed-retry')
      .execute();
    expect(typedRows).toEqual([{ id: result.data!.data.id }]);

    expect(alive()).toBe(true);
    expect(load.problems).toEqual([]);
    expect([...load.statuses.keys()].sort()).toEqual([200, 201, 503]);
    await expectExactlyTheAcknowledgedWrites(load);
  });
});
