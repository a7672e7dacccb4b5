/**
 * Checked by `npm run typecheck`: the client package's `WebhookEvent` is exactly the union of the
 * spec's `webhooks` payloads, and of its `Event` schema with the test delivery (a new event type in the spec fails here
 * until the package names it), and `verifyWebhook`'s answer narrows by `type`.
 */
import type {
  ClientResource,
  ClientUpdatedEvent,
  ContactResource,
  ContactUpdatedEvent,
  components,
  UnknownEvent,
  WebhookEvent,
  WebhookTestEvent,
  verifyWebhook,
} from '../../client/index.js';
import type { webhooks } from '../../generated/api.js';

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Delivered = { [Type in keyof webhooks]: webhooks[Type]['post']['requestBody']['content']['application/json'] }[keyof webhooks];

export const sameAsWebhooks: Same<WebhookEvent, Delivered> = true;
// The feed's events are every delivery but the test one.
export const sameAsEvent: Same<Exclude<WebhookEvent, WebhookTestEvent>, components['schemas']['Event']> = true;
export const sameTypes: Same<WebhookEvent['type'], components['schemas']['EventType'] | 'webhook.test'> = true;

export function narrows(event: ReturnType<typeof verifyWebhook>): void {
  switch (event.type) {
    case 'client.updated': {
      const changed: ClientUpdatedEvent = event;
      void changed.data.previousAttributes;
      break;
    }
    case 'client.created':
    case 'client.deleted':
    case 'client.restored': {
      const client: ClientResource = event.data.object;
      void client;
      break;
    }
    case 'contact.updated': {
      const changed: ContactUpdatedEvent = event;
      void changed.data.previousAttributes;
      break;
    }
    case 'contact.created':
    case 'contact.deleted': {
      const contact: ContactResource = event.data.object;
      void contact;
      break;
    }
    case 'webhook.test': {
      const endpointId: string = event.data.object.id;
      void endpointId;
      break;
    }
    default: {
      // A type newer than this version: not a client event, and not a crash.
      const unknown: UnknownEvent = event;
      void String(unknown.type);
    }
  }
  // @ts-expect-error only client.updated carries previousAttributes
  if (event.type === 'client.created') void event.data.previousAttributes;
}
