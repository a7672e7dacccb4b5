/**
 * Fills a clients table fast, for the benchmarks: one set-based `insert … select generate_series`
 * per table, whatever the count (bench/list-clients.ts, and `npm run bench -- --seed-clients N`).
 *
 * The rows look like real clients: one in eight is a "Globex", one in fifty is deleted, one in
 * three has a billing e-mail at `@billing.test`; created_at one second apart (with microseconds,
 * like real rows) from 2025-01-01, so anything the server creates afterwards is newer.
 */
import { sql, type Kysely } from 'kysely';
import type { Database } from '../server/db/schema.js';

/** `table`: `clients` (the server's) or a table with the same client columns (bench/plain-server.ts's `plain_clients`). */
export async function seedClients(db: Kysely<Database>, table: string, orgId: string, count: number): Promise<void> {
  if (count <= 0) return;
  await sql`
    insert into ${sql.table(table)} (org_id, env, name, contact_name, email, billing_email, currency, default_rate, created_at, updated_at, deleted_at)
    select ${orgId}::uuid, 'test',
           (array['Acme', 'Globex', 'Initech', 'Umbrella', 'Hooli', 'Stark', 'Wayne', 'Wonka'])[1 + i % 8] || ' ' || substr(md5(i::text), 1, 10),
           'Contact ' || substr(md5((i * 7)::text), 1, 12),
           'office' || i || '@' || substr(md5((i * 3)::text), 1, 8) || '.test',
           case when i % 3 = 0 then 'ap' || i || '@billing.test' end,
           'USD', (i % 1000) + 0.5,
           timestamptz '2025-01-01' + i * interval '1 second' + (i % 997) * interval '1 microsecond',
           timestamptz '2025-01-01' + i * interval '1 second',
           case when i % 50 = 0 then timestamptz '2026-01-01' end
    from generate_series(1, ${count}::int) as i`.execute(db);
}

/** How long each phase of `seedWithIndexesRebuilt` took, in ms. */
export interface SeedTimings {
  dropMs: number;
  insertMs: number;
  indexMs: number;
  /** Each index rebuilt, with its time. */
  indexes: { name: string; ms: number }[];
}

/**
 * Runs `fill` (set-based inserts into `table`) with the table's secondary indexes dropped, then
 * builds them again from their own definitions (`pg_get_indexdef`, storage parameters included):
 * one bulk build per index instead of a million insertions into each, which for the trigram GIN
 * indexes of `clients` is the difference between minutes and half an hour at 1,000,000 rows.
 * Indexes that back a constraint (the primary key, a unique constraint) stay. Whatever the server's
 * migrations define is what is rebuilt, so the table ends with exactly its own indexes, freshly
 * built (more compact than indexes grown row by row; `--seed-incremental` keeps the slow way).
 */
export async function seedWithIndexesRebuilt(db: Kysely<Database>, table: string, fill: () => Promise<void>): Promise<SeedTimings> {
  let at = performance.now();
  const { rows } = await sql<{ name: string; definition: string }>`
    select c.relname as name, pg_get_indexdef(i.indexrelid) as definition
    from pg_index i
    join pg_class c on c.oid = i.indexrelid
    where i.indrelid = ${table}::regclass
      and not exists (select 1 from pg_constraint k where k.conindid = i.indexrelid)
    order by c.relname`.execute(db);
  for (const { name } of rows) await sql`drop index ${sql.id(name)}`.execute(db);
  const dropMs = performance.now() - at;
  at = performance.now();
  await fill();
  const insertMs = performance.now() - at;
  const indexes: { name: string; ms: number }[] = [];
  const started = performance.now();
  // One connection for the builds, with the memory a bulk build wants (a session setting).
  await db.connection().execute(async (connection) => {
    await sql`set maintenance_work_mem = '256MB'`.execute(connection);
    for (const { name, definition } of rows) {
      at = performance.now();
      await sql.raw(definition).execute(connection);
      indexes.push({ name, ms: performance.now() - at });
    }
    await sql`reset maintenance_work_mem`.execute(connection);
  });
  return { dropMs, insertMs, indexMs: performance.now() - started, indexes };
}
