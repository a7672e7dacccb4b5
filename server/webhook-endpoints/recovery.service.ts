/**
 * Sending again on request: a recovery (every event an endpoint missed in a window), a redelivery
 * (one event, to one endpoint or all that take it), and a test delivery sent at once by the API
 * process. Recoveries and redeliveries only queue deliveries; the worker sends them on the usual
 * schedule. A test is one attempt, sent here with the worker's sender, signing, address policy and
 * time limit, and recorded as the worker records its attempts; it changes nothing of the endpoint.
 */
import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { components } from '../../generated/api.js';
import type { Database, WebhookAttemptRow, WebhookEndpointRow } from '../db/schema.js';
import { toEvent } from '../events/events.mapper.js';
import { findEvent, insertEventIfAbsent, TEST_EVENT_TYPE } from '../events/events.queries.js';
import { EVENT_RETENTION_MS } from '../events/events.service.js';
import {
  aroundCall,
  inTransaction,
  type KeyedRequest,
  keyInProgress,
  runKeyedWrite,
  type WriteAnswer,
} from '../idempotency/idempotency.js';
import type { Tenant } from '../shared/tenant.js';
import { isCalendarDate } from '../shared/date-time.js';
import { ApiError, notFound, validationFailed } from '../shared/errors.js';
import { isUuid } from '../shared/ids.js';
import { activeTraceparent } from '../shared/tracing.js';
import {
  findLatestAttempt,
  insertTestDelivery,
  queueRecovery,
  queueRedelivery,
  recordAttempt,
} from '../webhook-delivery/deliveries.queries.js';
import { toDeliveryAttempt, type WebhookDeliveryAttempt } from './endpoints.mapper.js';
import { listSubscribedEndpointIds } from './endpoints.queries.js';
import { assertWebhooksPlan, findEndpointOrNotFound } from './endpoints.service.js';
import { signingSecrets } from '../webhook-delivery/secrets.js';
import { type AttemptOutcome, sendDelivery } from '../webhook-delivery/sender.js';
import type { WebhookSettings } from '../webhook-delivery/settings.js';
import { leaseMs } from '../webhook-delivery/worker.js';

type WebhookRecoveryRequest = components['schemas']['WebhookRecoveryRequest'];
type WebhookRecovery = components['schemas']['WebhookRecovery'];
type EventRedeliveryRequest = components['schemas']['EventRedeliveryRequest'];
type EventRedelivery = components['schemas']['EventRedelivery'];

const disabled = () =>
  new ApiError('webhook_endpoint_disabled', 'The webhook endpoint is disabled; re-enable it (PATCH with {"disabled":false}) first.');

/** Whether an endpoint's `enabledEvents` take events of `type`. */
const takes = (row: WebhookEndpointRow, type: string) => row.enabled_events.includes(type) || row.enabled_events.includes('*');

/** A recovery's window, checked (400 naming the field) before any transaction. */
interface RecoveryWindow {
  since: Date;
  until: Date;
}

/**
 * The plan, then the window: `since` at most the 30 days events are kept, `until` (now when absent)
 * not before it. Both days must exist (the pattern cannot tell 2026-02-30 from a real day).
 */
function checkRecovery(tenant: Tenant, input: WebhookRecoveryRequest, now: Date): RecoveryWindow {
  assertWebhooksPlan(tenant);
  if (!isCalendarDate(input.since)) throw validationFailed({ since: 'must be a date-time of a day that exists' });
  if (input.until !== undefined && !isCalendarDate(input.until))
    throw validationFailed({ until: 'must be a date-time of a day that exists' });
  const since = new Date(input.since);
  const oldest = new Date(now.getTime() - EVENT_RETENTION_MS);
  if (since < oldest) {
    throw validationFailed({ since: `must be within the last 30 days, the time events are kept (not before ${oldest.toISOString()})` });
  }
  const until = input.until === undefined ? now : new Date(input.until);
  if (until < since) throw validationFailed({ until: 'must not be before since' });
  return { since, until };
}

/** POST /webhook-endpoints/{id}/recover: the window checked before the transaction, then its missed events queued. */
export function recoverEndpoint<A extends WriteAnswer>(
  db: Kysely<Database>,
  tenant: Tenant,
  id: string,
  input: WebhookRecoveryRequest,
  now: Date,
  key: KeyedRequest | undefined,
  answer: (recovery: WebhookRecovery) => A,
): Promise<A> {
  return runKeyedWrite(db, key, () => {
    const window = checkRecovery(tenant, input, now);
    return inTransaction(async (trx) => answer(await queueMissed(trx, tenant, id, window, now)));
  });
}

