/**
 * The named types of the package: one for every schema of the spec that a user handles (request
 * bodies, resources, pages, the error envelope). Each is derived from the generated types
 * (`generated/api.ts`, made from the spec by `npm run generate`), never retyped, so the spec stays
 * the only place a field is defined; a schema renamed in the spec is one line here.
 *
 * The webhook payloads are the event schemas: `WebhookEvent` is what `verifyWebhook` returns.
 */
import type { components, operations } from './generated/api.js';

type Schemas = components['schemas'];
type Json<
  Operation extends keyof operations,
  Status extends keyof operations[Operation]['responses'],
> = operations[Operation]['responses'][Status] extends { content: { 'application/json': infer Body } } ? Body : never;

/** A client as the API returns it: the request's fields plus `id`, `orgId`, `createdAt`, `updatedAt`, `deletedAt`. */
export type ClientResource = Schemas['Client'];
/** The body of `POST /clients`: `name` is required, every other field optional. */
export type ClientCreate = Schemas['ClientCreate'];
/** The body of `PATCH /clients/{id}`: only the fields to change; `null` clears one. */
export type ClientUpdate = Schemas['ClientUpdate'];
/** The answer of create, read, update, delete and restore: `{ data: ClientResource }`. */
export type ClientData = Schemas['ClientData'];
/** A page of `GET /clients`: `{ data, nextCursor }`; `nextCursor` is null on the last page. */
export type ClientList = Schemas['ClientList'];
/** A contact of a client: `id`, `clientId`, `name`, `email`, `phone`, `role`, `isPrimary`, `receivesInvoices`, `metadata`, `createdAt`, `updatedAt`. */
export type ContactResource = Schemas['Contact'];
/** The body of `POST /clients/{id}/contacts`: `name` is required, every other field optional. */
export type ContactCreate = Schemas['ContactCreate'];
/** The body of `PATCH /clients/{id}/contacts/{contactId}`: only the fields to change; `metadata` merges. */
export type ContactUpdate = Schemas['ContactUpdate'];
/** The answer of create, read, update and delete of one contact: `{ data: ContactResource }`. */
export type ContactData = Schemas['ContactData'];
/** A page of `GET /clients/{id}/contacts`: `{ data, nextCursor }`; `nextCursor` is null on the last page. */
export type ContactList = Schemas['ContactList'];
/** Your own key-value pairs on a client or a contact, as Stripe's `metadata`. */
export type Metadata = Schemas['Metadata'];
/** A Personal Access Token as `GET /tokens` lists it (never its secret). */
export type TokenResource = Schemas['Token'];
/** The body of `POST /tokens`. */
export type TokenCreate = Schemas['TokenCreate'];
/** The answer of `POST /tokens`: the token's record and, this once, the whole token. */
export type TokenCreated = Json<'createToken', 201>;
/** A page of `GET /tokens`, newest first: `{ data: TokenResource[], nextCursor }`; `nextCursor` is null on the last page. */
export type TokenList = Json<'listTokens', 200>;
/** The envelope of every error: `{ error: { code, message, fields?, requiredPlan?, feature? } }`. */
export type ApiErrorBody = Schemas['ErrorEnvelope'];
/** The stable, machine-readable `error.code` values. */
export type ErrorCode = Schemas['ErrorCode'];
/** An organisation's plan, as `error.requiredPlan` names it. */
export type Plan = Schemas['Plan'];
/** A token's environment: `live` or `test`. */
export type Env = Schemas['Env'];
/** A token's scope, such as `clients:write`. */
export type Scope = Schemas['Scope'];
/** The answer of `GET /healthz`. */
export type Health = Schemas['Health'];
/** The answer of `GET /readyz` while the instance can serve (otherwise a 503 `ApiErrorBody`). */
export type Readiness = Schemas['Readiness'];
/** An ISO 4217 currency code as the API returns it (upper case). */
export type CurrencyCode = Schemas['CurrencyCode'];
/** An ISO 3166-1 alpha-2 country code as the API returns it (upper case). */
export type CountryCode = Schemas['CountryCode'];

