import { sql, type Kysely } from 'kysely';

/**
 * `clients_updated_idx` serves `updatedSince` only. It began with the tenant's columns, as the
 * list's indexes do, so the planner could also read a page of the list through it: all the
 * tenant's rows, then a sort. With statistics taken before the tenant grew (a new tenant's first
 * minutes before autovacuum analyses the table; on a machine without autovacuum, for ever) both
 * plans were estimated at one row, and the smaller index won the tie: the soak's first page read
 * 16,268 rows for 26, 50 to 95 ms a request, in the minutes the table's size favoured it
 * (docs/performance.md).
 *
 * The index is now partial on `updated_at is not null`, which every row meets (the column is not
 * null) but which PostgreSQL can use an index for only when the query implies it: the filter's
 * `updated_at >= …` does, a page of the list does not. The same index for the filter, none for the
 * list, whatever the statistics say (test/integration/clients-indexes.test.ts). Rebuilt in the
 * migration's transaction: writes to `clients` wait for the build (0.1 s for 100,000 rows in
 * bench:list's seeding); the version before plans with the new index as it did with the old.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`drop index if exists clients_updated_idx`.execute(db);
  await sql`create index clients_updated_idx on clients (org_id, env, updated_at) where updated_at is not null`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index if exists clients_updated_idx`.execute(db);
  await sql`create index clients_updated_idx on clients (org_id, env, updated_at)`.execute(db);
}
