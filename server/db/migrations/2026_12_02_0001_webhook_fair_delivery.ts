import { sql, type Kysely } from 'kysely';

/**
 * Fair delivery (docs/webhooks.md, "Fairness"): each endpoint's circuit, the time its organisation's
 * plan has held it, and the indexes the worker's claim walks instead of one queue ordered by time.
 *
 * - `consecutive_failures`, `circuit_opened_at`, `circuit_open_until`: failed attempts in a row
 *   since the last success, and the circuit they opened (open until `circuit_open_until`; past it,
 *   one probe; a success clears all three).
 * - `plan_paused_at`: since when the organisation's plan has not included webhooks (set and
 *   cleared by the worker); that time does not count toward the five-day disable.
 * - Deliveries by endpoint, pending only: the claim steps from one endpoint with pending work to
 *   the next (a skip scan), then takes each one's oldest due deliveries; the count of an
 *   endpoint's live leases reads only the leased rows. The queue ordered by time alone
 *   (`webhook_deliveries_due_idx`) had no reader left.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table webhook_endpoints
      add column if not exists consecutive_failures integer not null default 0,
      add column if not exists circuit_opened_at timestamptz,
      add column if not exists circuit_open_until timestamptz,
      add column if not exists plan_paused_at timestamptz`.execute(db);
  await sql`create index if not exists webhook_endpoints_circuit_idx on webhook_endpoints (circuit_open_until) where circuit_open_until is not null`.execute(
    db,
  );
  await sql`create index if not exists webhook_endpoints_plan_paused_idx on webhook_endpoints (org_id) where plan_paused_at is not null`.execute(
    db,
  );
  await sql`
    create index if not exists webhook_deliveries_endpoint_due_idx
    on webhook_deliveries (org_id, endpoint_id, next_attempt_at) where status = 'pending'`.execute(db);
  await sql`create index if not exists webhook_deliveries_leased_idx on webhook_deliveries (org_id, endpoint_id) where lease_id is not null`.execute(
    db,
  );
  await sql`drop index if exists webhook_deliveries_due_idx`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`create index if not exists webhook_deliveries_due_idx on webhook_deliveries (next_attempt_at) where status = 'pending'`.execute(
    db,
  );
  await sql`drop index if exists webhook_deliveries_leased_idx`.execute(db);
  await sql`drop index if exists webhook_deliveries_endpoint_due_idx`.execute(db);
  await sql`drop index if exists webhook_endpoints_plan_paused_idx`.execute(db);
  await sql`drop index if exists webhook_endpoints_circuit_idx`.execute(db);
  await sql`
    alter table webhook_endpoints
      drop column if exists consecutive_failures,
      drop column if exists circuit_opened_at,
      drop column if exists circuit_open_until,
      drop column if exists plan_paused_at`.execute(db);
}
