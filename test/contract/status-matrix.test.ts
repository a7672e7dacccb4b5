/**
 * The statuses operations share, provoked for every operation of the spec that documents them,
 * each checked by status and error code (and, as every response here, against the spec by the
 * spec-checking fetch): 401 without a token, 403 without the operation's scope, 429 over a tiny
 * budget and 429 over the concurrency limit, 500 from a failing handler (and from one whose
 * failure breaks the answer as well), 400 for unknown query parameters, 413 and 415 for bodies,
 * 409 and 422 for Idempotency-Keys, 503 from a server whose database is unreachable, 304 to an
 * `If-None-Match` naming what the answer would be, and 404 (for unknown ids, and for every other
 * spelling of real ones), 412 and 402 where documented; and that every answer, paths outside the
 * spec included, carries `X-Content-Type-Options: nosniff`. Operations and statuses come from
 * generated/operations.ts; what the spec cannot say (real ids, how a plan refuses) from
 * test/support/operation-fixtures.ts. A new operation is covered by adding it to
 * the spec; a status documented that no part of this matrix knows fails the last test here.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { operationList, type OperationEntry } from '../../generated/operations.js';
import { SCOPES } from '../../server/shared/spec-values.js';
import { BODY_LIMIT_BYTES } from '../../server/http/body-parser.js';
import type { Handlers } from '../../server/operations/handler-types.js';
import { usingPostgres } from '../support/database.js';
import { holdingHandler } from '../support/held-requests.js';
import { sender } from '../support/fuzz.js';
import { specCheckingFetch } from '../support/spec-check.js';
import { bodyFixtures, exampleRequest, parameterValues, planRefusals } from '../support/operation-fixtures.js';
import { operationModels, type ModelRequest, type OperationModel } from '../support/request-check.js';
import { startTestServer, type TestServer, unreadableError } from '../support/server.js';
import { unreachableDatabase } from '../support/unreachable-database.js';
import { waitFor } from '../support/webhook-worker-fixtures.js';

interface Operation {
  entry: OperationEntry;
  model: OperationModel;
}

const operations: Operation[] = operationList.map((entry) => ({
  entry,
  model: operationModels.find((m) => m.operationId === entry.operationId)!,
}));
/** `[operationId, operation]` rows for it.each, of the operations documenting `status`. */
const documenting = (status: number, also: (op: Operation) => boolean = () => true) =>
  operations
    .filter((op) => (op.entry.statuses as readonly number[]).includes(status) && also(op))
    .map((op) => [op.entry.operationId, op] as const);

/** Statuses this matrix provokes; an operation's others must be its successes. */
const PROVOKED = [304, 400, 401, 402, 403, 404, 409, 412, 413, 415, 422, 429, 500, 503];

/** Path parameters that name nothing: every path parameter of this API is an id, a UUID. */
const unknownIds = (model: OperationModel) =>
  Object.fromEntries(model.parameters.filter((p) => p.in === 'path').map((p) => [p.name, randomUUID()]));

async function expectError(
  response: Response,
  status: number,
  codes: string | string[],
): Promise<{ message: string; fields?: Record<string, string> }> {
  const body = (await response.json()) as { error?: { code: string; message: string; fields?: Record<string, string> } };
  expect({ status: response.status, code: body.error?.code }).toEqual({ status, code: expect.toBeOneOf([codes].flat()) });
  return body.error!;
}

const withHeaders = (request: ModelRequest, headers: Record<string, string>): ModelRequest => ({
  ...request,
  headers: { ...request.headers, ...headers },
});

let server: TestServer;
/** A token of a tenant of no operation's own (the answers that come before any operation). */
let token: string;
beforeAll(async () => {
  server = await startTestServer();
  ({
    token: { token },
  } = await server.tenant({ plan: 'studio' }));
});
afterAll(() => server?.close());

/**
 * Each operation's own tenant, as the fuzzer gives: what one operation made (up to a limit, such
 * as 16 webhook endpoints per organisation) never decides how another is answered.
 */
