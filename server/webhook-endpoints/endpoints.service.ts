/**
 * The webhook endpoints' rules: the plan gate, the URL policy, the cap per organisation and
 * environment, what each change does to the endpoint's place in the feed, and the signing secret
 * (made here, stored only sealed, shown once).
 *
 * Checks that may wait on the network (resolving a URL's host) run before any transaction opens,
 * so a slow name server never holds a lock or a connection.
 */
import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database, WebhookEndpointRow } from '../db/schema.js';
import { assertFeature, PLANS } from '../plans/plans.js';
import type { Tenant } from '../shared/tenant.js';
import { ApiError, notFound, validationFailed } from '../shared/errors.js';
import { decodeKeyset, type KeysetPage, keysetPage } from '../shared/keyset-cursor.js';
import { LIST_DEFAULTS, parameterMessage } from '../shared/spec-values.js';
import {
  toDeliveryAttempt,
  toEndpointValues,
  toNewEndpointValues,
  toWebhookEndpoint,
  type WebhookDeliveryAttempt,
  type WebhookEndpoint,
  type WebhookEndpointCreate,
  type WebhookEndpointUpdate,
} from './endpoints.mapper.js';
import { listAttemptRows } from './attempts.queries.js';
import {
  countEndpointsLocked,
  deleteEndpointRow,
  type EndpointValues,
  findEndpointRow,
  insertEndpointRow,
  listEndpointRows,
  updateEndpointRow,
} from './endpoints.queries.js';
import { inTransaction, type KeyedRequest, runKeyedWrite, type WriteAnswer } from '../idempotency/idempotency.js';
import { newSigningSecret, type SecretBox } from '../webhook-delivery/secrets.js';
import type { WebhookSettings } from '../webhook-delivery/settings.js';
import { assertWebhookUrl } from './url-policy.js';
import { isUuid } from '../shared/ids.js';

/** Endpoints per organisation and environment, at most (the spec says so too). */
export const MAX_ENDPOINTS = 16;

/** How long the previous secret still signs after a rotation. */
export const PREVIOUS_SECRET_LIFETIME_MS = 24 * 60 * 60 * 1000;

/** An endpoint with its signing secret: the answer of a create or a rotation, the only ones that show it. */
export interface EndpointWithSecret {
  data: WebhookEndpoint;
  secret: string;
}

/**
 * 402 plan_required (feature `webhooks`) unless the organisation's plan has webhooks: every
 * operation that changes something asks first. Reading does not: an organisation whose plan no
 * longer includes webhooks still sees its endpoints, their attempts, and why nothing is sent.
 */
export function assertWebhooksPlan(tenant: Tenant): void {
  assertFeature(tenant.plan, 'webhooks');
}

/** Whether deliveries go out on the tenant's plan; the writes' answers come after the gate, so always. */
const planHasWebhooks = (tenant: Tenant) => PLANS[tenant.plan].features.has('webhooks');
const AFTER_THE_GATE = true;

/** The plan, then the URL: what a create needs before its transaction. */
async function checkNewEndpoint(tenant: Tenant, input: WebhookEndpointCreate, settings: WebhookSettings): Promise<void> {
  assertWebhooksPlan(tenant);
  await assertWebhookUrl(input.url, tenant.env, settings);
}

/** The plan, then the URL when one is sent: what a change needs before its transaction. */
async function checkEndpointChange(tenant: Tenant, input: WebhookEndpointUpdate, settings: WebhookSettings): Promise<void> {
  assertWebhooksPlan(tenant);
  if (input.url !== undefined) await assertWebhookUrl(input.url, tenant.env, settings);
}

/**
 * POST /webhook-endpoints: the plan and the URL (its host resolved) before the transaction, which
 * waits on nothing; then the endpoint registered in it.
 */
export function createEndpoint<A extends WriteAnswer>(
  db: Kysely<Database>,
  tenant: Tenant,
  input: WebhookEndpointCreate,
  now: Date,
  settings: WebhookSettings,
  key: KeyedRequest | undefined,
  answer: (created: EndpointWithSecret) => A,
): Promise<A> {
  return runKeyedWrite(db, key, async () => {
    await checkNewEndpoint(tenant, input, settings);
    return inTransaction(async (trx) => answer(await registerEndpoint(trx, tenant, input, now, settings.secrets)));
  });
}

