/** The change feed's operations (sending an event again is the webhooks': server/webhook-endpoints/). */
import type { Handlers } from '../operations/handler-types.js';
import * as events from './events.service.js';
import { parameterDefault } from '../shared/spec-values.js';

const PAGE = parameterDefault('listEvents', 'limit') as number;

export const eventHandlers = {
  listEvents: async ({ reads, readConsistency, auth, query }) => {
    const { value, consistency } = await events.listEvents(reads, auth, query, readConsistency, PAGE);
    return { status: 200, body: value, headers: { 'Read-Consistency': consistency } };
  },
  getEvent: async ({ db, auth, params }) => ({ status: 200, body: { data: await events.getEvent(db, auth, params.id) } }),
} satisfies Partial<Handlers>;