const tenants = new Map<string, Promise<{ token: string; orgId: string }>>();
function tenantOf(operationId: string): Promise<{ token: string; orgId: string }> {
  if (!tenants.has(operationId)) {
    tenants.set(
      operationId,
      server.tenant({ plan: 'studio' }).then(({ token: minted }) => ({ token: minted.token, orgId: minted.orgId })),
    );
  }
  return tenants.get(operationId)!;
}

/** Sends as the operation's own tenant, as another token, or (null) with none. */
const send = async (request: ModelRequest, as?: string | null) =>
  sender({ baseUrl: server.baseUrl, token: as === null ? undefined : (as ?? (await tenantOf(request.operationId)).token) })(request);

/** Per operation, ids of real resources for its path parameters (made once, by the fixtures). */
const realIds = new Map<string, Promise<Record<string, string[]>>>();
function idsFor(model: OperationModel): Promise<Record<string, string[]>> {
  if (!realIds.has(model.operationId)) {
    // Made by the operation's own tenant (a fixture's requests are other operations').
    const own = async (r: ModelRequest) => send(r, (await tenantOf(model.operationId)).token);
    const values = model.parameters.some((p) => p.in === 'path') ? parameterValues(model, { send: own }) : Promise.resolve({});
    realIds.set(
      model.operationId,
      values.then((found) => Object.fromEntries(Object.entries(found).map(([name, f]) => [name, (f as { values: string[] }).values]))),
    );
  }
  return realIds.get(model.operationId)!;
}

/** A request the spec allows, naming real resources: the `variant`-th of each parameter's ids. */
async function validRequest(model: OperationModel, variant = 0): Promise<ModelRequest> {
  const ids = await idsFor(model);
  const pathParams = Object.fromEntries(model.parameters.filter((p) => p.in === 'path').map((p) => [p.name, ids[p.name]![variant]!]));
  return exampleRequest(model, pathParams);
}

/** A request to the same operation that differs from validRequest's: another body, or another resource. */
async function anotherRequest(model: OperationModel): Promise<ModelRequest> {
  if (!model.body) return validRequest(model, 1);
  const another = bodyFixtures[model.operationId]?.another();
  if (another !== undefined)
    return { ...(await validRequest(model)), body: { contentType: 'application/json', text: JSON.stringify(another) } };
  const example = model.body.example as Record<string, unknown>;
  const field = Object.keys(example).find((name) => typeof example[name] === 'string')!;
  return {
    ...(await validRequest(model)),
    body: { contentType: 'application/json', text: JSON.stringify({ ...example, [field]: `${example[field] as string} (another)` }) },
  };
}

describe('401 without a token', () => {
  it.each(documenting(401))('%s', async (_id, { model }) => {
    await expectError(await send(await validRequest(model), null), 401, 'unauthenticated');
  });
});

describe("403 with a token that lacks the operation's scope", () => {
  it.each(documenting(403))('%s', async (_id, { entry, model }) => {
    const { token: lacking } = await server.tenant({
      plan: 'studio',
      scopes: SCOPES.filter((s) => !(entry.scopes as readonly string[]).includes(s)),
    });
    const error = await expectError(await send(await validRequest(model), lacking.token), 403, 'forbidden');
    expect(error.message).toContain(entry.scopes[0]);
  });
});

describe('429 over the budget (a server allowing one request per token)', () => {
  let tiny: TestServer;
  beforeAll(async () => {
    tiny = await startTestServer({ rateLimits: { perTenant: 1, perAddress: 1_000, windowSeconds: 60 } });
  });
  afterAll(() => tiny?.close());

  it.each(documenting(429))('%s', async (_id, { model }) => {
    const { token: own } = await tiny.tenant({ plan: 'studio' });
    const sendTiny = sender({ baseUrl: tiny.baseUrl, token: own.token });
    const request = exampleRequest(model, unknownIds(model));
    expect((await sendTiny(request)).status).not.toBe(429);
    const refused = await sendTiny(request);
    await expectError(refused.clone(), 429, 'rate_limited');
    expect(Number(refused.headers.get('Retry-After'))).toBeGreaterThan(0);
  });
});

