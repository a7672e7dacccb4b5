/** The one place where an events row becomes the API's Event: in the feed and in a delivery's body alike. */
import type { components } from '../../generated/api.js';
import type { EventRow } from '../db/schema.js';

export type Event = components['schemas']['Event'];
export type EventType = components['schemas']['EventType'];

/** The columns an event is made of. */
export type EventColumns = Pick<EventRow, 'id' | 'type' | 'env' | 'created_at' | 'data'>;

export function toEvent(row: EventColumns): Event {
  return {
    id: row.id,
    type: row.type,
    env: row.env,
    createdAt: (row.created_at instanceof Date ? row.created_at : new Date(row.created_at)).toISOString(),
    data: row.data,
  } as Event;
}
