import { sql, type Kysely } from 'kysely';

/**
 * `q` off the request path (issue 25). The trigram indexes move from `clients`, where every
 * create and update paid four GIN updates inside the request, to `client_search`: the searched
 * text of each client, kept by a background indexer (server/clients/search-indexer.ts) from the
 * outbox (`events`), a batch of events per statement. `client_search_position` is where the
 * indexer has got to in the feed, `(txid, seq)`; a search answers from `client_search` plus the
 * tenant's clients with events after that position (their live rows), so it never lags
 * (server/clients/client-search.queries.ts).
 *
 * `events_txid_idx` lets the indexer read the feed across every tenant in order (the feed's own
 * index starts with the tenant); a b-tree on an increasing key, a fraction of a GIN's cost.
 *
 * The table is filled from `clients` here, and the position set to this migration's snapshot: every
 * transaction that ended before it is in the copy; any event after the position is indexed again,
 * which changes nothing. Safe to run again (the copy is an upsert, the position kept if present).
 */
const SEARCHED_COLUMNS = ['name', 'contact_name', 'email', 'billing_email'];

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table if not exists client_search (
      org_id uuid not null,
      env text not null,
      client_id uuid not null,
      created_at timestamptz not null,
      deleted boolean not null,
      name text not null,
      contact_name text,
      email text,
      billing_email text,
      primary key (org_id, env, client_id)
    )`.execute(db);
  await sql`
    create table if not exists client_search_position (
      singleton boolean primary key default true check (singleton),
      txid xid8 not null,
      seq bigint not null,
      indexed_at timestamptz not null
    )`.execute(db);
  await sql`
    insert into client_search_position (txid, seq, indexed_at)
    values (pg_snapshot_xmin(pg_current_snapshot()), 0, now())
    on conflict do nothing`.execute(db);
  await sql`
    insert into client_search (org_id, env, client_id, created_at, deleted, name, contact_name, email, billing_email)
    select org_id, env, id, created_at, deleted_at is not null, name, contact_name, email, billing_email from clients
    on conflict (org_id, env, client_id) do update
      set created_at = excluded.created_at, deleted = excluded.deleted, name = excluded.name,
          contact_name = excluded.contact_name, email = excluded.email, billing_email = excluded.billing_email`.execute(db);

  // The search table's own list order, as `clients` has it (2026_11_28_0005): a common term walks
  // it newest first and stops at the page's end; active and deleted rows each have their own.
  await sql`
    create index if not exists client_search_active_list_idx on client_search (org_id, env, created_at desc, client_id desc)
    where not deleted`.execute(db);
  await sql`
    create index if not exists client_search_deleted_list_idx on client_search (org_id, env, created_at desc, client_id desc)
    where deleted`.execute(db);
  await sql`create index if not exists client_search_list_idx on client_search (org_id, env, created_at desc, client_id desc)`.execute(db);

  // The search table's trigram indexes, built in bulk after its rows. Without pg_trgm (a PostgreSQL
  // without contrib) `q` still answers, by reading the tenant's rows of client_search.
  const { rows } = await sql<{ available: boolean }>`
    select exists (select 1 from pg_available_extensions where name = 'pg_trgm') as available`.execute(db);
  if (rows[0]?.available) {
    await sql`create extension if not exists pg_trgm`.execute(db);
    for (const column of SEARCHED_COLUMNS) {
      // fastupdate off, as on `clients` before (2026_11_29_0001): the indexer's batches pay for their
      // own entries, never one unlucky batch for a whole pending list.
      await sql`
        create index if not exists ${sql.id(`client_search_${column}_trgm_idx`)} on client_search
        using gin (${sql.ref(column)} gin_trgm_ops) with (fastupdate = off)`.execute(db);
    }
  }

  // Last, so that the locks they take on the busy tables (a build's share lock on `events`, a drop's
  // exclusive lock on `clients`, both held until the migration commits) last as short as they can.
  await sql`create index if not exists events_txid_idx on events (txid, seq)`.execute(db);
  for (const column of SEARCHED_COLUMNS) await sql`drop index if exists ${sql.id(`clients_${column}_trgm_idx`)}`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  const { rows } = await sql<{ present: boolean }>`select exists (select 1 from pg_extension where extname = 'pg_trgm') as present`.execute(
    db,
  );
  if (rows[0]?.present) {
    for (const column of SEARCHED_COLUMNS) {
      await sql`
        create index if not exists ${sql.id(`clients_${column}_trgm_idx`)} on clients
        using gin (${sql.ref(column)} gin_trgm_ops) with (fastupdate = off)`.execute(db);
    }
  }
  await sql`drop index if exists events_txid_idx`.execute(db);
  await sql`drop table if exists client_search_position`.execute(db);
  await sql`drop table if exists client_search`.execute(db);
}