describe('429 over the concurrency limit (a server allowing one request in flight per organisation)', () => {
  const gate = holdingHandler();
  let busy: TestServer;
  beforeAll(async () => {
    busy = await startTestServer({ concurrencyLimit: 1, handlers: { listTokens: gate.listTokens } });
  });
  afterAll(async () => {
    gate.letGo();
    await busy?.close();
  });

  it.each(documenting(429))('%s', async (_id, { model }) => {
    const { token: own } = await busy.tenant({ plan: 'studio' });
    // The organisation's one request in flight, waiting in the handler until let go.
    const held = fetch(`${busy.baseUrl}/tokens`, { headers: { Authorization: `Bearer ${own.token}`, 'X-Test-Hold': 'yes' } });
    await waitFor(() => gate.held() === 1, 'the request in flight', 5_000);
    try {
      const refused = await sender({ baseUrl: busy.baseUrl, token: own.token })(exampleRequest(model, unknownIds(model)));
      const error = await expectError(refused.clone(), 429, 'rate_limited');
      expect(error.message).toContain('in flight');
      expect(refused.headers.get('Retry-After')).toBe('1');
    } finally {
      gate.letGo();
      expect((await held).status).toBe(200);
    }
  });
});

describe('500 when the operation fails (a server whose every handler throws)', () => {
  const SECRET = 'select secret_hash from tokens';
  let broken: TestServer;
  let brokenToken: string;
  beforeAll(async () => {
    const failing = async () => {
      throw new Error(`injected failure: ${SECRET}`);
    };
    broken = await startTestServer({
      handlers: Object.fromEntries(operationList.map((op) => [op.operationId, failing])) as Partial<Handlers>,
    });
    brokenToken = (await broken.tenant({ plan: 'studio' })).token.token;
  });
  afterAll(() => broken?.close());

  it.each(documenting(500))('%s', async (_id, { model }) => {
    const response = await sender({ baseUrl: broken.baseUrl, token: brokenToken })(exampleRequest(model, unknownIds(model)));
    const text = await response.clone().text();
    await expectError(response, 500, 'internal_error');
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain('injected');
  });
});

describe('500 in the envelope even when the failure breaks the error handler (its last resort answers)', () => {
  const SECRET = 'select secret_hash from tokens';
  let sabotaged: TestServer;
  let sabotagedToken: string;
  beforeAll(async () => {
    // An error that cannot be read, thrown after breaking the response's own json, which the
    // error handler answers with.
    const failing = async (ctx: { req: { res?: { json: unknown } } }) => {
      ctx.req.res!.json = () => {
        throw new Error(`res.json broke: ${SECRET}`);
      };
      throw unreadableError(`hostile: ${SECRET}`);
    };
    sabotaged = await startTestServer({
      handlers: Object.fromEntries(operationList.map((op) => [op.operationId, failing])) as Partial<Handlers>,
    });
    sabotagedToken = (await sabotaged.tenant({ plan: 'studio' })).token.token;
  });
  afterAll(() => sabotaged?.close());

  it.each(documenting(500))('%s', async (_id, { model }) => {
    const response = await sender({ baseUrl: sabotaged.baseUrl, token: sabotagedToken })(
      withHeaders(exampleRequest(model, unknownIds(model)), { 'X-Request-Id': `last-resort-${model.operationId}` }),
    );
    const text = await response.clone().text();
    await expectError(response, 500, 'internal_error');
    expect(response.headers.get('Content-Type')).toBe('application/json; charset=utf-8');
    expect(response.headers.get('X-Request-Id')).toBe(`last-resort-${model.operationId}`);
    expect(text).not.toMatch(/secret_hash|hostile|broke|<html|\n\s+at /i);
  });
});

describe('503 while the database is unreachable (a server whose pool meets a refused connection)', () => {
  let away: TestServer;
  let database: Awaited<ReturnType<typeof unreachableDatabase>>;
  beforeAll(async () => {
    database = await unreachableDatabase();
    // Rate-limit counters in memory: the token lookup is the first thing that needs the database.
    away = await startTestServer({ db: database.db, pool: undefined }, { database: server.database });
  });
  afterAll(async () => {
    await away?.close();
    await database?.close();
  });

  it.each(documenting(503))('%s', async (_id, { model }) => {
    // A well-formed token: the request gets as far as looking it up.
    const response = await sender({ baseUrl: away.baseUrl, token })(exampleRequest(model, unknownIds(model)));
    const text = await response.clone().text();
    await expectError(response, 503, 'service_unavailable');
    expect(Number(response.headers.get('Retry-After'))).toBeGreaterThan(0);
    expect(text).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|select/i);
  });
});

