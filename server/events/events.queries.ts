/**
 * The one module that writes `events`: the outbox every change of a client writes into, in the
 * change's own statement or transaction, and the change feed read from it.
 *
 * An event's place in the feed is `(txid, seq)`: the id of the transaction that wrote it and a
 * sequence number. The feed shows only events whose transaction id is below the oldest
 * transaction still running (`pg_snapshot_xmin`): every transaction that could still write an
 * event with a smaller place has ended, so an event never appears behind a place already read.
 * Two changes to one client are in order: the second locks the row the first wrote, and gets its
 * transaction id only after the first had one.
 */
import { type Kysely, sql } from 'kysely';
import { compiler, prepare } from '../db/prepared.js';
import type { Database, Env, EventRow } from '../db/schema.js';
import type { Tenant } from '../shared/tenant.js';

/** One event, as the statement that writes the change also writes it. */
export interface EventParams {
  eventOrgId: string;
  eventEnv: Env;
  eventId: string;
  eventType: string;
  eventCreatedAt: Date;
  /** `{ object, previousAttributes? }` as JSON text. */
  eventData: string;
  /** The W3C `traceparent` of the span that made the change, when tracing is on; else null. */
  eventTraceContext: string | null;
  /** The id of `data.object`, as a column the search indexer reads without parsing the JSON; null when the event is about no object. */
  eventObjectId: string | null;
}

/** The columns of `events` a statement writes; `txid` and `seq` are the database's own. */
function eventValues(p: EventParams) {
  return sql`${p.eventOrgId}::uuid, ${p.eventEnv}::text, ${p.eventId}::uuid, ${p.eventType}::text, ${p.eventCreatedAt}::timestamptz, ${p.eventData}::json, ${p.eventTraceContext}::text, ${p.eventObjectId}::uuid`;
}

/**
 * The piece a resource's one-statement write includes: the event, inserted once per row that the
 * statement's `written` step returns (so none when it wrote nothing).
 */
export function insertEventForWritten(p: EventParams) {
  return sql`insert into events (org_id, env, id, type, created_at, data, trace_context, object_id) select ${eventValues(p)} from written`;
}

const insertOne = prepare('insert_event', (p: EventParams) =>
  compiler
    .insertInto('events')
    .columns(['org_id', 'env', 'id', 'type', 'created_at', 'data', 'trace_context', 'object_id'])
    .expression(sql`select ${eventValues(p)}`),
);

/** Inside the transaction that makes the change. */
export async function insertEvent(trx: Kysely<Database>, event: EventParams): Promise<void> {
  await insertOne(trx, event);
}

/**
 * The type of a test delivery's event (POST /webhook-endpoints/{id}/test). It is kept here with the
 * events so that its delivery and attempt are listed like any other, and purged with them; but it
 * is about no client: the feed, a read by id, the fan-out and a recovery never show it.
 */
export const TEST_EVENT_TYPE = 'webhook.test';

/** A test delivery's event, once: false (nothing written) when an event with its id is already there. */
export async function insertEventIfAbsent(trx: Kysely<Database>, event: EventParams): Promise<boolean> {
  const { rows } = await sql`
    insert into events (org_id, env, id, type, created_at, data, trace_context, object_id) select ${eventValues(event)}
    on conflict do nothing returning 1`.execute(trx);
  return rows.length > 0;
}

/** A place in the feed: a transaction id and a sequence number, both as decimal text. */
export interface FeedPosition {
  txid: string;
  seq: string;
}

export interface FeedQuery {
  after: FeedPosition;
  type: string | undefined;
  limit: number;
}

/** The columns an event is made of (server/events/events.mapper.ts renders them). */
export type EventColumns = Pick<EventRow, 'id' | 'type' | 'env' | 'created_at' | 'data'>;

export type FeedRow = EventColumns & FeedPosition;

const EVENT_COLUMNS = ['id', 'type', 'env', 'created_at', 'data'] as const;

/** Events after `after`, in feed order, only those no running transaction can still precede. */
export async function readFeed(db: Kysely<Database>, tenant: Tenant, query: FeedQuery): Promise<FeedRow[]> {
  let select = db
    .selectFrom('events')
    .select([...EVENT_COLUMNS, sql<string>`txid::text`.as('txid'), sql<string>`seq::text`.as('seq')])
    .where('org_id', '=', tenant.orgId)
    .where('env', '=', tenant.env)
    .where(sql<boolean>`(txid, seq) > (${query.after.txid}::xid8, ${query.after.seq}::bigint)`)
    .where(sql<boolean>`txid < pg_snapshot_xmin(pg_current_snapshot())`)
    .where('type', '<>', TEST_EVENT_TYPE);
  if (query.type !== undefined) select = select.where('type', '=', query.type);
  // Qualified: a bare `txid` in ORDER BY names the output column above, the text, which sorts "10" before "9".
  return select.orderBy('events.txid').orderBy('events.seq').limit(query.limit).execute();
}

export async function findEvent(
  db: Kysely<Database>,
  tenant: Tenant,
  id: string,
): Promise<Pick<EventRow, (typeof EVENT_COLUMNS)[number]> | undefined> {
  return db
    .selectFrom('events')
    .select(EVENT_COLUMNS)
    .where('org_id', '=', tenant.orgId)
    .where('env', '=', tenant.env)
    .where('id', '=', id)
    .where('type', '<>', TEST_EVENT_TYPE)
    .executeTakeFirst();
}

/**
 * Deletes up to `batchSize` events made before `before` (their deliveries and attempts go with
 * them, by cascade); how many went. Rows another purge holds are skipped, not waited for.
 */
export async function purgeEventsBefore(db: Kysely<Database>, before: Date, batchSize: number): Promise<number> {
  const result = await sql`
    delete from events
    where ctid in (select ctid from events where created_at < ${before} limit ${batchSize} for update skip locked)
  `.execute(db);
  return Number(result.numAffectedRows ?? 0);
}
