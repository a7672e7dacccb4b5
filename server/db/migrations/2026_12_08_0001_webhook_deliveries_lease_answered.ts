import { sql, type Kysely } from 'kysely';

/**
 * `webhook_deliveries.lease_answered`: the leased attempt has been sent and answered (or has
 * failed), and waits only for its worker to record it. An endpoint's room counts the leases still
 * being sent, across all workers (server/webhook-delivery/deliveries.queries.ts); a worker marks its
 * answered attempts at its next claim. A constant default: adding the column rewrites nothing.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table webhook_deliveries add column if not exists lease_answered boolean not null default false`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table webhook_deliveries drop column if exists lease_answered`.execute(db);
}
