/**
 * Every operation of the spec, by operationId (a missing key is a type error), made once at
 * start-up from each resource's module and what that module needs.
 */
import { clientHandlers } from './clients/clients.http.js';
import { contactHandlers } from './contacts/contacts.http.js';
import { eventHandlers } from './events/events.http.js';
import type { Handlers } from './operations/handler-types.js';
import { systemHandlers } from './system/system.http.js';
import { type TokensDeps, tokenHandlers } from './tokens/tokens.http.js';
import { type WebhookEndpointsDeps, webhookEndpointHandlers } from './webhook-endpoints/webhook-endpoints.http.js';

/** What the resources' modules need beyond a request (each takes its own part). */
export type ModuleDeps = TokensDeps & WebhookEndpointsDeps;

/** All but getReadiness, which is each app's own (server/health/readiness.ts: it knows when that app drains). */
export function createHandlers(deps: ModuleDeps): Omit<Handlers, 'getReadiness'> {
  return {
    ...clientHandlers,
    ...contactHandlers,
    ...tokenHandlers(deps),
    ...systemHandlers,
    ...eventHandlers,
    ...webhookEndpointHandlers(deps),
  };
}
