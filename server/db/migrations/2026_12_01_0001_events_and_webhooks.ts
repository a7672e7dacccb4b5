import { sql, type Kysely } from 'kysely';

/**
 * Events (the transactional outbox and the change feed) and webhooks (endpoints, the deliveries
 * the worker claims, the attempts it records). Every key starts with `org_id`, so the tables
 * distribute by organisation as docs/scaling.md describes.
 *
 * An event's place in the feed is `(txid, seq)`: the id of the transaction that wrote it
 * (`pg_current_xact_id()`) and a sequence number. The feed shows an event only once every
 * transaction with a smaller id has ended (server/events/events.queries.ts), so none ever lands
 * behind a cursor already given out.
 *
 * Safe to run again (`if not exists`), as every migration here is.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  // No foreign key to organisations: an event is written with its client's row, whose own key
  // checks the organisation in the same statement; a second check (and the key-share lock on the
  // organisation's row it takes) would only slow every write.
  await sql`
    create table if not exists events (
      org_id uuid not null,
      env text not null check (env in ('live', 'test')),
      id uuid not null,
      txid xid8 not null default pg_current_xact_id(),
      seq bigint generated always as identity,
      type text not null,
      created_at timestamptz not null,
      data json not null,
      primary key (org_id, id)
    )`.execute(db);
  await sql`create index if not exists events_feed_idx on events (org_id, env, txid, seq)`.execute(db);
  // Rows arrive in created_at order, so a BRIN index finds the expired ones for a tiny cost per insert.
  await sql`create index if not exists events_created_at_brin on events using brin (created_at)`.execute(db);

  await sql`
    create table if not exists webhook_endpoints (
      org_id uuid not null references organisations (id) on delete cascade,
      env text not null check (env in ('live', 'test')),
      id uuid not null,
      url text not null,
      description text,
      enabled_events text[] not null,
      disabled boolean not null default false,
      disabled_reason text check (disabled_reason in ('manual', 'failing')),
      failing_since timestamptz,
      secret text not null,
      previous_secret text,
      previous_secret_expires_at timestamptz,
      feed_txid xid8 not null,
      feed_seq bigint not null default 0,
      created_at timestamptz not null,
      updated_at timestamptz not null,
      primary key (org_id, id)
    )`.execute(db);
  await sql`create index if not exists webhook_endpoints_tenant_idx on webhook_endpoints (org_id, env, created_at desc, id desc)`.execute(
    db,
  );

  await sql`
    create table if not exists webhook_deliveries (
      org_id uuid not null,
      id uuid not null,
      endpoint_id uuid not null,
      event_id uuid not null,
      status text not null default 'pending' check (status in ('pending', 'succeeded', 'failed')),
      attempts integer not null default 0,
      next_attempt_at timestamptz not null,
      lease_id uuid,
      leased_until timestamptz,
      created_at timestamptz not null,
      primary key (org_id, id),
      unique (org_id, endpoint_id, event_id),
      foreign key (org_id, endpoint_id) references webhook_endpoints (org_id, id) on delete cascade,
      foreign key (org_id, event_id) references events (org_id, id) on delete cascade
    )`.execute(db);
  await sql`create index if not exists webhook_deliveries_due_idx on webhook_deliveries (next_attempt_at) where status = 'pending'`.execute(
    db,
  );
  await sql`create index if not exists webhook_deliveries_event_idx on webhook_deliveries (org_id, event_id)`.execute(db);

  await sql`
    create table if not exists webhook_attempts (
      org_id uuid not null,
      id uuid not null,
      delivery_id uuid not null,
      endpoint_id uuid not null,
      event_id uuid not null,
      event_type text not null,
      attempt integer not null,
      attempted_at timestamptz not null,
      duration_ms integer not null,
      status_code integer,
      error text,
      succeeded boolean not null,
      next_retry_at timestamptz,
      primary key (org_id, id),
      foreign key (org_id, delivery_id) references webhook_deliveries (org_id, id) on delete cascade
    )`.execute(db);
  await sql`create index if not exists webhook_attempts_endpoint_idx on webhook_attempts (org_id, endpoint_id, attempted_at desc, id desc)`.execute(
    db,
  );
  await sql`create index if not exists webhook_attempts_delivery_idx on webhook_attempts (org_id, delivery_id)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['webhook_attempts', 'webhook_deliveries', 'webhook_endpoints', 'events']) {
    await sql`drop table if exists ${sql.id(table)}`.execute(db);
  }
}
