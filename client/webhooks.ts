/**
 * Verifying a webhook delivery: the Standard Webhooks signature (`webhook-id`, `webhook-timestamp`,
 * `webhook-signature`) checked by the `standardwebhooks` library, then the body typed as the
 * spec's events. Nothing here signs or compares by hand.
 */
import { Webhook, WebhookVerificationError as LibraryVerificationError } from 'standardwebhooks';
import type { Env, WebhookEvent } from './schemas.js';

/**
 * Thrown by {@link verifyWebhook} when a delivery is not to be trusted: a missing header, a
 * signature that none of the secrets made (a changed body included), or a timestamp more than five
 * minutes from now (a replay). Answer such a request 400 and do nothing with it.
 *
 * It is the `standardwebhooks` library's own class, re-exported (so `instanceof` works with either
 * import); it is typed here because the library's declarations need Node's `Buffer`, which this
 * package's users may not have.
 */
export interface WebhookVerificationError extends Error {
  name: 'WebhookVerificationError';
}
export const WebhookVerificationError = LibraryVerificationError as unknown as {
  new (message: string): WebhookVerificationError;
  readonly prototype: WebhookVerificationError;
};

declare const unknownEventType: unique symbol;

/**
 * The `type` of an event this version of the package does not know: a string at run time, opaque
 * to TypeScript, so that `event.type === 'client.updated'` narrows to the client events alone (as
 * `string`, it would match every check and keep an UnknownEvent in every branch). Read it with
 * `String(event.type)`.
 */
export interface UnknownEventType {
  readonly [unknownEventType]: 'an event type this version of the package does not know';
  toString(): string;
}

/**
 * An event whose type the API added after this version of the package: returned rather than
 * thrown, so that a receiver keeps working (acknowledge it, log it, or ignore it) until it upgrades.
 * Only the fields every event has are typed.
 */
export interface UnknownEvent {
  id: string;
  type: UnknownEventType;
  env: Env;
  createdAt: string;
  data: { object: unknown; [field: string]: unknown };
}

/** The headers of the request as received: a fetch `Headers`, or Node's `req.headers` (any case, arrays too). */
export type WebhookHeaders = Headers | Readonly<Record<string, string | readonly string[] | undefined>>;

const SIGNATURE_HEADER = 'webhook-signature';

/** Lower-case names, single string values; repeats joined with a space (the way several signatures are sent). */
function headerRecord(headers: WebhookHeaders): Record<string, string> {
  const record: Record<string, string> = Object.create(null);
  const add = (name: string, value: string) => {
    const key = name.toLowerCase();
    record[key] = record[key] === undefined ? value : `${record[key]} ${value}`;
  };
  if (typeof (headers as Headers).forEach === 'function' && typeof (headers as Headers).get === 'function') {
    (headers as Headers).forEach((value, name) => {
      add(name, value);
    });
  } else {
    for (const [name, value] of Object.entries(headers as Record<string, string | readonly string[] | undefined>)) {
      if (typeof value === 'string') add(name, value);
      else if (Array.isArray(value)) for (const item of value) add(name, item);
    }
  }
  // A proxy may fold repeated signature headers with ", ": `v1,<a>, v1,<b>` is `v1,<a> v1,<b>`
  // (base64 has no comma, so this never splits a signature).
  const signature = record[SIGNATURE_HEADER];
  if (signature !== undefined) record[SIGNATURE_HEADER] = signature.replace(/,\s*(?=v\d+,)/g, ' ');
  return record;
}

function bodyText(rawBody: string | Uint8Array): string {
  if (typeof rawBody === 'string') return rawBody;
  // isView rather than instanceof: bytes from another realm (a vm, a worker's copy) are bytes too.
  if (ArrayBuffer.isView(rawBody)) return new TextDecoder('utf-8', { ignoreBOM: true }).decode(rawBody);
  throw new TypeError('verifyWebhook: rawBody must be the body as received (a string or bytes), not parsed JSON');
}

/** The fields every event has, checked before the body is typed as one (a signed body is the API's, so no more is checked). */
function isEvent(value: unknown): value is WebhookEvent | UnknownEvent {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const { id, type, data } = value as Record<string, unknown>;
  return typeof id === 'string' && typeof type === 'string' && typeof data === 'object' && data !== null;
}

/**
 * Checks that a webhook delivery comes from the Clients API and is fresh, and returns its event.
 *
 * - `rawBody`: the body exactly as received, as a string or bytes (with Express,
 *   `express.raw({ type: 'application/json' })` and `req.body`). A body parsed and serialised
 *   again is not the same bytes and fails.
 * - `headers`: the request's headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
 * - `secrets`: the endpoint's signing secret (`whsec_…`), or several: while a rotation is under
 *   way, pass the new and the old; the delivery is good if any of them signed it.
 *
 * Returns the event, narrowed by its `type`. An event of a type this version does not know is
 * returned as an {@link UnknownEvent} (signature checked all the same), never thrown.
 *
 * @throws {WebhookVerificationError} headers missing, no secret's signature matches, or the
 *   timestamp is more than 5 minutes off (the library's tolerance); or the signed body is not an
 *   event.
 * @throws {TypeError} no secret given, or a body that is not a string or bytes; a malformed secret
 *   throws the library's `Error`. These are mistakes in the receiver, not in the delivery.
 *
 * @example
 * ```ts
 * const event = verifyWebhook(req.body, req.headers, process.env.CLIENTS_API_WEBHOOK_SECRET!);
 * if (event.type === 'client.updated') console.log(event.data.object.id, event.data.previousAttributes);
 * ```
 */
export function verifyWebhook(
  rawBody: string | Uint8Array,
  headers: WebhookHeaders,
  secrets: string | readonly string[],
): WebhookEvent | UnknownEvent {
  const keys = typeof secrets === 'string' ? [secrets] : [...secrets];
  if (keys.length === 0) throw new TypeError('verifyWebhook: give at least one signing secret');
  const verifiers = keys.map((secret) => new Webhook(secret));
  const body = bodyText(rawBody);
  const received = headerRecord(headers);

  // Valid if any secret signed it; otherwise the last refusal (they differ only when it is the signature).
  let refusal: Error | undefined;
  for (const verifier of verifiers) {
    refusal = refusalOf(verifier, body, received);
    if (!refusal) return eventOf(body);
  }
  throw refusal;
}

/** The library's reason to refuse the delivery, or undefined when this secret verifies it. */
function refusalOf(verifier: Webhook, body: string, headers: Record<string, string>): Error | undefined {
  try {
    verifier.verify(body, headers, { jsonParse: false });
    return undefined;
  } catch (error) {
    if (error instanceof LibraryVerificationError) return error;
    throw error;
  }
}

function eventOf(body: string): WebhookEvent | UnknownEvent {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new WebhookVerificationError('The signed payload is not JSON');
  }
  if (!isEvent(parsed)) throw new WebhookVerificationError('The signed payload is not an event');
  // Known types are typed by the spec; any other is handed over as an UnknownEvent (see its doc).
  return parsed;
}