async function queueMissed(trx: Kysely<Database>, tenant: Tenant, id: string, window: RecoveryWindow, now: Date): Promise<WebhookRecovery> {
  // Locked: a PATCH that disables it meanwhile waits for this recovery, or this one sees it disabled.
  const row = await findEndpointOrNotFound(trx, tenant, id, true);
  if (row.disabled) throw disabled();
  const { queued, hasMore } = await queueRecovery(
    trx,
    { orgId: row.org_id, env: row.env, endpointId: row.id, enabledEvents: row.enabled_events, createdAt: row.created_at },
    window,
    now,
  );
  return { endpointId: row.id, since: window.since.toISOString(), until: window.until.toISOString(), queued, hasMore };
}

/**
 * POST /events/{id}/redeliver: the event queued again for the endpoint named (which must take its
 * type and be enabled), or for every enabled endpoint that takes it and was registered by then.
 */
export function redeliverEvent<A extends WriteAnswer>(
  db: Kysely<Database>,
  tenant: Tenant,
  eventId: string,
  input: EventRedeliveryRequest,
  now: Date,
  key: KeyedRequest | undefined,
  answer: (redelivery: EventRedelivery) => A,
): Promise<A> {
  return runKeyedWrite(db, key, () => inTransaction(async (trx) => answer(await queueAgain(trx, tenant, eventId, input, now))));
}

async function queueAgain(
  trx: Kysely<Database>,
  tenant: Tenant,
  eventId: string,
  input: EventRedeliveryRequest,
  now: Date,
): Promise<EventRedelivery> {
  assertWebhooksPlan(tenant);
  const event = isUuid(eventId) ? await findEvent(trx, tenant, eventId) : undefined;
  if (!event) throw notFound('There is no event with this id.');
  let targets: string[];
  if (input.endpointId !== undefined) {
    const row = await findEndpointOrNotFound(trx, tenant, input.endpointId, true);
    if (row.disabled) throw disabled();
    if (!takes(row, event.type)) {
      throw new ApiError(
        'webhook_endpoint_not_subscribed',
        `The webhook endpoint does not take ${event.type} events (its enabledEvents); add the type to its enabledEvents first.`,
      );
    }
    targets = [row.id];
  } else {
    targets = await listSubscribedEndpointIds(trx, tenant, event.type, new Date(event.created_at));
  }
  const endpointIds = await queueRedelivery(trx, { orgId: tenant.orgId, eventId: event.id, endpointIds: targets }, now);
  return { eventId: event.id, queued: endpointIds.length, endpointIds };
}

/**
 * POST /webhook-endpoints/{id}/test: the receiver is called between two transactions, never
 * inside one (prepareTest, sendTest, recordTest).
 */
export function testEndpoint<A extends WriteAnswer>(
  db: Kysely<Database>,
  tenant: Tenant,
  id: string,
  now: Date,
  settings: WebhookSettings,
  key: KeyedRequest | undefined,
  answer: (attempt: WebhookDeliveryAttempt) => A,
): Promise<A> {
  return runKeyedWrite(db, key, () =>
    aroundCall({
      prepare: (trx, firstRequestId) => prepareTest(trx, tenant, id, now, settings, firstRequestId),
      call: (prepared) => sendTest(prepared, settings),
      finish: async (trx, sent) => answer(await recordTest(trx, sent)),
    }),
  );
}

/** A test delivery, ready to send: what it is, where it goes, and the lease its record needs. */
type PreparedTest =
  | {
      kind: 'send';
      orgId: string;
      deliveryId: string;
      leaseId: string;
      endpointId: string;
      eventId: string;
      url: string;
      body: string;
      secrets: string[];
      at: Date;
    }
  /** The key's first request began this test and did not record it (its process died); a worker has sent it since. */
  | { kind: 'sent'; attempt: WebhookAttemptRow };

/**
 * The first step of POST /webhook-endpoints/{id}/test (in the key's first transaction): the plan,
 * the endpoint (enabled), then its `webhook.test` event and a delivery leased to this request.
 * `eventId` comes from the request's Idempotency-Key when it has one: a second request with the
 * key finds the event written, and is 409 until the first has answered (then it replays).
 */
