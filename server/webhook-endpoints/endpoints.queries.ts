/**
 * The endpoints' configuration as the API writes it (POST/GET/PATCH/DELETE /webhook-endpoints,
 * rotate-secret), and the endpoints an event is sent to. The worker's own columns (its place in
 * the feed, failures, the circuit) are server/webhook-delivery/endpoint-state.queries.ts's.
 */
import { type Kysely, sql, type Updateable } from 'kysely';
import type { Database, WebhookEndpointRow, WebhookEndpointsTable } from '../db/schema.js';
import type { Tenant } from '../shared/tenant.js';

export type EndpointsDb = Kysely<Database>;

function endpointsOf(db: EndpointsDb, tenant: Tenant) {
  return db.selectFrom('webhook_endpoints').where('org_id', '=', tenant.orgId).where('env', '=', tenant.env);
}

/** Newest first; `id` breaks ties between endpoints made in the same millisecond. */
export async function listEndpointRows(db: EndpointsDb, tenant: Tenant): Promise<WebhookEndpointRow[]> {
  return endpointsOf(db, tenant).selectAll().orderBy('created_at', 'desc').orderBy('id', 'desc').execute();
}

/** `id` must be a UUID (the column's type). `forUpdate` locks the row until the transaction ends. */
export async function findEndpointRow(
  db: EndpointsDb,
  tenant: Tenant,
  id: string,
  options: { forUpdate?: boolean } = {},
): Promise<WebhookEndpointRow | undefined> {
  const query = endpointsOf(db, tenant).selectAll().where('id', '=', id);
  return (options.forUpdate ? query.forUpdate() : query).executeTakeFirst();
}

/**
 * The tenant's endpoints, counted under a lock per organisation and environment that the
 * transaction holds until it ends: two creates racing for the last place are serialised, and the
 * second counts the first's row.
 */
export async function countEndpointsLocked(trx: EndpointsDb, tenant: Tenant): Promise<number> {
  await sql`select pg_advisory_xact_lock(hashtextextended(${`webhook_endpoints:${tenant.orgId}:${tenant.env}`}, 0))`.execute(trx);
  const { n } = await endpointsOf(trx, tenant)
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(n);
}

/** Every column but the place in the feed, which the insert takes from its own transaction. */
export type NewEndpointRow = Omit<
  WebhookEndpointRow,
  | 'feed_txid'
  | 'feed_seq'
  | 'previous_secret'
  | 'previous_secret_expires_at'
  | 'consecutive_failures'
  | 'circuit_opened_at'
  | 'circuit_open_until'
  | 'plan_paused_at'
  | 'concurrency_limit'
>;

/** The id of the writing transaction: an endpoint gets the events of transactions after it. */
const currentTransaction = sql<string>`pg_current_xact_id()`;

export async function insertEndpointRow(trx: EndpointsDb, row: NewEndpointRow): Promise<WebhookEndpointRow> {
  return trx
    .insertInto('webhook_endpoints')
    .values({
      org_id: row.org_id,
      env: row.env,
      id: row.id,
      url: row.url,
      description: row.description,
      enabled_events: row.enabled_events,
      disabled: row.disabled,
      disabled_reason: row.disabled_reason,
      failing_since: row.failing_since,
      secret: row.secret,
      feed_txid: currentTransaction,
      feed_seq: '0',
      created_at: row.created_at,
      updated_at: row.updated_at,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** Columns an operation may set (the feed's place only through `resumeFeed`). */
export type EndpointValues = Pick<
  Updateable<WebhookEndpointsTable>,
  | 'url'
  | 'description'
  | 'enabled_events'
  | 'disabled'
  | 'disabled_reason'
  | 'failing_since'
  | 'secret'
  | 'previous_secret'
  | 'previous_secret_expires_at'
  | 'consecutive_failures'
  | 'circuit_opened_at'
  | 'circuit_open_until'
>;

/**
 * Writes `values` and `updatedAt`. `resumeFeed` moves the endpoint's place in the feed to this
 * transaction: events of the time it was disabled are not fanned out to it (a recovery asks for them).
 */
export async function updateEndpointRow(
  trx: EndpointsDb,
  tenant: Tenant,
  id: string,
  values: EndpointValues & { updated_at: Date },
  options: { resumeFeed?: boolean } = {},
): Promise<WebhookEndpointRow> {
  return trx
    .updateTable('webhook_endpoints')
    .set(values)
    .$if(options.resumeFeed === true, (query) => query.set({ feed_txid: currentTransaction, feed_seq: '0' }))
    .where('org_id', '=', tenant.orgId)
    .where('env', '=', tenant.env)
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

/**
 * The enabled endpoints of the tenant that take events of `type` and were registered by `madeAt`
 * (an endpoint gets the events made after it): whom a redelivery sends an event to.
 */
export async function listSubscribedEndpointIds(db: EndpointsDb, tenant: Tenant, type: string, madeAt: Date): Promise<string[]> {
  const rows = await endpointsOf(db, tenant)
    .select('id')
    .where('disabled', '=', false)
    .where('created_at', '<=', madeAt)
    .where(sql<boolean>`(${type} = any(enabled_events) or '*' = any(enabled_events))`)
    .orderBy('created_at')
    .orderBy('id')
    .execute();
  return rows.map((row) => row.id);
}

/** Deletes for good (its deliveries and attempts go with it, by cascade); the row as it was, or undefined. */
export async function deleteEndpointRow(trx: EndpointsDb, tenant: Tenant, id: string): Promise<WebhookEndpointRow | undefined> {
  return trx
    .deleteFrom('webhook_endpoints')
    .where('org_id', '=', tenant.orgId)
    .where('env', '=', tenant.env)
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst();
}
