/**
 * What the generic judges cannot read from the spec, in one place. The fuzzer, the Prism run and
 * the independent client cover every operation of the spec by themselves; an operation only
 * needs an entry here when the defaults below do not fit it.
 *
 * Defaults:
 * - A path parameter (`/clients/{id}`) takes the ids of resources made by the collection's create
 *   operation (`POST /clients`) from the spec's own example body, besides values generated from the
 *   parameter's schema (which name no resource).
 * - The tenant is on the plan with no limits, with every scope, so a valid request is never
 *   refused for its plan or its token.
 */
import { randomUUID } from 'node:crypto';
import { PLANS } from '../../server/plans/plans.js';
import { encodeKeyset } from '../../server/shared/keyset-cursor.js';
import type { ModelRequest, OperationModel } from './request-check.js';
import { operationModels } from './request-check.js';

/** Statuses by which the server says the request itself is malformed (the spec would refuse it). */
export const VALIDATION_REFUSALS: ReadonlySet<number> = new Set([400, 413, 415]);

/** The fuzzing tenant: the plan with no limits, and (by default) every scope. */
export const FUZZ_TENANT = { plan: 'studio' } as const;

/**
 * The fuzzing server's rate limits: budgets no run reaches (FUZZ_RUNS=5000 included). The fuzzer
 * judges how requests are answered, not how many; test/contract/rate-limits.test.ts and the status
 * matrix judge 429.
 */
export const FUZZ_RATE_LIMITS = { perTenant: 1_000_000_000, perAddress: 1_000_000_000, windowSeconds: 3600 } as const;

export interface FixtureContext {
  /** Sends a request (checked against the spec like every other). */
  send(request: ModelRequest): Promise<Response>;
}

export interface ParameterFixture {
  /** Values that are valid for the server, not only for the parameter's schema. */
  values(context: FixtureContext): Promise<string[]>;
  /**
   * Only these values: for a parameter whose valid values its schema cannot describe (an opaque
   * cursor is any string to the spec, but only the server's own cursors are valid). The fuzzer
   * then neither invents values for it nor breaks it.
   */
  onlyThese?: boolean;
}

/**
 * Values for parameters, by `operationId.parameter` (or by `parameter` for every operation). Add
 * an entry when the default (path parameters name resources made from the spec's example) does not
 * fit, or when a parameter's schema says less than the server checks.
 */
export const parameterFixtures: Record<string, ParameterFixture> = {
  // Any string to the spec (it must stay opaque), but only the server's own cursors name a place in
  // the list: the cursors of a real walk, one row per page.
  'listClients.cursor': { values: (context) => cursorsOfAWalk(context, 'listClients'), onlyThese: true },
  'listTokens.cursor': { values: (context) => cursorsOfAWalk(context, 'listTokens'), onlyThese: true },
  // The feed's places: only the server's own, from a walk of a feed with events in it.
  'listEvents.after': { values: async (context) => (await walkTheFeed(context)).cursors, onlyThese: true },
  // Events have no create of their own: a client's changes make them.
  'getEvent.id': { values: async (context) => (await walkTheFeed(context)).ids },
  'redeliverEvent.id': { values: async (context) => (await walkTheFeed(context)).ids },
  // A contact is named by its client's id and its own: both of one contact, made under one client
  // (the i-th `id` with the i-th `contactId`).
  ...Object.fromEntries(
    ['getContact', 'updateContact', 'deleteContact'].flatMap((operationId) => [
      [`${operationId}.id`, { values: async (context: FixtureContext) => (await contactsOf(context)).clientIds }],
      [`${operationId}.contactId`, { values: async (context: FixtureContext) => (await contactsOf(context)).contactIds }],
    ]),
  ),
  // A page of a client's contacts starts only where the server's own cursor says.
  'listContacts.cursor': { values: async (context) => (await contactsOf(context)).cursors, onlyThese: true },
  // No delivery is ever attempted where the judges run (no worker): cursors made by the server's own
  // encoder, naming places in the (empty) list.
  'listWebhookDeliveries.cursor': {
    values: async () => [
      encodeKeyset({ at: '2026-12-01T09:30:00.123456Z', id: randomUUID() }),
      encodeKeyset({ at: '2000-01-01T00:00:00.000000Z', id: randomUUID() }),
    ],
    onlyThese: true,
  },
};

