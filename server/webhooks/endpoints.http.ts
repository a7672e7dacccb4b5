/** The webhook endpoints' operations. */
import type { Handlers } from '../http/handler-types.js';

const notYet = async (): Promise<never> => {
  throw new Error('not built yet');
};

export const webhookEndpointHandlers = {
  listWebhookEndpoints: notYet,
  createWebhookEndpoint: notYet,
  getWebhookEndpoint: notYet,
  updateWebhookEndpoint: notYet,
  deleteWebhookEndpoint: notYet,
  rotateWebhookEndpointSecret: notYet,
  listWebhookDeliveries: notYet,
} satisfies Partial<Handlers>;
