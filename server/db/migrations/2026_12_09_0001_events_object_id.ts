import { sql, type Kysely } from 'kysely';

/**
 * `events.object_id`: the id of the event's `data.object` (the client or contact it is about), as
 * a column, written with the event (issue 25's create ratio, lever 4). The search indexer and a
 * search's tail (server/clients/client-search.queries.ts, clients.queries.ts) read the changed
 * client from it, where they parsed each event's JSON text, and the indexer's batch no longer
 * carries the events' data through its sort.
 *
 * Nullable, no default: adding it rewrites nothing. The events written before it, and those an
 * instance of the version before writes during a rollout, have null there; their readers fall back
 * to the JSON for them (`eventClientId`), until the purge has taken them (30 days).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table events add column if not exists object_id uuid`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table events drop column if exists object_id`.execute(db);
}
