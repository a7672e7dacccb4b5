import { sql, type Kysely } from 'kysely';

/**
 * Tracing (docs/tracing.md): `events.trace_context`, the W3C `traceparent` of the request whose
 * change wrote the event, written in the same statement as the event when tracing is on, null
 * otherwise. The webhook worker's delivery span continues that trace and links to it, and the
 * delivery carries its own `traceparent` to the receiver. A nullable column without a default:
 * adding it rewrites nothing.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table events add column if not exists trace_context text`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table events drop column if exists trace_context`.execute(db);
}