/**
 * Registers the endpoint (after checkNewEndpoint), inside the caller's transaction. Only the
 * sealed secret is stored, bound to the endpoint's id; the secret itself is returned, once.
 */
async function registerEndpoint(
  trx: Kysely<Database>,
  tenant: Tenant,
  input: WebhookEndpointCreate,
  now: Date,
  secrets: SecretBox,
): Promise<EndpointWithSecret> {
  if ((await countEndpointsLocked(trx, tenant)) >= MAX_ENDPOINTS) {
    throw new ApiError(
      'webhook_endpoint_limit_reached',
      `The organisation has ${MAX_ENDPOINTS} webhook endpoints in this environment, the most it can have; delete one first.`,
    );
  }
  const id = randomUUID();
  const secret = newSigningSecret();
  const row = await insertEndpointRow(trx, {
    ...toNewEndpointValues(input),
    org_id: tenant.orgId,
    env: tenant.env,
    id,
    failing_since: null,
    secret: secrets.seal(secret, id),
    created_at: now,
    updated_at: now,
  });
  return { data: toWebhookEndpoint(row, now, AFTER_THE_GATE), secret };
}

export async function listEndpoints(db: Kysely<Database>, tenant: Tenant, now: Date): Promise<WebhookEndpoint[]> {
  return (await listEndpointRows(db, tenant)).map((row) => toWebhookEndpoint(row, now, planHasWebhooks(tenant)));
}

/**
 * The one answer for every id that names no endpoint of this organisation and environment, a
 * malformed one included: nothing tells which ids exist elsewhere.
 */
export async function findEndpointOrNotFound(
  db: Kysely<Database>,
  tenant: Tenant,
  id: string,
  forUpdate = false,
): Promise<WebhookEndpointRow> {
  // Not a UUID: no endpoint has it, and the database would refuse the comparison.
  const row = isUuid(id) ? await findEndpointRow(db, tenant, id, { forUpdate }) : undefined;
  if (!row) throw notFound('There is no webhook endpoint with this id.');
  return row;
}

export async function getEndpoint(db: Kysely<Database>, tenant: Tenant, id: string, now: Date): Promise<WebhookEndpoint> {
  return toWebhookEndpoint(await findEndpointOrNotFound(db, tenant, id), now, planHasWebhooks(tenant));
}

const sameList = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((item, i) => item === b[i]);

/** What `input` changes in `row`: only the fields sent, and of those only the ones that differ. */
function changesTo(row: WebhookEndpointRow, input: WebhookEndpointUpdate): { values: EndpointValues; resumeFeed: boolean } {
  const sent = toEndpointValues(input);
  const values: EndpointValues = {};
  if (sent.url !== undefined && sent.url !== row.url) values.url = sent.url;
  if (sent.description !== undefined && sent.description !== row.description) values.description = sent.description;
  if (sent.enabled_events !== undefined && !sameList(sent.enabled_events, row.enabled_events)) values.enabled_events = sent.enabled_events;
  // Disabling one already disabled (for failing, say) keeps it as it is, reason included.
  if (input.disabled === true && !row.disabled) {
    values.disabled = true;
    values.disabled_reason = 'manual';
  }
  // Enabling forgets past failures, an open circuit's included (its deliveries go out at once);
  // and an endpoint that was disabled starts again from now: events of the time it was off are not
  // sent by themselves (POST /webhook-endpoints/{id}/recover asks for them). One that was enabled
  // keeps its place: its events are on their way.
  const failed = row.failing_since !== null || row.consecutive_failures > 0 || row.circuit_open_until !== null;
  if (input.disabled === false && (row.disabled || failed || row.disabled_reason !== null)) {
    values.disabled = false;
    values.disabled_reason = null;
    values.failing_since = null;
    values.consecutive_failures = 0;
    values.circuit_opened_at = null;
    values.circuit_open_until = null;
  }
  return { values, resumeFeed: input.disabled === false && row.disabled };
}

