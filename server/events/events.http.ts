/** The change feed's operations. */
import type { Handlers } from '../http/handler-types.js';
import { keyedTransaction } from '../idempotency/idempotency.js';
import * as recovery from '../webhooks/recovery.service.js';
import * as events from './events.service.js';
import { parameterDefault } from '../shared/spec-values.js';

const PAGE = parameterDefault('listEvents', 'limit') as number;

export const eventHandlers = {
  listEvents: async ({ reads, readConsistency, auth, query }) => {
    const { value, consistency } = await events.listEvents(reads, auth, query, readConsistency, PAGE);
    return { status: 200, body: value, headers: { 'Read-Consistency': consistency } };
  },
  getEvent: async ({ db, auth, params }) => ({ status: 200, body: { data: await events.getEvent(db, auth, params.id) } }),
  // Sending an event again is the webhooks' business: the event is only where it is asked for.
  redeliverEvent: async ({ db, key, auth, params, body, now, respond }) =>
    keyedTransaction(db, key, async (trx) =>
      respond({ status: 202, body: { data: await recovery.redeliverEvent(trx, auth, params.id, body ?? {}, now) } }),
    ),
} satisfies Partial<Handlers>;
