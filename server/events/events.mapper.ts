/** The one place where an events row becomes the API's Event: in the feed and in a delivery's body alike. */
import type { components } from '../../generated/api.js';
import type { EventColumns } from './events.queries.js';

export type { EventColumns } from './events.queries.js';

export type Event = components['schemas']['Event'];
export type EventType = components['schemas']['EventType'];

export function toEvent(row: EventColumns): Event {
  return {
    id: row.id,
    type: row.type,
    env: row.env,
    createdAt: (row.created_at instanceof Date ? row.created_at : new Date(row.created_at)).toISOString(),
    data: row.data,
  } as Event;
}
