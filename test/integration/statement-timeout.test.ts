/**
 * DATABASE_STATEMENT_TIMEOUT_MS on a direct connection to PostgreSQL: a statement that runs past
 * it (here, one waiting for a lock another session holds: a transaction's row lock, a table lock
 * a single statement meets) is cancelled by PostgreSQL, and the request is answered 503
 * `service_unavailable` in the envelope with Retry-After, within about the limit, logged at warn
 * with its operation; nothing it wrote is kept, and the process goes on serving. The rate-limit
 * counters' connections have the limit too; migrations run without it. (Behind PgBouncer:
 * test/integration/pooler.test.ts. PGlite has no such limit.)
 */
import { randomUUID } from 'node:crypto';
import { type Migration, sql } from 'kysely';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type DatabaseHandle } from '../../server/db/database.js';
import { migrateOrThrow } from '../../server/db/migrate.js';
import { createTestDatabase, usingPostgres, type TestDatabase, whileLocked } from '../support/database.js';
import { startTestServer, type TestServer } from '../support/server.js';

const LIMIT_MS = 300;

describe.skipIf(!usingPostgres)('a statement past DATABASE_STATEMENT_TIMEOUT_MS (PostgreSQL)', () => {
  let database: TestDatabase;
  let limited: DatabaseHandle;
  let server: TestServer;
  const logged: { level: number; msg: string; operation?: string; err?: { code?: string } }[] = [];

  beforeAll(async () => {
    database = await createTestDatabase();
    limited = await openDatabase({ databaseUrl: database.url, statementTimeoutMs: LIMIT_MS });
    const logger = pino({ level: 'warn' }, { write: (line: string) => void logged.push(JSON.parse(line)) });
    server = await startTestServer({ db: limited.db, pool: limited.counterPool, logger }, { database: { ...limited, url: database.url } });
  });
  afterAll(async () => {
    await server?.close();
    await limited?.close();
    await database?.close();
  });

  function expectTimeoutAnswer({ response, error }: { response: Response; error?: unknown }, startedAt: number) {
    expect(response.status).toBe(503);
    expect(response.headers.get('Retry-After')).toBe('2');
    expect(error).toEqual({
      error: { code: 'service_unavailable', message: expect.stringMatching(/took too long.*Retry in 2 seconds/) },
    });
    // About the limit, not however long the lock is held: generous, for a loaded machine.
    expect(performance.now() - startedAt).toBeLessThan(LIMIT_MS + 4_000);
  }

  it('answers a change stuck behind a row lock 503, keeps nothing of it, and logs it at warn with the operation', async () => {
    const { api } = await server.tenant({ plan: 'studio' });
    const created = (await api.POST('/clients', { body: { name: 'Locked Ltd' } })).data!.data;
    const key = randomUUID();
    const patch = () =>
      api.PATCH('/clients/{id}', { params: { path: { id: created.id } }, body: { notes: 'changed' }, headers: { 'Idempotency-Key': key } });

    const startedAt = performance.now();
    const stuck = await whileLocked(database.url!, `select 1 from clients where id = '${created.id}' for update`, patch);
    expectTimeoutAnswer(stuck, startedAt);
    expect(logged).toContainEqual(
      expect.objectContaining({
        level: 40,
        msg: 'statement timeout',
        operation: 'updateClient',
        err: expect.objectContaining({ code: '57014' }),
      }),
    );

    // The lock gone, the same key runs afresh: the 503 stored no answer, and changed nothing.
    const again = await patch();
    expect(again.response.status).toBe(200);
    expect(again.response.headers.get('Idempotent-Replayed')).toBeNull();
    expect(again.data!.data.notes).toBe('changed');
  });

  it('answers a single statement stuck behind a table lock 503, and serves as before once it is gone', async () => {
    const { api } = await server.tenant({ plan: 'studio' });
    const created = (await api.POST('/clients', { body: { name: 'Table Lock Ltd' } })).data!.data;
    const read = () => api.GET('/clients/{id}', { params: { path: { id: created.id } } });

    const startedAt = performance.now();
    const stuck = await whileLocked(database.url!, 'lock table clients in access exclusive mode', read);
    expectTimeoutAnswer(stuck, startedAt);

    const after = await read();
    expect(after.response.status).toBe(200);
    expect(after.data!.data.name).toBe('Table Lock Ltd');
  });

  it('holds on the rate-limit counters’ connections too', async () => {
    const { rows } = await limited.counterPool!.query<{ statement_timeout: string }>('show statement_timeout');
    expect(rows[0]!.statement_timeout).toBe(`${LIMIT_MS}ms`);
    await expect(limited.counterPool!.query('select pg_sleep(1)')).rejects.toMatchObject({ code: '57014' });
  });

  it('lets migrations run longer than the limit', async () => {
    await expect(sql`select pg_sleep(${(LIMIT_MS * 2) / 1000})`.execute(limited.db)).rejects.toMatchObject({ code: '57014' });
    // This version's migrations are applied already; a slow one after them.
    const applied = await sql<{ name: string }>`select name from kysely_migration`.execute(limited.db);
    const noop: Migration = { up: async () => {} };
    const slow: Migration = {
      up: async (db) => {
        await sql`select pg_sleep(${(LIMIT_MS * 2) / 1000})`.execute(db);
      },
    };
    const list = { ...Object.fromEntries(applied.rows.map((row) => [row.name, noop])), '2999_01_01_0001_slow_index_build': slow };
    expect(await migrateOrThrow(limited.db, list)).toEqual(['2999_01_01_0001_slow_index_build']);
    // The limit is back on the connection the migration used (every connection has it again).
    await expect(sql`select pg_sleep(${(LIMIT_MS * 2) / 1000})`.execute(limited.db)).rejects.toMatchObject({ code: '57014' });
  });
});