/**
 * Unknown query parameters, each named in `fields` as the server read it: `%` (sent `%25`) is the
 * probe that once made the error handler throw, so that Express answered an HTML page with the
 * stack; `%E0%A4%A` does not decode either; `a.b` holds what the validator's path splits on.
 */
const UNKNOWN_QUERY_NAMES = ['notAParameter', '%', '%E0%A4%A', 'a.b'];

describe('304 to an If-None-Match naming the ETag of the answer', () => {
  it.each(documenting(304))('%s', async (_id, { model }) => {
    const request = await validRequest(model);
    const first = await send(request);
    expect(first.status).toBe(200);
    const etag = first.headers.get('ETag');
    expect(etag).toMatch(/^"[^"]+"$/);
    const again = await send(withHeaders(request, { 'If-None-Match': etag! }));
    expect(again.status).toBe(304);
    expect(again.headers.get('ETag')).toBe(etag);
    expect(await again.text()).toBe('');
  });
});

describe('400 for a query parameter the operation does not take, named as sent', () => {
  it.each(documenting(400))('%s', async (_id, { model }) => {
    const request = await validRequest(model);
    for (const name of UNKNOWN_QUERY_NAMES) {
      const response = await send({ ...request, query: { ...request.query, [name]: '1' } });
      expect(response.headers.get('Content-Type'), name).toBe('application/json; charset=utf-8');
      const error = await expectError(response, 400, 'validation_failed');
      expect(Object.keys(error.fields ?? {}), name).toContain(name);
    }
  });
});

describe('413 for a body over the limit', () => {
  it.each(documenting(413, (op) => op.model.body !== undefined))('%s', async (_id, { model }) => {
    const request = await validRequest(model);
    const big = JSON.stringify({ ...(model.body!.example as object), padding: 'x'.repeat(BODY_LIMIT_BYTES) });
    await expectError(await send({ ...request, body: { contentType: 'application/json', text: big } }), 413, 'payload_too_large');
  });
});

describe('415 for a body that is not JSON', () => {
  it.each(documenting(415, (op) => op.model.body !== undefined))('%s', async (_id, { model }) => {
    const request = await validRequest(model);
    await expectError(
      await send({ ...request, body: { contentType: 'text/plain', text: request.body!.text } }),
      415,
      'unsupported_media_type',
    );
  });
});

const idempotent = (op: Operation) => op.entry.idempotencyKey;

describe('422 for an Idempotency-Key reused with another request', () => {
  it.each(documenting(422, idempotent))('%s', async (_id, { model }) => {
    const key = { 'Idempotency-Key': randomUUID() };
    const first = await send(withHeaders(await validRequest(model), key));
    expect(first.status, await first.clone().text()).toBeLessThan(300);
    await expectError(await send(withHeaders(await anotherRequest(model), key)), 422, 'idempotency_key_reused');
  });
});

describe('409 for an Idempotency-Key whose first request still runs', () => {
  // PGlite runs one transaction at a time, so a key can never be held there by another request:
  // this server's store answers as a held key does. It exercises the server's answer, not the
  // database's lock (which PostgreSQL's run below exercises).
  let busy: TestServer;
  let busyToken: string;
  beforeAll(async () => {
    if (usingPostgres) return;
    busy = await startTestServer({
      idempotencyStore: { claimKey: async () => ({ locked: false, stored: undefined }) },
    });
    // A plan with a limit: every write, a create included, claims its key in a transaction.
    busyToken = (await busy.tenant({ plan: 'pro' })).token.token;
  });
  afterAll(() => busy?.close());

  it.each(documenting(409, idempotent))('%s', async (_id, { model }) => {
    const key = randomUUID();
    if (!usingPostgres) {
      const response = await sender({ baseUrl: busy.baseUrl, token: busyToken })(
        withHeaders(exampleRequest(model, unknownIds(model)), { 'Idempotency-Key': key }),
      );
      await expectError(response, 409, 'idempotency_request_in_progress');
      return;
    }
    // Another session holds the key's lock, as the first request's transaction would.
    const pool = new pg.Pool({ connectionString: server.database.url, max: 1 });
    const holder = await pool.connect();
    try {
      const { orgId } = await tenantOf(model.operationId);
      await holder.query('select pg_advisory_lock(hashtextextended($1, 0))', [`idempotency:${orgId}:test:${key}`]);
      const response = await send(withHeaders(await validRequest(model), { 'Idempotency-Key': key }));
      expect(response.headers.get('Retry-After')).toBe('1');
      await expectError(response, 409, 'idempotency_request_in_progress');
    } finally {
      holder.release();
      await pool.end();
    }
  });
});

