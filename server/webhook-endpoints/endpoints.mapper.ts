/**
 * The one place where webhook_endpoints and webhook_attempts rows (snake_case) become the API's
 * WebhookEndpoint and WebhookDeliveryAttempt (camelCase), and where the wire's fields become
 * columns. Secrets never pass through here: the endpoint on the wire has none.
 */
import type { components } from '../../generated/api.js';
import type { WebhookAttemptRow, WebhookEndpointRow } from '../db/schema.js';
import type { EndpointValues } from './endpoints.queries.js';

export type WebhookEndpoint = components['schemas']['WebhookEndpoint'];
export type WebhookEndpointCreate = components['schemas']['WebhookEndpointCreate'];
export type WebhookEndpointUpdate = components['schemas']['WebhookEndpointUpdate'];
export type WebhookDeliveryAttempt = components['schemas']['WebhookDeliveryAttempt'];
type EventSelector = components['schemas']['WebhookEventSelector'];
type EventType = components['schemas']['EventType'];

const iso = (date: Date | null) => (date ? date.toISOString() : null);

type DeliveryPause = WebhookEndpoint['deliveryPause'];

/**
 * Why deliveries are held back: the plan first (it holds everything, a disabled endpoint's too),
 * then an open circuit of an enabled endpoint, with when its probe is due.
 */
function deliveryPause(row: WebhookEndpointRow, planHasWebhooks: boolean): DeliveryPause {
  if (!planHasWebhooks) return { reason: 'plan', probeAt: null };
  if (!row.disabled && row.circuit_open_until) return { reason: 'circuit_open', probeAt: row.circuit_open_until.toISOString() };
  return null;
}

/**
 * `now` decides whether the previous secret still signs: an expired one is as good as none.
 * `planHasWebhooks`: whether the organisation's plan includes webhooks now (else deliveries wait).
 */
export function toWebhookEndpoint(row: WebhookEndpointRow, now: Date, planHasWebhooks: boolean): WebhookEndpoint {
  const previousExpires = row.previous_secret !== null && row.previous_secret_expires_at && row.previous_secret_expires_at > now;
  return {
    id: row.id,
    env: row.env,
    url: row.url,
    description: row.description,
    enabledEvents: row.enabled_events as EventSelector[],
    disabled: row.disabled,
    disabledReason: row.disabled ? row.disabled_reason : null,
    failingSince: iso(row.failing_since),
    deliveryPause: deliveryPause(row, planHasWebhooks),
    previousSecretExpiresAt: previousExpires ? iso(row.previous_secret_expires_at) : null,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

export function toDeliveryAttempt(row: WebhookAttemptRow): WebhookDeliveryAttempt {
  return {
    id: row.id,
    eventId: row.event_id,
    eventType: row.event_type as EventType,
    attempt: row.attempt,
    attemptedAt: row.attempted_at.toISOString(),
    durationMs: row.duration_ms,
    statusCode: row.status_code,
    error: row.error,
    succeeded: row.succeeded,
    nextRetryAt: iso(row.next_retry_at),
  };
}

/** Trimmed; empty or blank is null, as for every optional text of the API. */
function description(text: string | null | undefined): string | null {
  const trimmed = text?.trim();
  return trimmed ? trimmed : null;
}

/** The columns a create writes from the request (the service adds ids, secret, times). */
export function toNewEndpointValues(input: WebhookEndpointCreate) {
  const disabled = input.disabled ?? false;
  return {
    url: input.url,
    description: description(input.description),
    enabled_events: input.enabledEvents as string[],
    disabled,
    disabled_reason: disabled ? ('manual' as const) : null,
  };
}

/** The columns the fields sent would set; what they change is the service's to judge. */
export function toEndpointValues(input: WebhookEndpointUpdate): EndpointValues {
  const values: EndpointValues = {};
  if (input.url !== undefined) values.url = input.url;
  if (input.description !== undefined) values.description = description(input.description);
  if (input.enabledEvents !== undefined) values.enabled_events = input.enabledEvents as string[];
  return values;
}
