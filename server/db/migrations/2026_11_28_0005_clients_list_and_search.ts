import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  // GET /clients pages newest first through one of these, by its `deleted` filter: active clients
  // (the default) and deleted ones (`only`) each have their own, so neither skips over the other;
  // `include` keeps using clients_list_idx. The plan's count of active clients uses the first,
  // which makes clients_active_idx redundant.
  await sql`create index clients_active_list_idx on clients (org_id, env, created_at desc, id desc) where deleted_at is null`.execute(db);
  await sql`create index clients_deleted_list_idx on clients (org_id, env, created_at desc, id desc) where deleted_at is not null`.execute(db);
  await sql`drop index clients_active_idx`.execute(db);

  // `q` is a substring match (ilike '%…%'), which no b-tree can serve; trigrams can. A database
  // without pg_trgm (PGlite opened without it, a PostgreSQL without contrib) still answers `q`,
  // by scanning the organisation's rows.
  const { rows } = await sql<{ available: boolean }>`
    select exists (select 1 from pg_available_extensions where name = 'pg_trgm') as available`.execute(db);
  if (!rows[0]?.available) return;
  await sql`create extension if not exists pg_trgm`.execute(db);
  await sql`create index clients_search_idx on clients using gin (
    name gin_trgm_ops, contact_name gin_trgm_ops, email gin_trgm_ops, billing_email gin_trgm_ops)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  // pg_trgm stays: other objects of the database may use it.
  await sql`drop index if exists clients_search_idx`.execute(db);
  await sql`create index clients_active_idx on clients (org_id, env) where deleted_at is null`.execute(db);
  await sql`drop index clients_deleted_list_idx`.execute(db);
  await sql`drop index clients_active_list_idx`.execute(db);
}