/** Contacts made once per fixture context: three under one client, and the cursors of a walk of them. */
const contactsMade = new WeakMap<FixtureContext, Promise<{ clientIds: string[]; contactIds: string[]; cursors: string[] }>>();
function contactsOf(context: FixtureContext) {
  if (!contactsMade.has(context)) contactsMade.set(context, makeContacts(context));
  return contactsMade.get(context)!;
}

async function makeContacts(context: FixtureContext) {
  const [clientId] = await createFromExample(operation('createClient'), context, 1);
  const create = operation('createContact');
  const contactIds: string[] = [];
  for (let i = 0; i < 3; i++) {
    const body = await succeed(context, exampleRequest(create, { id: clientId! }, { name: `Contact ${i}` }));
    contactIds.push((body as { data: { id: string } }).data.id);
  }
  const cursors: string[] = [];
  let cursor: string | undefined;
  do {
    const response = await context.send({
      operationId: 'listContacts',
      method: 'GET',
      path: `/clients/${clientId}/contacts`,
      pathParams: { id: clientId! },
      query: cursor ? { limit: '1', cursor } : { limit: '1' },
      headers: {},
    });
    if (!response.ok) throw new Error(`fixture: listContacts answered ${response.status}`);
    cursor = ((await response.json()) as { nextCursor: string | null }).nextCursor ?? undefined;
    if (cursor) cursors.push(cursor);
  } while (cursor);
  return { clientIds: contactIds.map(() => clientId!), contactIds, cursors };
}

