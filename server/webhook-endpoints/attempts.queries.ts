/** The delivery log as the API reads it (GET /webhook-endpoints/{id}/deliveries); the worker writes it. */
import type { Kysely } from 'kysely';
import type { Database, WebhookAttemptRow } from '../db/schema.js';
import { afterPosition, type KeysetPosition, positionOf } from '../shared/keyset-cursor.js';
import type { Tenant } from '../shared/tenant.js';

export type ListedAttemptRow = WebhookAttemptRow & { position: string };

/**
 * The endpoint's delivery attempts, newest first, by keyset: `(attempted_at, id)` below `after`.
 * Read only (the worker writes them); the join keeps them to the tenant's own endpoint.
 */
export async function listAttemptRows(
  db: Kysely<Database>,
  tenant: Tenant,
  endpointId: string,
  page: { limit: number; after?: KeysetPosition | undefined },
): Promise<ListedAttemptRow[]> {
  let query = db
    .selectFrom('webhook_attempts as a')
    .innerJoin('webhook_endpoints as e', (join) => join.onRef('e.org_id', '=', 'a.org_id').onRef('e.id', '=', 'a.endpoint_id'))
    .selectAll('a')
    .select(positionOf('a.attempted_at').as('position'))
    .where('a.org_id', '=', tenant.orgId)
    .where('a.endpoint_id', '=', endpointId)
    .where('e.env', '=', tenant.env);
  if (page.after) query = query.where(afterPosition(page.after, 'a.attempted_at', 'a.id'));
  return query.orderBy('a.attempted_at', 'desc').orderBy('a.id', 'desc').limit(page.limit).execute();
}
