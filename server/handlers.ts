/** Every operation of the spec, by operationId. A missing key is a type error. */
import type { Handlers } from './http/handler-types.js';
import { tokenHandlers } from './tokens/tokens.http.js';
import { clientHandlers } from './clients/clients.http.js';
import { contactHandlers } from './contacts/contacts.http.js';
import { systemHandlers } from './system.http.js';
import { eventHandlers } from './events/events.http.js';
import { webhookEndpointHandlers } from './webhooks/endpoints.http.js';

/** All but getReadiness, which is each app's own (server/health/readiness.ts: it knows when that app drains). */
export const handlers: Omit<Handlers, 'getReadiness'> = {
  ...clientHandlers,
  ...contactHandlers,
  ...tokenHandlers,
  ...systemHandlers,
  ...eventHandlers,
  ...webhookEndpointHandlers,
};
