/**
 * server/db/statements.ts and the migrator's fast path. On PostgreSQL the hot statements are named
 * prepared statements of each connection, and stay valid when a migration adds a column (they
 * name their columns; a prepared `select *` would fail with "cached plan must not change result
 * type"). A start-up on an up-to-date database runs no migration.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { findClientById } from '../../server/clients/clients.queries.js';
import { openDatabase, type DatabaseHandle } from '../../server/db/database.js';
import { migrateOrThrow } from '../../server/db/migrate.js';
import { mintTokenForOrganisation } from '../../server/tokens/tokens.service.js';
import { createTestDatabase, usingPostgres, type TestDatabase } from '../support/database.js';

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(() => database?.close());

it('runs no migration on a database that has them all, and the next one on a database that lacks it', async () => {
  expect(await migrateOrThrow(database.db)).toEqual([]);
  const [last] = (await sql<{ name: string }>`select name from kysely_migration order by name desc limit 1`.execute(database.db)).rows;
  await sql`delete from kysely_migration where name = ${last!.name}`.execute(database.db);
  // Its up() is safe to run again; what matters is that the migrator noticed.
  expect(await migrateOrThrow(database.db)).toEqual([last!.name]);
  expect(await migrateOrThrow(database.db)).toEqual([]);
});

it.runIf(usingPostgres)('prepares the read by id once per connection, and it survives a new column', async () => {
  const { orgId, plan } = await mintTokenForOrganisation(database.db, { orgName: 'Prepared' });
  const tenant = { orgId, env: 'test' as const, plan };
  const { id } = await database.db
    .insertInto('clients')
    .values({ org_id: orgId, env: 'test', name: 'Ready' })
    .returning('id')
    .executeTakeFirstOrThrow();
  // One connection, so that the statement and the catalogue query share a session.
  const single: DatabaseHandle = await openDatabase({ databaseUrl: database.url, poolSize: 1 });
  try {
    expect((await findClientById(single.db, tenant, id))?.name).toBe('Ready');
    const prepared = await sql<{ name: string; statement: string }>`select name, statement from pg_prepared_statements`.execute(single.db);
    expect(prepared.rows.map((r) => r.name)).toContain('client_by_id');

    await sql`alter table clients add column nickname text`.execute(database.db);
    try {
      expect((await findClientById(single.db, tenant, id))?.name).toBe('Ready');
    } finally {
      await sql`alter table clients drop column nickname`.execute(database.db);
    }
  } finally {
    await single.close();
  }
});

it.runIf(usingPostgres)('counts rate limits on connections whose commits do not wait for the disk, and nothing else', async () => {
  const counters = await database.counterPool!.query<{ synchronous_commit: string }>('show synchronous_commit');
  expect(counters.rows[0]!.synchronous_commit).toBe('off');
  const main = await sql<{ synchronous_commit: string }>`show synchronous_commit`.execute(database.db);
  expect(main.rows[0]!.synchronous_commit).toBe('on');
});

it.runIf(usingPostgres)('runs every statement without JIT compilation, whatever cost the planner estimates', async () => {
  // PostgreSQL's default is on: with statistics older than a tenant's rows, the webhook worker's
  // fan-out (under a millisecond of work) was estimated above jit_above_cost and compiled at every
  // run, 400 to 630 ms of CPU each (docs/performance.md).
  expect((await sql<{ jit: string }>`show jit`.execute(database.db)).rows[0]!.jit).toBe('off');
  // A statement far above the threshold is planned and run with no JIT at all.
  const { rows } = await sql<Record<string, unknown>>`
    explain (analyze, format json) select count(*) from generate_series(1, 3000) a cross join generate_series(1, 3000) b`.execute(
    database.db,
  );
  const plan = Object.values(rows[0]!)[0];
  const text = typeof plan === 'string' ? plan : JSON.stringify(plan);
  expect(JSON.parse(text)[0].Plan['Total Cost']).toBeGreaterThan(100_000);
  expect(text).not.toContain('"JIT"');
});
