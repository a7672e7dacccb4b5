import { sql, type Kysely } from 'kysely';

/**
 * `webhook_endpoints.concurrency_limit`: the endpoint's adaptive limit of attempts in flight as the
 * worker that last recorded attempts to it had learnt it (server/webhook-delivery/endpoint-limits.ts);
 * null until a worker has. Each worker still learns its own view, but a worker that has not yet
 * attempted an endpoint starts from this one instead of 4: every worker's view bounds the
 * endpoint's leases across all workers, so a worker starting at 4 beside another already holding
 * more leases than that found no room on the endpoint and never learnt more (a second worker
 * process added no throughput to a busy endpoint: docs/performance.md, "Two workers on one
 * endpoint"). A new column with no default: adding it rewrites nothing.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table webhook_endpoints add column if not exists concurrency_limit integer
    constraint webhook_endpoints_concurrency_limit_check check (concurrency_limit >= 1)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table webhook_endpoints drop column if exists concurrency_limit`.execute(db);
}
