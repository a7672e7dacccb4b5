/**
 * DATABASE_POOLING=transaction behind a real PgBouncer in transaction mode (Debian's 1.18), given
 * one server connection so that every client connection shares it: with named prepared statements
 * (the direct-connection default) the second connection to prepare a hot statement meets the
 * first one's (42P05), and creates fail; in pooler mode every create succeeds.
 *
 * The statement time limit there: PgBouncer refuses it as a startup parameter, so the server sets
 * it with `SET LOCAL` in each transaction it opens, and the statements it sends alone are bounded
 * by the role's own setting (`ALTER ROLE … SET statement_timeout`), which an operator makes.
 * Either way the request is a 503.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { openDatabase, type DatabaseHandle } from '../../server/db/database.js';
import type { DatabasePooling } from '../../server/db/handle.js';
import { mintTokenForOrganisation } from '../../server/tokens/tokens.service.js';
import { createTestDatabase, type TestDatabase, whileLocked } from '../support/database.js';
import { havePgbouncer, startPgbouncer, throughPort, type Daemon } from '../support/external.js';
import { startTestServer, type TestServer } from '../support/server.js';

const configured = havePgbouncer && Boolean(process.env.TEST_DATABASE_URL);

describe.runIf(configured)('behind PgBouncer in transaction mode', () => {
  let direct: TestDatabase;
  let bouncer: Daemon;

  beforeAll(async () => {
    direct = await createTestDatabase();
    bouncer = await startPgbouncer(direct.url!, { mode: 'transaction', poolSize: 1 });
  }, 60_000);
  afterAll(async () => {
    await bouncer?.stop();
    await direct?.close();
  });

  /** 20 concurrent creates through PgBouncer; the statuses answered. */
  async function createsThrough(pooling: DatabasePooling): Promise<number[]> {
    const handle = await openDatabase({ databaseUrl: throughPort(direct.url!, bouncer.port), poolSize: 8, pooling });
    // 20 requests of one organisation at once: no concurrency limit.
    const server = await startTestServer({ concurrencyLimit: false }, { database: { ...handle, url: undefined } });
    try {
      const { token } = await mintTokenForOrganisation(direct.db, { orgName: `pooler-${pooling}-${Date.now()}`, plan: 'studio' });
      // Plain fetch: a 500 here is what the test looks for, not a response for contract coverage.
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          fetch(`${server.serverUrl}/clients`, {
            method: 'POST',
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': randomUUID() },
            body: JSON.stringify({ name: `Client ${i}` }),
          }).then(async (response) => {
            await response.arrayBuffer();
            return response.status;
          }),
        ),
      );
      return answers;
    } finally {
      await server.close();
      await handle.close();
    }
  }

  test('named prepared statements fail through it (the reason for pooler mode)', async () => {
    const statuses = await createsThrough('session');
    expect(statuses.filter((status) => status === 201).length).toBeGreaterThan(0);
    expect(statuses.filter((status) => status >= 500).length).toBeGreaterThan(0);
  }, 60_000);

  test('with DATABASE_POOLING=transaction every create succeeds', async () => {
    const statuses = await createsThrough('transaction');
    expect(statuses).toEqual(Array(20).fill(201));
  }, 60_000);
});

describe.runIf(configured)('the statement time limit behind PgBouncer in transaction mode', () => {
  /** What the server is configured with; the role's own limit, set by the "operator", is longer. */
  const SERVER_LIMIT_MS = 300;
  const ROLE_LIMIT = '1500ms';
  let direct: TestDatabase;
  let bouncer: Daemon;
  let handle: DatabaseHandle;
  let server: TestServer;

  beforeAll(async () => {
    direct = await createTestDatabase();
    const name = new URL(direct.url!).pathname.slice(1);
    // Only this test's database: new sessions of the role there start with it.
    await sql`alter role current_user in database ${sql.id(name)} set statement_timeout = ${sql.lit(ROLE_LIMIT)}`.execute(direct.db);
    bouncer = await startPgbouncer(direct.url!, { mode: 'transaction', poolSize: 4 });
    handle = await openDatabase({
      databaseUrl: throughPort(direct.url!, bouncer.port),
      poolSize: 4,
      pooling: 'transaction',
      statementTimeoutMs: SERVER_LIMIT_MS,
    });
    server = await startTestServer({ db: handle.db, pool: handle.counterPool }, { database: { ...handle, url: undefined } });
  }, 60_000);
  afterAll(async () => {
    await server?.close();
    await handle?.close();
    await bouncer?.stop();
    await direct?.close();
  });

  const tookTooLong = {
    error: { code: 'service_unavailable', message: expect.stringMatching(/took too long/) },
  };

  test('starts every transaction the server opens with SET LOCAL, in the same round trip', async () => {
    const inside = await handle.db
      .transaction()
      .execute(async (trx) => (await sql<{ statement_timeout: string }>`show statement_timeout`.execute(trx)).rows);
    expect(inside).toEqual([{ statement_timeout: `${SERVER_LIMIT_MS}ms` }]);
    // Outside one, a statement gets the role's setting: nothing of the transaction's stayed behind.
    const alone = await sql<{ statement_timeout: string }>`show statement_timeout`.execute(handle.db);
    expect(alone.rows).toEqual([{ statement_timeout: ROLE_LIMIT }]);
  });

  test('answers a change stuck behind a row lock 503 after the server’s limit', async () => {
    const { api } = await server.tenant({ plan: 'studio' });
    const created = (await api.POST('/clients', { body: { name: 'Pooled Lock Ltd' } })).data!.data;
    const patch = () => api.PATCH('/clients/{id}', { params: { path: { id: created.id } }, body: { notes: 'changed' } });
    const stuck = await whileLocked(direct.url!, `select 1 from clients where id = '${created.id}' for update`, patch);
    expect(stuck.response.status).toBe(503);
    expect(stuck.response.headers.get('Retry-After')).toBe('2');
    expect(stuck.error).toEqual(tookTooLong);
    expect((await patch()).response.status).toBe(200);
  }, 30_000);

  test('answers a single statement stuck behind a table lock 503 after the role’s limit', async () => {
    const { api } = await server.tenant({ plan: 'studio' });
    const created = (await api.POST('/clients', { body: { name: 'Pooled Table Ltd' } })).data!.data;
    const read = () => api.GET('/clients/{id}', { params: { path: { id: created.id } } });
    const stuck = await whileLocked(direct.url!, 'lock table clients in access exclusive mode', read);
    expect(stuck.response.status).toBe(503);
    expect(stuck.error).toEqual(tookTooLong);
    expect((await read()).response.status).toBe(200);
  }, 30_000);
});
