/** The change feed's operations. */
import type { Handlers } from '../http/handler-types.js';
import * as events from './events.service.js';
import { parameterDefault } from '../shared/spec-values.js';

const PAGE = parameterDefault('listEvents', 'limit') as number;

export const eventHandlers = {
  listEvents: async ({ db, auth, query }) => ({ status: 200, body: await events.listEvents(db, auth, query, PAGE) }),
  getEvent: async ({ db, auth, params }) => ({ status: 200, body: { data: await events.getEvent(db, auth, params.id) } }),
} satisfies Partial<Handlers>;
