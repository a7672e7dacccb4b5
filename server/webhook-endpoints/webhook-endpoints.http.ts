/** The webhook endpoints' operations, and the event's redelivery: parameters to the services, their results to a status. */
import type { Handlers } from '../operations/handler-types.js';
import type { WebhookSettings } from '../webhook-delivery/settings.js';
import * as endpoints from './endpoints.service.js';
import * as recovery from './recovery.service.js';

export interface WebhookEndpointsDeps {
  /** Secrets' encryption, the address policy and the attempts' time limit (shared with the delivery worker). */
  webhooks: WebhookSettings;
}

export function webhookEndpointHandlers({ webhooks }: WebhookEndpointsDeps) {
  return {
    listWebhookEndpoints: async ({ db, auth, now }) => ({ status: 200, body: { data: await endpoints.listEndpoints(db, auth, now) } }),
    createWebhookEndpoint: ({ db, key, auth, body, now, respond }) =>
      endpoints.createEndpoint(db, auth, body, now, webhooks, key, (created) =>
        // The secret is shown once: a replay of this request answers the endpoint without it.
        respond({
          status: 201,
          body: created,
          headers: { Location: `/webhook-endpoints/${created.data.id}` },
          storedBody: { data: created.data },
        }),
      ),
    getWebhookEndpoint: async ({ db, auth, params, now }) => ({
      status: 200,
      body: { data: await endpoints.getEndpoint(db, auth, params.id, now) },
    }),
    updateWebhookEndpoint: ({ db, key, auth, params, body, now, respond }) =>
      endpoints.updateEndpoint(db, auth, params.id, body, now, webhooks, key, (updated) =>
        respond({ status: 200, body: { data: updated } }),
      ),
    deleteWebhookEndpoint: ({ db, key, auth, params, now, respond }) =>
      endpoints.deleteEndpoint(db, auth, params.id, now, key, (deleted) => respond({ status: 200, body: { data: deleted } })),
    rotateWebhookEndpointSecret: ({ db, key, auth, params, now, respond }) =>
      endpoints.rotateSecret(db, auth, params.id, now, webhooks.secrets, key, (rotated) =>
        respond({ status: 200, body: rotated, storedBody: { data: rotated.data } }),
      ),
    recoverWebhookEndpoint: ({ db, key, auth, params, body, now, respond }) =>
      recovery.recoverEndpoint(db, auth, params.id, body, now, key, (recovered) => respond({ status: 202, body: { data: recovered } })),
    testWebhookEndpoint: ({ db, key, auth, params, now, respond }) =>
      recovery.testEndpoint(db, auth, params.id, now, webhooks, key, (attempt) => respond({ status: 200, body: { data: attempt } })),
    listWebhookDeliveries: async ({ db, auth, params, query }) => ({
      status: 200,
      body: await endpoints.listDeliveries(db, auth, params.id, query),
    }),
    // Sending an event again is the webhooks' business (POST /events/{id}/redeliver): the event is only where it is asked for.
    redeliverEvent: ({ db, key, auth, params, body, now, respond }) =>
      recovery.redeliverEvent(db, auth, params.id, body ?? {}, now, key, (redelivery) =>
        respond({ status: 202, body: { data: redelivery } }),
      ),
  } satisfies Partial<Handlers>;
}
