import { sql, type Kysely } from 'kysely';

/**
 * A client's `metadata` (the integrator's key-value pairs, as Stripe's) and `externalId` (the
 * integrator's own id for it). Both columns are added without rewriting the table (a constant
 * default, a nullable column). `externalId` is unique per organisation and environment among the
 * clients that are not deleted, which this partial index makes true under any race; it also serves
 * `GET /clients?externalId=`. `metadata[key]=value` filters are containment (`@>`), which the GIN
 * index serves.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table clients add column if not exists metadata jsonb not null default '{}'`.execute(db);
  await sql`alter table clients add column if not exists external_id text`.execute(db);
  await sql`
    create unique index if not exists clients_external_id_idx on clients (org_id, env, external_id)
    where deleted_at is null and external_id is not null`.execute(db);
  await sql`create index if not exists clients_metadata_idx on clients using gin (metadata jsonb_path_ops)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index clients_metadata_idx`.execute(db);
  await sql`drop index clients_external_id_idx`.execute(db);
  await sql`alter table clients drop column external_id`.execute(db);
  await sql`alter table clients drop column metadata`.execute(db);
}