/** An event of the change feed: one of the client and contact events below, told apart by `type`. */
export type Event = Schemas['Event'];
/** A page of `GET /events`, oldest first: `{ data, nextCursor, hasMore }`; keep `nextCursor` to poll on. */
export type EventList = Schemas['EventList'];
/** An event's `type`: `client.created`, `client.updated`, `client.deleted`, `client.restored`, `contact.created`, `contact.updated` or `contact.deleted`. */
export type EventType = Schemas['EventType'];
/** `client.created`: `data.object` is the new client. */
export type ClientCreatedEvent = Schemas['ClientCreatedEvent'];
/** `client.updated`: `data.object` is the client after, `data.previousAttributes` the changed fields before. */
export type ClientUpdatedEvent = Schemas['ClientUpdatedEvent'];
/** `client.deleted`: `data.object` is the client with `deletedAt` set. */
export type ClientDeletedEvent = Schemas['ClientDeletedEvent'];
/** `client.restored`: `data.object` is the client with `deletedAt` null again. */
export type ClientRestoredEvent = Schemas['ClientRestoredEvent'];
/** The fields a `client.updated` event changed, each with its value before (fields it did not change are absent). */
export type ClientPreviousAttributes = Schemas['ClientPreviousAttributes'];
/** `contact.created`: `data.object` is the new contact. */
export type ContactCreatedEvent = Schemas['ContactCreatedEvent'];
/** `contact.updated`: `data.object` is the contact after, `data.previousAttributes` the changed fields before. */
export type ContactUpdatedEvent = Schemas['ContactUpdatedEvent'];
/** `contact.deleted`: `data.object` is the contact as it was just before it was deleted. */
export type ContactDeletedEvent = Schemas['ContactDeletedEvent'];
/** The fields a `contact.updated` event changed, each with its value before. */
export type ContactPreviousAttributes = Schemas['ContactPreviousAttributes'];
/** The answer of `GET /events/{id}`: `{ data: Event }`. */
export type EventData = Json<'getEvent', 200>;
/**
 * `webhook.test`: a test delivery, sent when `POST /webhook-endpoints/{id}/test` asks for one, to
 * that endpoint only; `data.object` is the endpoint (`id`, `url`). Never in the change feed.
 */
export type WebhookTestEvent = Schemas['WebhookTestEvent'];
/**
 * The body of a webhook delivery, as `verifyWebhook` returns it once the signature is good: one of
 * the client and contact events, or a test delivery (narrow it by `type`). The spec's top-level
 * `webhooks` section declares each; the client and contact events are the feed's events, delivered.
 */
export type WebhookEvent =
  | ClientCreatedEvent
  | ClientUpdatedEvent
  | ClientDeletedEvent
  | ClientRestoredEvent
  | ContactCreatedEvent
  | ContactUpdatedEvent
  | ContactDeletedEvent
  | WebhookTestEvent;

/** A webhook endpoint as the API returns it (never its secret). */
export type WebhookEndpoint = Schemas['WebhookEndpoint'];
/** The body of `POST /webhook-endpoints`: `url` and `enabledEvents`, optionally `description`. */
export type WebhookEndpointCreate = Schemas['WebhookEndpointCreate'];
/** The body of `PATCH /webhook-endpoints/{id}`: only the fields to change; `disabled: false` re-enables it. */
export type WebhookEndpointUpdate = Schemas['WebhookEndpointUpdate'];
/** Where deliveries are POSTed: an absolute URL (https in live) on a public address. */
export type WebhookUrl = Schemas['WebhookUrl'];
/** An event type an endpoint takes, or `*` for every type, those added later included. */
export type WebhookEventSelector = Schemas['WebhookEventSelector'];
/** A signing secret, `whsec_…`: shown once, when an endpoint is created or its secret rotated. */
export type WebhookSecret = Schemas['WebhookSecret'];
/** One delivery attempt as `GET /webhook-endpoints/{id}/deliveries` lists it. */
export type WebhookDeliveryAttempt = Schemas['WebhookDeliveryAttempt'];
/** The event type of an attempt: a feed's `EventType`, or `webhook.test` for a test delivery. */
export type WebhookDeliveryEventType = Schemas['WebhookDeliveryEventType'];
/** The body of `POST /webhook-endpoints/{id}/recover`: `since` (at most 30 days ago) and optionally `until`. */
export type WebhookRecoveryRequest = Schemas['WebhookRecoveryRequest'];
/** What a recovery queued: `{ endpointId, since, until, queued, hasMore }`, in `data` of its 202. */
export type WebhookRecovery = Schemas['WebhookRecovery'];
/** The body of `POST /events/{id}/redeliver`: `endpointId` for one endpoint, or nothing for all that take the event. */
export type EventRedeliveryRequest = Schemas['EventRedeliveryRequest'];
/** What a redelivery queued: `{ eventId, queued, endpointIds }`, in `data` of its 202. */
export type EventRedelivery = Schemas['EventRedelivery'];
/** The answer of `POST /webhook-endpoints`: the endpoint and, this once, its `secret` (absent on a replay). */
export type WebhookEndpointCreated = Json<'createWebhookEndpoint', 201>;
/** The answer of `GET /webhook-endpoints`. */
export type WebhookEndpointList = Json<'listWebhookEndpoints', 200>;
/** The answer of read, update and delete of one endpoint: `{ data: WebhookEndpoint }`. */
export type WebhookEndpointData = Json<'getWebhookEndpoint', 200>;
/** The answer of `POST /webhook-endpoints/{id}/rotate-secret`: the endpoint and its new `secret`. */
export type WebhookSecretRotated = Json<'rotateWebhookEndpointSecret', 200>;
/** A page of `GET /webhook-endpoints/{id}/deliveries`. */
export type WebhookDeliveryList = Json<'listWebhookDeliveries', 200>;
