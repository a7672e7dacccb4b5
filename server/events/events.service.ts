/**
 * Events: what a change of a client writes beside itself (server/clients/clients.service.ts calls
 * `clientEvent`), the change feed (`GET /events`), one event, and the 30 days they are kept.
 */
import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import type { Kysely } from 'kysely';
import type { operations } from '../../generated/api.js';
import type { ReadConsistency, Reads, Served } from '../db/reads.js';
import type { Database } from '../db/schema.js';
import { type BatchOptions, removeInBatches } from '../shared/batches.js';
import { notFound, validationFailed } from '../shared/errors.js';
import { pageOf } from '../shared/keyset-cursor.js';
import { parameterMessage } from '../shared/spec-values.js';
import { type Event, type EventType, toEvent } from './events.mapper.js';
import { type EventParams, type FeedPosition, findEvent, purgeEventsBefore, readFeed } from './events.queries.js';
import { isUuid } from '../shared/ids.js';
import { activeTraceparent } from '../shared/tracing.js';
import type { Tenant } from '../shared/tenant.js';

export type { EventParams } from './events.queries.js';
export { insertEvent } from './events.queries.js';

type EventList = operations['listEvents']['responses'][200]['content']['application/json'];
type EventListQuery = NonNullable<operations['listEvents']['parameters']['query']>;

export const EVENT_RETENTION_MS = 30 * 24 * 60 * 60 * 1000;

/** The event of one change of a client: `object` is the client after it, at its `updatedAt`. */
export function clientEvent(
  type: EventType,
  tenant: Tenant,
  object: { id: string; updatedAt: string },
  previousAttributes?: Record<string, unknown>,
): EventParams {
  return {
    eventOrgId: tenant.orgId,
    eventEnv: tenant.env,
    eventId: randomUUID(),
    eventType: type,
    eventCreatedAt: new Date(object.updatedAt),
    eventData: JSON.stringify(previousAttributes ? { object, previousAttributes } : { object }),
    // The request's trace, kept with the event: its deliveries continue it (docs/tracing.md).
    eventTraceContext: activeTraceparent(),
    eventObjectId: object.id,
  };
}

/**
 * The fields of `after` that differ from `before`, with their values before; undefined when none
 * does (a PATCH that changed nothing, which writes no event).
 */
export function changedAttributes<T extends object>(before: T, after: T): Partial<T> | undefined {
  const changed: Partial<T> = {};
  for (const field of Object.keys(after) as (keyof T)[]) {
    // Deep: metadata is an object, equal by its keys and values.
    if (!isDeepStrictEqual(before[field], after[field])) changed[field] = before[field];
  }
  return Object.keys(changed).length > 0 ? changed : undefined;
}

const AFTER_ERROR = parameterMessage('listEvents', 'after');
const DIGITS = /^(?:0|[1-9][0-9]{0,18})$/;
/** The feed's beginning: before every event. */
const START: FeedPosition = { txid: '0', seq: '0' };

export function encodeFeedPosition(position: FeedPosition): string {
  return Buffer.from(`${position.txid}.${position.seq}`).toString('base64url');
}

/** A cursor this API did not give out is 400 naming `after`, never a database error. */
export function decodeFeedPosition(cursor: string): FeedPosition {
  const [txid, seq, ...rest] = Buffer.from(cursor, 'base64url').toString('utf8').split('.');
  if (
    rest.length > 0 ||
    !txid ||
    !seq ||
    !DIGITS.test(txid) ||
    !DIGITS.test(seq) ||
    BigInt(txid) > 2n ** 63n - 1n ||
    BigInt(seq) > 2n ** 63n - 1n
  )
    throw validationFailed({ after: AFTER_ERROR });
  return { txid, seq };
}

/**
 * A page of the feed, read on a replica when the caller accepts `eventual`. The horizon holds
 * there too: a hot standby's snapshot counts as running every transaction of the primary whose
 * end it has not replayed (and every smaller id it has not seen end), so its `pg_snapshot_xmin`
 * is never past a transaction that could still commit an event; and since every event below a
 * page's horizon is already final, a cursor given out by one copy is good on any other.
 */
export async function listEvents(
  reads: Reads,
  tenant: Tenant,
  query: EventListQuery,
  consistency: ReadConsistency,
  defaultLimit: number,
): Promise<Served<EventList>> {
  const limit = query.limit ?? defaultLimit;
  const after = query.after === undefined ? START : decodeFeedPosition(query.after);
  return reads.read(consistency, async (db) => {
    // One row more than the page tells whether more are there already.
    const { page, more } = pageOf(await readFeed(db, tenant, { after, type: query.type, limit: limit + 1 }), limit);
    const last = page[page.length - 1];
    return {
      data: page.map(toEvent),
      nextCursor: encodeFeedPosition(last ? { txid: last.txid, seq: last.seq } : after),
      hasMore: more,
    };
  });
}

export async function getEvent(db: Kysely<Database>, tenant: Tenant, id: string): Promise<Event> {
  const row = isUuid(id) ? await findEvent(db, tenant, id) : undefined;
  if (!row) throw notFound('There is no event with this id.');
  return toEvent(row);
}

/** Removes every event older than 30 days, in bounded batches (server/shared/batches.ts); returns how many went. */
export function purgeExpiredEvents(db: Kysely<Database>, now: Date, options?: BatchOptions): Promise<number> {
  const before = new Date(now.getTime() - EVENT_RETENTION_MS);
  return removeInBatches((batchSize) => purgeEventsBefore(db, before, batchSize), options);
}
