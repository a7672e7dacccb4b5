/** The webhook endpoints' operations: HTTP in, plain values to the service, the answer out. */
import type { Handlers } from '../http/handler-types.js';
import { keyedCall, keyedId, keyedTransaction } from '../idempotency/idempotency.js';
import * as endpoints from './endpoints.service.js';
import * as recovery from './recovery.service.js';

export const webhookEndpointHandlers = {
  listWebhookEndpoints: async ({ db, auth, now }) => ({ status: 200, body: { data: await endpoints.listEndpoints(db, auth, now) } }),
  createWebhookEndpoint: async ({ db, key, auth, body, now, webhooks, respond }) => {
    // The plan, then the URL (its host resolved): before the transaction, which waits on nothing.
    await endpoints.checkNewEndpoint(auth, body, webhooks);
    return keyedTransaction(db, key, async (trx) => {
      const created = await endpoints.createEndpoint(trx, auth, body, now, webhooks.secrets);
      // The secret is shown once: a replay of this request answers the endpoint without it.
      return respond({
        status: 201,
        body: created,
        headers: { Location: `/webhook-endpoints/${created.data.id}` },
        storedBody: { data: created.data },
      });
    });
  },
  getWebhookEndpoint: async ({ db, auth, params, now }) => ({
    status: 200,
    body: { data: await endpoints.getEndpoint(db, auth, params.id, now) },
  }),
  updateWebhookEndpoint: async ({ db, key, auth, params, body, now, webhooks, respond }) => {
    await endpoints.checkEndpointChange(auth, body, webhooks);
    return keyedTransaction(db, key, async (trx) =>
      respond({ status: 200, body: { data: await endpoints.updateEndpoint(trx, auth, params.id, body, now) } }),
    );
  },
  deleteWebhookEndpoint: async ({ db, key, auth, params, now, respond }) =>
    keyedTransaction(db, key, async (trx) =>
      respond({ status: 200, body: { data: await endpoints.deleteEndpoint(trx, auth, params.id, now) } }),
    ),
  rotateWebhookEndpointSecret: async ({ db, key, auth, params, now, webhooks, respond }) =>
    keyedTransaction(db, key, async (trx) => {
      const rotated = await endpoints.rotateSecret(trx, auth, params.id, now, webhooks.secrets);
      return respond({ status: 200, body: rotated, storedBody: { data: rotated.data } });
    }),
  recoverWebhookEndpoint: async ({ db, key, auth, params, body, now, respond }) => {
    const window = recovery.checkRecovery(auth, body, now);
    return keyedTransaction(db, key, async (trx) =>
      respond({ status: 202, body: { data: await recovery.recoverEndpoint(trx, auth, params.id, window, now) } }),
    );
  },
  // The receiver is called between two transactions, never inside one.
  testWebhookEndpoint: async ({ db, key, auth, params, now, webhooks, respond }) =>
    keyedCall(db, key, {
      prepare: (trx) => recovery.prepareTest(trx, auth, params.id, now, webhooks, key && keyedId(key)),
      call: (prepared) => recovery.sendTest(prepared, webhooks),
      finish: async (trx, sent) => respond({ status: 200, body: { data: await recovery.recordTest(trx, sent) } }),
    }),
  listWebhookDeliveries: async ({ db, auth, params, query }) => ({
    status: 200,
    body: await endpoints.listDeliveries(db, auth, params.id, query),
  }),
} satisfies Partial<Handlers>;
