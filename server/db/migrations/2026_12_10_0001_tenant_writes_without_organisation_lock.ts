import { sql, type Kysely } from 'kysely';

/**
 * A tenant's writes no longer lock its organisation's row (issue 25's create ratio, lever 6).
 *
 * `clients`, `idempotency_keys` and `contacts` had a foreign key to `organisations (id)`. PostgreSQL
 * checks one for each row written with `select 1 from organisations where id = $1 for key share`,
 * so every keyed write of a tenant locked the same row. Two such locks at once make the row's
 * locker a MultiXact, and each further one makes a new MultiXact holding every locker still open:
 * 16,000 inserts of a client from 8 connections (pgbench) made 15,878 MultiXacts with 94,421
 * members between them (none without the key), each a lock record in the WAL and a write to the row's page, which
 * every write of the tenant waits its turn for. The members' space is shared by the whole cluster:
 * one busy tenant hastens the anti-wraparound vacuums every table then needs. A plan change, which
 * locks the row `for update`, also waited for every write of the tenant in flight and held the next
 * ones until it committed.
 *
 * What the keys guarded is kept otherwise:
 * - A row's `org_id` is always its token's organisation, which the token's lookup read from
 *   `organisations` (server/tokens/tokens.queries.ts); nothing else writes these tables. (A token
 *   cached in a process outlives its organisation's deletion by a second at most, and a write in
 *   that second would leave a row no token can reach, where the key refused it. The service never
 *   deletes an organisation; an operator who does so stops its traffic first.)
 * - Deleting an organisation still takes its rows with it, now by a trigger on `organisations`
 *   (its clients, whose contacts go by their own key to `clients`, its contacts and its keys),
 *   which costs nothing until an organisation is deleted. `events` never had a key to it (its
 *   migration), and its rows go with the purge.
 * The rare writers keep their keys: `api_tokens` and `webhook_endpoints`.
 *
 * `down` puts the keys back (checking every row: a row of an organisation deleted meanwhile stops
 * it, as it should) and drops the trigger.
 */
const TABLES = ['clients', 'idempotency_keys', 'contacts'] as const;

export async function up(db: Kysely<unknown>): Promise<void> {
  for (const table of TABLES) {
    await sql`alter table ${sql.table(table)} drop constraint if exists ${sql.ref(`${table}_org_id_fkey`)}`.execute(db);
  }
  await sql`
    create or replace function organisations_delete_tenant_rows() returns trigger language plpgsql as $$
    begin
      delete from idempotency_keys where org_id = old.id;
      delete from contacts where org_id = old.id;
      delete from clients where org_id = old.id;
      return old;
    end
    $$`.execute(db);
  await sql`drop trigger if exists organisations_delete_tenant_rows on organisations`.execute(db);
  await sql`
    create trigger organisations_delete_tenant_rows after delete on organisations
    for each row execute function organisations_delete_tenant_rows()`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop trigger if exists organisations_delete_tenant_rows on organisations`.execute(db);
  await sql`drop function if exists organisations_delete_tenant_rows()`.execute(db);
  for (const table of TABLES) {
    await sql`alter table ${sql.table(table)} drop constraint if exists ${sql.ref(`${table}_org_id_fkey`)}`.execute(db);
    await sql`
      alter table ${sql.table(table)} add constraint ${sql.ref(`${table}_org_id_fkey`)}
      foreign key (org_id) references organisations (id) on delete cascade`.execute(db);
  }
}