async function prepareTest(
  trx: Kysely<Database>,
  tenant: Tenant,
  id: string,
  now: Date,
  settings: WebhookSettings,
  eventId: string = randomUUID(),
): Promise<PreparedTest> {
  assertWebhooksPlan(tenant);
  const row = await findEndpointOrNotFound(trx, tenant, id);
  if (row.disabled) throw disabled();
  const data = JSON.stringify({ object: { id: row.id, url: row.url } });
  const event = {
    eventOrgId: tenant.orgId,
    eventEnv: tenant.env,
    eventId,
    eventType: TEST_EVENT_TYPE,
    eventCreatedAt: now,
    eventData: data,
    eventTraceContext: activeTraceparent(),
    eventObjectId: row.id,
  };
  if (!(await insertEventIfAbsent(trx, event))) {
    const attempt = await findLatestAttempt(trx, { orgId: tenant.orgId, endpointId: row.id, eventId });
    if (attempt) return { kind: 'sent', attempt };
    throw keyInProgress();
  }
  const deliveryId = randomUUID();
  const leaseId = randomUUID();
  const leasedUntil = new Date(now.getTime() + leaseMs(settings.timeoutMs));
  await insertTestDelivery(trx, { orgId: tenant.orgId, id: deliveryId, endpointId: row.id, eventId, leaseId, leasedUntil, now });
  const body = JSON.stringify(toEvent({ id: eventId, type: TEST_EVENT_TYPE, env: tenant.env, created_at: now, data: JSON.parse(data) }));
  const sealed = {
    endpointId: row.id,
    secret: row.secret,
    previousSecret: row.previous_secret,
    previousSecretExpiresAt: row.previous_secret_expires_at,
  };
  return {
    kind: 'send',
    orgId: tenant.orgId,
    deliveryId,
    leaseId,
    endpointId: row.id,
    eventId,
    url: row.url,
    body,
    secrets: signingSecrets(settings.secrets, sealed, now),
    at: now,
  };
}

type SentTest =
  | { kind: 'sent'; attempt: WebhookAttemptRow }
  | { kind: 'attempted'; test: Extract<PreparedTest, { kind: 'send' }>; outcome: AttemptOutcome };

/** The second step, outside any transaction: one attempt, as the worker makes it (its sender, its time limit). */
async function sendTest(prepared: PreparedTest, settings: WebhookSettings): Promise<SentTest> {
  if (prepared.kind === 'sent') return prepared;
  const outcome = await sendDelivery(
    { eventId: prepared.eventId, body: prepared.body, url: prepared.url, secrets: prepared.secrets },
    prepared.at,
    { settings, timeoutMs: settings.timeoutMs },
  );
  return { kind: 'attempted', test: prepared, outcome };
}

/**
 * The last step (in the transaction that stores the answer with the key): the attempt recorded as
 * the delivery's one and only (succeeded, or failed with no retry), and returned. 404 when the
 * endpoint was deleted while the test was being sent (its deliveries went with it).
 */
async function recordTest(trx: Kysely<Database>, sent: SentTest): Promise<WebhookDeliveryAttempt> {
  if (sent.kind === 'sent') return toDeliveryAttempt(sent.attempt);
  const { test, outcome } = sent;
  const attemptId = randomUUID();
  const recorded = await recordAttempt(trx, {
    orgId: test.orgId,
    deliveryId: test.deliveryId,
    leaseId: test.leaseId,
    endpointId: test.endpointId,
    eventId: test.eventId,
    eventType: TEST_EVENT_TYPE,
    attempt: 1,
    attemptedAt: test.at,
    durationMs: outcome.durationMs,
    statusCode: outcome.statusCode,
    error: outcome.error,
    succeeded: outcome.succeeded,
    nextRetryAt: null,
    attemptId,
  });
  if (!recorded) throw notFound('There is no webhook endpoint with this id.');
  return {
    id: attemptId,
    eventId: test.eventId,
    eventType: TEST_EVENT_TYPE,
    attempt: 1,
    attemptedAt: test.at.toISOString(),
    durationMs: outcome.durationMs,
    statusCode: outcome.statusCode,
    error: outcome.error,
    succeeded: outcome.succeeded,
    nextRetryAt: null,
  };
}
