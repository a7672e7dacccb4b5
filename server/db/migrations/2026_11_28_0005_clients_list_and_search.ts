import { sql, type Kysely } from 'kysely';

/** What `q` searches. */
const SEARCHED_COLUMNS = ['name', 'contact_name', 'email', 'billing_email'];

export async function up(db: Kysely<unknown>): Promise<void> {
  // GET /clients pages newest first through one of these, by its `deleted` filter: active clients
  // (the default) and deleted ones (`only`) each have their own, so neither skips over the other;
  // `include` keeps using clients_list_idx. The plan's count of active clients uses the first,
  // which makes clients_active_idx redundant.
  await sql`create index clients_active_list_idx on clients (org_id, env, created_at desc, id desc) where deleted_at is null`.execute(db);
  await sql`create index clients_deleted_list_idx on clients (org_id, env, created_at desc, id desc) where deleted_at is not null`.execute(
    db,
  );
  await sql`drop index clients_active_idx`.execute(db);

  // `q` is a substring match (ilike '%…%') on four columns, which no b-tree can serve; trigrams
  // can. One index per column: the planner ORs their bitmaps, and it costs four small indexes
  // well below a scan, where one four-column GIN index it judged dearer than the scan and left
  // unused. A database without pg_trgm (a PostgreSQL without contrib) still answers `q`, by
  // scanning the organisation's rows.
  const { rows } = await sql<{ available: boolean }>`
    select exists (select 1 from pg_available_extensions where name = 'pg_trgm') as available`.execute(db);
  if (!rows[0]?.available) return;
  await sql`create extension if not exists pg_trgm`.execute(db);
  for (const column of SEARCHED_COLUMNS) {
    await sql`create index ${sql.id(`clients_${column}_trgm_idx`)} on clients using gin (${sql.ref(column)} gin_trgm_ops)`.execute(db);
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  // pg_trgm stays: other objects of the database may use it.
  for (const column of SEARCHED_COLUMNS) await sql`drop index if exists ${sql.id(`clients_${column}_trgm_idx`)}`.execute(db);
  await sql`create index clients_active_idx on clients (org_id, env) where deleted_at is null`.execute(db);
  await sql`drop index clients_deleted_list_idx`.execute(db);
  await sql`drop index clients_active_list_idx`.execute(db);
}