describe('404 for an id that names nothing', () => {
  it.each(documenting(404))('%s', async (_id, { model }) => {
    await expectError(await send(exampleRequest(model, unknownIds(model))), 404, 'not_found');
  });
});

/**
 * An id names a resource only as `id` writes it (a lower-case UUID). Every other spelling of a
 * real resource's id names nothing, like an unknown id, and never reaches the database (which
 * reads some of them as the same UUID, and refuses `urn:uuid:` with an error).
 */
const SPELLINGS: [string, (id: string) => string][] = [
  ['urn:uuid:', (id) => `urn:uuid:${id}`],
  ['braces', (id) => `{${id}}`],
  ['upper case', (id) => id.toUpperCase()],
  ['no dashes', (id) => id.replaceAll('-', '')],
  ['a trailing newline', (id) => `${id}\n`],
  ['a valid-looking UUID of another version', () => 'c232ab00-9414-11ec-b3c8-9e6bdeced846'],
];

describe("404 for an id in any other spelling than the canonical one, a real resource's included", () => {
  it.each(documenting(404, (op) => op.model.parameters.some((p) => p.in === 'path')))('%s', async (_id, { model }) => {
    const ids = await idsFor(model);
    const answers = [];
    for (const [spelling, spell] of SPELLINGS) {
      const pathParams = Object.fromEntries(model.parameters.filter((p) => p.in === 'path').map((p) => [p.name, spell(ids[p.name]![0]!)]));
      const response = await send(exampleRequest(model, pathParams));
      const body = (await response.json()) as { error?: { code: string } };
      answers.push([spelling, response.status, body.error?.code]);
    }
    expect(answers).toEqual(SPELLINGS.map(([spelling]) => [spelling, 404, 'not_found']));
  });
});

describe('412 for a stale If-Match', () => {
  it.each(documenting(412))('%s', async (_id, { model }) => {
    await expectError(await send(withHeaders(await validRequest(model), { 'If-Match': '"not-its-etag"' })), 412, 'precondition_failed');
  });
});

describe("402 when the tenant's plan refuses", () => {
  it.each(documenting(402))('%s', async (id) => {
    const refusal = planRefusals[id];
    expect(refusal, `no way to make ${id} refuse for the plan: add it to planRefusals`).toBeDefined();
    const { token: free } = await server.tenant({ plan: 'free' });
    const request = await refusal!({ send: (r) => send(r, free.token) });
    await expectError(await send(request, free.token), 402, ['plan_limit_reached', 'plan_required']);
  });
});

describe('answers outside the spec carry X-Content-Type-Options: nosniff too (every other answer here is checked for it by the spec-checking fetch)', () => {
  it.each([
    ['GET', '/nope'],
    ['GET', '/clients/'],
    ['GET', '/Clients'],
    ['PUT', '/clients'],
    ['POST', '/healthz'],
  ])('%s %s', async (method, path) => {
    const response = await specCheckingFetch()(
      new Request(`${server.baseUrl}${path}`, { method, headers: { Authorization: `Bearer ${token}` } }),
    );
    expect([404, 405]).toContain(response.status);
    expect(response.headers.get('X-Content-Type-Options')).toBe('nosniff');
    expect(response.headers.get('X-Request-Id')).toBeTruthy();
  });
});

it('every documented status is either provoked here or a success', () => {
  const unknown = operations.flatMap(({ entry }) =>
    entry.statuses.filter((s) => s >= 300 && !PROVOKED.includes(s)).map((s) => `${entry.operationId} ${s}`),
  );
  expect(unknown).toEqual([]);
});