/** PATCH /webhook-endpoints/{id}: the plan and the URL when one is sent, then the change, in a transaction. */
export function updateEndpoint<A extends WriteAnswer>(
  db: Kysely<Database>,
  tenant: Tenant,
  id: string,
  input: WebhookEndpointUpdate,
  now: Date,
  settings: WebhookSettings,
  key: KeyedRequest | undefined,
  answer: (updated: WebhookEndpoint) => A,
): Promise<A> {
  return runKeyedWrite(db, key, async () => {
    await checkEndpointChange(tenant, input, settings);
    return inTransaction(async (trx) => answer(await applyUpdate(trx, tenant, id, input, now)));
  });
}

/** The change (after checkEndpointChange): the fields sent; a request that changes nothing writes nothing. */
async function applyUpdate(
  trx: Kysely<Database>,
  tenant: Tenant,
  id: string,
  input: WebhookEndpointUpdate,
  now: Date,
): Promise<WebhookEndpoint> {
  const row = await findEndpointOrNotFound(trx, tenant, id, true);
  const { values, resumeFeed } = changesTo(row, input);
  if (Object.keys(values).length === 0) return toWebhookEndpoint(row, now, AFTER_THE_GATE);
  return toWebhookEndpoint(await updateEndpointRow(trx, tenant, id, { ...values, updated_at: now }, { resumeFeed }), now, AFTER_THE_GATE);
}

/** Hard delete: the endpoint as it was. Its deliveries and their attempts go with it. */
export function deleteEndpoint<A extends WriteAnswer>(
  db: Kysely<Database>,
  tenant: Tenant,
  id: string,
  now: Date,
  key: KeyedRequest | undefined,
  answer: (deleted: WebhookEndpoint) => A,
): Promise<A> {
  return runKeyedWrite(db, key, () =>
    inTransaction(async (trx) => {
      assertWebhooksPlan(tenant);
      const row = isUuid(id) ? await deleteEndpointRow(trx, tenant, id) : undefined;
      if (!row) throw notFound('There is no webhook endpoint with this id.');
      return answer(toWebhookEndpoint(row, now, AFTER_THE_GATE));
    }),
  );
}

/**
 * A new secret; the current one becomes the previous, which still signs for 24 hours. A previous
 * one still signing is dropped: at most two secrets sign at any time.
 */
export function rotateSecret<A extends WriteAnswer>(
  db: Kysely<Database>,
  tenant: Tenant,
  id: string,
  now: Date,
  secrets: SecretBox,
  key: KeyedRequest | undefined,
  answer: (rotated: EndpointWithSecret) => A,
): Promise<A> {
  return runKeyedWrite(db, key, () => inTransaction(async (trx) => answer(await applyRotation(trx, tenant, id, now, secrets))));
}

async function applyRotation(
  trx: Kysely<Database>,
  tenant: Tenant,
  id: string,
  now: Date,
  secrets: SecretBox,
): Promise<EndpointWithSecret> {
  assertWebhooksPlan(tenant);
  const row = await findEndpointOrNotFound(trx, tenant, id, true);
  const secret = newSigningSecret();
  const updated = await updateEndpointRow(trx, tenant, id, {
    secret: secrets.seal(secret, id),
    previous_secret: row.secret,
    previous_secret_expires_at: new Date(now.getTime() + PREVIOUS_SECRET_LIFETIME_MS),
    updated_at: now,
  });
  return { data: toWebhookEndpoint(updated, now, AFTER_THE_GATE), secret };
}

/** The spec's own words for a cursor this API did not give out. */
const CURSOR_ERROR = parameterMessage('listWebhookDeliveries', 'cursor');

/** GET /webhook-endpoints/{id}/deliveries: 404 for an endpoint the tenant does not have, else a page of its attempts. */
export async function listDeliveries(
  db: Kysely<Database>,
  tenant: Tenant,
  id: string,
  query: { limit?: number | undefined; cursor?: string | undefined },
): Promise<KeysetPage<WebhookDeliveryAttempt>> {
  // A cursor that this API did not give out is a 400 naming `cursor`, never a database error.
  const after = query.cursor === undefined ? undefined : decodeKeyset(query.cursor, () => validationFailed({ cursor: CURSOR_ERROR }));
  await findEndpointOrNotFound(db, tenant, id);
  // The validator fills in the spec's default; the fallback only satisfies the optional type.
  const limit = query.limit ?? LIST_DEFAULTS.limit;
  return keysetPage(await listAttemptRows(db, tenant, id, { limit: limit + 1, after }), limit, toDeliveryAttempt);
}