/** The feed one event at a time, after changes that write events: its cursors and its events' ids. */
async function walkTheFeed(context: FixtureContext): Promise<{ cursors: string[]; ids: string[] }> {
  await createFromExample(operation('createClient'), context, 3);
  const cursors: string[] = [];
  const ids: string[] = [];
  let after: string | undefined;
  const deadline = Date.now() + 15_000;
  for (;;) {
    const response = await context.send({
      operationId: 'listEvents',
      method: 'GET',
      path: '/events',
      pathParams: {},
      query: after ? { limit: '1', after } : { limit: '1' },
      headers: {},
    });
    if (!response.ok) throw new Error(`fixture: listEvents answered ${response.status}`);
    const page = (await response.json()) as { data: { id: string }[]; nextCursor: string; hasMore: boolean };
    ids.push(...page.data.map((event) => event.id));
    if (page.data.length > 0) cursors.push(page.nextCursor);
    after = page.nextCursor;
    if (page.hasMore) continue;
    // Another test's transaction on the same PostgreSQL server may hold the feed back for a moment.
    if (ids.length >= 3 || Date.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  if (ids.length < 3) throw new Error('fixture: the feed showed fewer events than the changes made');
  return { cursors, ids };
}

export interface FieldFixture {
  /** Values the fuzzer gives the field instead of ones generated from its schema. */
  values(): unknown[];
}

/**
 * Values for request-body fields, by `operationId.field`: for a field whose valid values depend on
 * something no schema can say (the time of the request). The fuzzer still breaks these fields.
 */
/** URLs WHATWG URL reads as the spec's pattern means them (the pattern lets through IPv6 literals that are not addresses). */
const webhookUrls = () => [
  'https://crm.example.com/webhooks/clients',
  'http://127.0.0.1:9/in?x=1',
  'https://[2606:4700::1]:8443/hooks#frag',
  'HTTPS://EXAMPLE.COM.',
];

/** A time this long before (or, negative, after) the request, as a date-time. */
const ago = (ms: number) => new Date(Date.now() - ms).toISOString();
const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

export const fieldFixtures: Record<string, FieldFixture> = {
  // A recovery's window must lie within the 30 days events are kept, and `until` not before
  // `since`: every `since` here is before every `until`.
  'recoverWebhookEndpoint.since': { values: () => [ago(HOUR_MS), ago(5 * DAY_MS), ago(29 * DAY_MS)] },
  'recoverWebhookEndpoint.until': { values: () => [ago(0), ago(-HOUR_MS), '2999-12-31T23:59:59Z'] },
  'createWebhookEndpoint.url': { values: webhookUrls },
  'updateWebhookEndpoint.url': { values: webhookUrls },
  // "In the future" is relative to the request; the schema can only say `date-time`.
  'createToken.expiresAt': {
    values: () => {
      const inMs = (ms: number) => new Date(Date.now() + ms).toISOString();
      return [null, inMs(3_600_000), inMs(365 * 86_400_000), '2999-12-31T23:59:59Z', '2999-12-31T23:59:59.123456+05:30'];
    },
  },
};

/**
 * Request bodies the spec's example cannot be: `example`, one valid at the time of the request (a
 * recovery's window is within the last 30 days; a redelivery to every endpoint, none named); and
 * `another`, a different one the spec allows too (for a key reused with another request).
 */
export const bodyFixtures: Record<string, { example(): unknown; another(): unknown }> = {
  recoverWebhookEndpoint: { example: () => ({ since: ago(HOUR_MS) }), another: () => ({ since: ago(2 * HOUR_MS) }) },
  redeliverEvent: { example: () => ({}), another: () => ({ endpointId: randomUUID() }) },
};

/** The body a valid request to `model` sends: its fixture's, or the spec's own example. */
export function exampleBody(model: OperationModel): unknown {
  return bodyFixtures[model.operationId]?.example() ?? model.body?.example;
}

/** Fixture values for each body field of `model` that has a fixture. */
export function fieldValues(model: OperationModel): Record<string, unknown[]> {
  const fields = Object.keys(model.body?.schema.properties ?? {});
  return Object.fromEntries(
    fields.flatMap((field) => {
      const fixture = fieldFixtures[`${model.operationId}.${field}`];
      return fixture ? [[field, fixture.values()]] : [];
    }),
  );
}

/** The `nextCursor` of each page of a list (GET /clients, GET /tokens) one row at a time, over rows made for it. */
async function cursorsOfAWalk(context: FixtureContext, operationId: string): Promise<string[]> {
  const list = operationModels.find((m) => m.operationId === operationId)!;
  const create = createOperationOf(list.template);
  if (!create) throw new Error(`fixture: no create operation with an example body for ${list.template}`);
  await createFromExample(create, context, 4);
  const cursors: string[] = [];
  let cursor: string | undefined;
  do {
    const query: Record<string, string> = cursor ? { limit: '1', cursor } : { limit: '1' };
    const response = await context.send({
      operationId: list.operationId,
      method: 'GET',
      path: list.template,
      pathParams: {},
      query,
      headers: {},
    });
    const page = (await response.json()) as { nextCursor?: string | null };
    if (!response.ok) throw new Error(`fixture: ${list.operationId} answered ${response.status}`);
    cursor = page.nextCursor ?? undefined;
    if (cursor) cursors.push(cursor);
  } while (cursor);
  if (cursors.length === 0) throw new Error(`fixture: ${list.operationId} gave out no cursor`);
  return cursors;
}

/** The create operation of a collection path (`POST /clients`), with an example body to create from. */
function createOperationOf(collection: string): OperationModel | undefined {
  return operationModels.find((m) => m.method === 'POST' && m.template === collection && m.body?.example !== undefined);
}

/** The create operation of a collection: `POST /clients` for `/clients/{id}`. */
const collectionCreate = (model: OperationModel, parameter: string) =>
  createOperationOf(model.template.slice(0, model.template.indexOf(`/{${parameter}}`)));

/**
 * A request to `model` with these path parameters and, if the operation takes a body, `body` (by
 * default the spec's own example): valid for the spec when the values are.
 */
export function exampleRequest(
  model: OperationModel,
  pathParams: Record<string, string> = {},
  body: unknown = exampleBody(model),
): ModelRequest {
  return {
    operationId: model.operationId,
    method: model.method,
    path: model.template.replace(/\{([^}]+)\}/g, (_, name: string) => encodeURIComponent(pathParams[name] ?? '')),
    pathParams,
    query: {},
    headers: {},
    ...(model.body ? { body: { contentType: 'application/json', text: JSON.stringify(body) } } : {}),
  };
}

const operation = (operationId: string) => operationModels.find((m) => m.operationId === operationId)!;

/** Sends a request that must succeed; its answer's body. */
async function succeed(context: FixtureContext, request: ModelRequest): Promise<unknown> {
  const response = await context.send(request);
  if (!response.ok) throw new Error(`fixture: ${request.operationId} answered ${response.status}`);
  return response.json();
}

/**
 * How to make each operation that documents 402 refuse for the plan: the plans' rules (the README's
 * plans table, server/plans/plans.ts) that no schema states. Each gets a tenant of its own on the free
 * plan, makes what it needs, and returns the request the plan refuses.
 */
export const planRefusals: Record<string, (context: FixtureContext) => Promise<ModelRequest>> = {
  // One more active client than the plan holds.
  createClient: async (context) => {
    await createFromExample(operation('createClient'), context, PLANS.free.maxActiveClients!);
    return exampleRequest(operation('createClient'));
  },
  // A feature of a dearer plan.
  updateClient: async (context) => {
    const [id] = await createFromExample(operation('createClient'), context, 1);
    return exampleRequest(operation('updateClient'), { id: id! }, { requirePoNumber: true });
  },
  // A deleted client back while the plan's active clients are all there.
  restoreClient: async (context) => {
    const [id] = await createFromExample(operation('createClient'), context, 1);
    await succeed(context, exampleRequest(operation('deleteClient'), { id: id! }));
    await createFromExample(operation('createClient'), context, PLANS.free.maxActiveClients!);
    return exampleRequest(operation('restoreClient'), { id: id! });
  },
  // Webhooks are a feature of pro and above: the free plan's writes are refused before anything is
  // looked up (its reads answer, so that a downgraded organisation sees why nothing is sent).
  ...Object.fromEntries(
    [
      'createWebhookEndpoint',
      'updateWebhookEndpoint',
      'deleteWebhookEndpoint',
      'rotateWebhookEndpointSecret',
      'recoverWebhookEndpoint',
      'testWebhookEndpoint',
      'redeliverEvent',
    ].map((id) => [id, async () => exampleRequest(operation(id), { id: randomUUID() })]),
  ),
};

/** Makes `count` resources with the collection's example body; their ids (from `data.id` or Location). */
async function createFromExample(create: OperationModel, context: FixtureContext, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const response = await context.send(exampleRequest(create));
    const body = (await response.json()) as { data?: { id?: string } };
    const id = body.data?.id ?? response.headers.get('location')?.split('/').pop();
    if (!response.ok || !id) throw new Error(`fixture: ${create.operationId} with its example answered ${response.status}`);
    ids.push(id);
  }
  return ids;
}

/** Fixture values for each parameter of `model` that has them: path parameters always do. */
export async function parameterValues(
  model: OperationModel,
  context: FixtureContext,
): Promise<Record<string, { values: string[]; onlyThese: boolean }>> {
  const found: Record<string, { values: string[]; onlyThese: boolean }> = {};
  for (const p of model.parameters) {
    const fixture = parameterFixtures[`${model.operationId}.${p.name}`] ?? parameterFixtures[p.name];
    if (fixture) {
      found[p.name] = { values: await fixture.values(context), onlyThese: fixture.onlyThese ?? false };
      continue;
    }
    if (p.in !== 'path') continue;
    const create = collectionCreate(model, p.name);
    if (!create)
      throw new Error(`No way to name an existing resource for ${model.operationId}'s {${p.name}}: add one to parameterFixtures.`);
    found[p.name] = { values: await createFromExample(create, context, 3), onlyThese: false };
  }
  return found;
}
