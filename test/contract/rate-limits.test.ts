/**
 * Rate limits: per tenant (organisation and environment, shared by all of its tokens), and per
 * client address for requests without a valid token; the IETF draft's RateLimit-Policy and
 * RateLimit fields on every answer; 429 rate_limited with Retry-After. The servers run with tiny
 * budgets (createApp takes them as deps); each test uses organisations and client addresses of its
 * own, so that tests sharing a server share no budget.
 * Other client addresses are real: Linux routes all of 127.0.0.0/8 to loopback, so a request can
 * leave from 127.0.0.2 as another client would.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClientsApi } from '../../client/index.js';
import type { AppDeps } from '../../server/app.js';
import type { RateLimitBudgets } from '../../server/rate-limit/rate-limits.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { checkResponse } from '../support/spec-check.js';

const servers: TestServer[] = [];
afterAll(() => Promise.all(servers.map((s) => s.close())));

async function serverWith(rateLimits: RateLimitBudgets | false, extra: Partial<AppDeps> = {}): Promise<TestServer> {
  const server = await startTestServer({ rateLimits, ...extra });
  servers.push(server);
  return server;
}

/** 3 requests per tenant, 2 per address, a minute. */
let server: TestServer;
/** 2 per tenant, 1 per address, a window of one second. */
let briefWindow: TestServer;
beforeAll(async () => {
  [server, briefWindow] = await Promise.all([
    serverWith({ perTenant: 3, perAddress: 2, windowSeconds: 60 }),
    serverWith({ perTenant: 2, perAddress: 1, windowSeconds: 1 }),
  ]);
});

interface Answer {
  status: number;
  headers: Headers;
  body: { error?: { code: string; message: string } } | undefined;
}

/**
 * One raw request, leaving from `from` (a loopback address), checked against the spec like the
 * typed client's, unless `unchecked` (the fields are absent by design when limiting is off).
 */
function send(
  server: TestServer,
  path: string,
  init: { method?: string; headers?: Record<string, string>; body?: string; from?: string; unchecked?: boolean } = {},
): Promise<Answer> {
  // Straight to the server, even under `npm run test:prism`: a proxy in between would make every
  // request leave from the proxy's address, and these tests are about the client's own.
  const url = new URL(path, server.serverUrl);
  const method = init.method ?? 'GET';
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method,
        localAddress: init.from ?? '127.0.0.1',
        headers: init.headers,
        agent: false,
      },
      (response) => {
        let text = '';
        response.on('data', (chunk) => (text += chunk));
        response.on('end', () => {
          const headers = new Headers();
          for (const [name, value] of Object.entries(response.headers)) if (typeof value === 'string') headers.set(name, value);
          const body = text ? JSON.parse(text) : undefined;
          const problems = init.unchecked ? [] : checkResponse(method, url.pathname, response.statusCode!, headers, body);
          if (problems.length > 0) reject(new Error(`${method} ${path} (${response.statusCode}) breaks the spec: ${problems.join('; ')}`));
          else resolve({ status: response.statusCode!, headers, body });
        });
      },
    );
    request.on('error', reject);
    request.end(init.body);
  });
}

/** A token of the right shape that no one holds. */
const GUESS = 'hsk_test_AAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB';
const withToken = (token: string, headers: Record<string, string> = {}) => ({ Authorization: `Bearer ${token}`, ...headers });
const json = { 'Content-Type': 'application/json' };

/** The RateLimit field's parameters, as numbers, with its policy's name. */
function remaining(headers: Headers): { policy: string; r: number; t: number } {
  const field = headers.get('RateLimit') ?? '';
  const match = /^"(\w+)";r=(\d+);t=(\d+)$/.exec(field);
  expect(match, `RateLimit: ${field}`).not.toBeNull();
  return { policy: match![1]!, r: Number(match![2]), t: Number(match![3]) };
}

const rateLimitFields = (response: { headers: Headers }) => ({
  policy: response.headers.get('RateLimit-Policy'),
  limit: response.headers.get('RateLimit'),
});

describe('per tenant', () => {
  it('over the budget: 429 rate_limited with Retry-After, and nothing done', async () => {
    const { api, token } = await server.tenant({ plan: 'studio' });
    for (const left of [2, 1, 0]) {
      const { response } = await api.POST('/clients', { body: { name: `Client ${left}` } });
      expect(response.status).toBe(201);
      expect(response.headers.get('RateLimit-Policy')).toBe('"tenant";q=3;w=60');
      expect(remaining(response.headers)).toMatchObject({ policy: 'tenant', r: left });
    }
    const { error, response } = await api.POST('/clients', { body: { name: 'One too many' } });
    expect(response.status).toBe(429);
    expect(error!.error.code).toBe('rate_limited');
    expect(error!.error.message).toContain('more than 3 requests in 60 seconds');
    const retryAfter = Number(response.headers.get('Retry-After'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(remaining(response.headers)).toEqual({ policy: 'tenant', r: 0, t: retryAfter });
    const rows = await server.database.db.selectFrom('clients').select('name').where('org_id', '=', token.orgId).execute();
    expect(rows).toHaveLength(3);
  });

  it('counts every request, whatever its answer; the limit comes before validation, after auth', async () => {
    const { api } = await server.tenant({ scopes: ['clients:write'] });
    const invalid = await api.POST('/clients', { body: { nmae: 'typo' } as never });
    expect(invalid.response.status).toBe(400);
    const forbidden = await api.GET('/tokens');
    expect(forbidden.response.status).toBe(403);
    const created = await api.POST('/clients', { body: { name: 'Fine' } });
    expect(created.response.status).toBe(201);
    expect(remaining(created.response.headers).r).toBe(0);

    // Over the budget, an invalid request is 429, not 400: nothing of it is looked at.
    const late = await api.POST('/clients', { body: { nmae: 'typo' } as never });
    expect(late.response.status).toBe(429);
    // But the token is checked first: a scope it lacks is still 403, a bad token still 401.
    const stillForbidden = await api.GET('/tokens');
    expect(stillForbidden.response.status).toBe(403);
    expect(remaining(stillForbidden.response.headers)).toMatchObject({ policy: 'tenant', r: 0 });
    const bad = await send(server, '/clients', {
      method: 'POST',
      headers: { ...withToken(GUESS), ...json },
      body: '{"name":"x"}',
      from: '127.0.0.9',
    });
    expect(bad.status).toBe(401);
  });

  it("the tenant's tokens share one budget, minted ones too; another organisation and the other environment keep theirs", async () => {
    const first = await server.tenant({ plan: 'studio' });
    const orgName = (
      await server.database.db.selectFrom('organisations').select('name').where('id', '=', first.token.orgId).executeTakeFirstOrThrow()
    ).name;
    const second = server.client((await server.mint({ orgName })).token);
    const sameOrgLive = server.client((await server.mint({ orgName, env: 'live' })).token);
    const otherOrg = (await server.tenant({ plan: 'studio' })).api;

    // Three requests by three tokens of the tenant (one of them minted through the API) spend its
    // budget of three: minting tokens buys no requests.
    const minted = await first.api.POST('/tokens', { body: { name: 'Another budget?', scopes: ['tokens:manage'] } });
    expect(minted.response.status).toBe(201);
    expect(remaining(minted.response.headers)).toMatchObject({ policy: 'tenant', r: 2 });
    const third = server.client(minted.data!.token!);
    expect(remaining((await second.GET('/tokens')).response.headers)).toMatchObject({ policy: 'tenant', r: 1 });
    expect(remaining((await third.GET('/tokens')).response.headers)).toMatchObject({ policy: 'tenant', r: 0 });
    for (const api of [first.api, second, third]) {
      const { response, error } = await api.GET('/tokens');
      expect(response.status).toBe(429);
      expect(error!.error.code).toBe('rate_limited');
      expect(error!.error.message).toContain('all of its tokens together');
    }

    for (const api of [sameOrgLive, otherOrg] as ClientsApi[]) {
      const { response } = await api.GET('/tokens');
      expect(response.status).toBe(200);
      expect(remaining(response.headers)).toMatchObject({ policy: 'tenant', r: 2 });
    }
  });

  it('the window ends: after Retry-After the budget is whole again', async () => {
    const { api } = await briefWindow.tenant();
    await api.GET('/tokens');
    await api.GET('/tokens');
    const refused = await api.GET('/tokens');
    expect(refused.response.status).toBe(429);
    expect(refused.response.headers.get('Retry-After')).toBe('1');
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const again = await api.GET('/tokens');
    expect(again.response.status).toBe(200);
    expect(remaining(again.response.headers)).toMatchObject({ r: 1 });
  });
});

describe('the fields on every answer', () => {
  it('are present on 2xx and 4xx alike, naming the policy the request was counted against', async () => {
    const fresh = async (request: Parameters<TestServer['tenant']>[0] = {}) => (await server.tenant({ plan: 'studio', ...request })).token;
    const full = await fresh({ plan: 'free' });
    await server.database.db
      .insertInto('clients')
      .values([1, 2, 3].map((i) => ({ org_id: full.orgId, env: full.env, name: `Filler ${i}` })))
      .execute();
    const readOnly = await fresh({ scopes: ['clients:read'] });

    const answers: [number, string, Promise<Answer>][] = [
      [200, 'tenant', send(server, '/tokens', { headers: withToken((await fresh()).token) })],
      [
        201,
        'tenant',
        send(server, '/tokens', {
          method: 'POST',
          headers: withToken((await fresh()).token, json),
          body: '{"name":"x","scopes":["clients:read"]}',
        }),
      ],
      [201, 'tenant', send(server, '/clients', { method: 'POST', headers: withToken((await fresh()).token, json), body: '{"name":"x"}' })],
      [400, 'tenant', send(server, '/clients', { method: 'POST', headers: withToken((await fresh()).token, json), body: '{"nmae":"x"}' })],
      [402, 'tenant', send(server, '/clients', { method: 'POST', headers: withToken(full.token, json), body: '{"name":"Fourth"}' })],
      [403, 'tenant', send(server, '/tokens', { headers: withToken(readOnly.token) })],
      [
        404,
        'tenant',
        send(server, '/tokens/00000000-0000-4000-8000-000000000000', { method: 'DELETE', headers: withToken((await fresh()).token) }),
      ],
      [
        413,
        'tenant',
        send(server, '/clients', {
          method: 'POST',
          headers: withToken((await fresh()).token, json),
          body: `{"name":"${'x'.repeat(300_000)}"}`,
        }),
      ],
      [
        415,
        'tenant',
        send(server, '/clients', {
          method: 'POST',
          headers: withToken((await fresh()).token, { 'Content-Type': 'text/plain' }),
          body: 'name',
        }),
      ],
      [
        429,
        'tenant',
        (async () => {
          const spent = withToken((await fresh()).token);
          for (let i = 0; i < 3; i++) await send(server, '/tokens', { headers: spent });
          return send(server, '/tokens', { headers: spent });
        })(),
      ],
      [401, 'address', send(server, '/tokens', { from: '127.0.0.10' })],
      [404, 'address', send(server, '/no-such-path', { from: '127.0.0.11' })],
    ];
    for (const [status, policy, pending] of answers) {
      const answer = await pending;
      expect(answer.status).toBe(status);
      expect(answer.headers.get('RateLimit-Policy'), `${status}`).toBe(policy === 'tenant' ? '"tenant";q=3;w=60' : '"address";q=2;w=60');
      expect(remaining(answer.headers).policy).toBe(policy);
    }
  });

  it('are absent from GET /healthz, which is never counted', async () => {
    for (let i = 0; i < 5; i++) {
      const health = await send(server, '/healthz', { from: '127.0.0.12' });
      expect(health.status).toBe(200);
      expect(rateLimitFields(health)).toEqual({ policy: null, limit: null });
    }
    // The address's budget is whole: its first request without a token leaves 1 of 2.
    const first = await send(server, '/tokens', { from: '127.0.0.12' });
    expect(first.status).toBe(401);
    expect(remaining(first.headers)).toMatchObject({ policy: 'address', r: 1 });
  });

  it('with rate limiting switched off (RATE_LIMIT=0): no limit and no fields', async () => {
    const server = await serverWith(false);
    const { token } = await server.tenant();
    for (let i = 0; i < 20; i++) {
      const answer = await send(server, '/tokens', { headers: withToken(token.token), unchecked: true });
      expect(answer.status).toBe(200);
      expect(rateLimitFields(answer)).toEqual({ policy: null, limit: null });
    }
    for (let i = 0; i < 5; i++) expect((await send(server, '/tokens', { unchecked: true })).status).toBe(401);
  });
});

describe('requests without a valid token', () => {
  it('have a smaller budget of their own, per client address', async () => {
    const bad = withToken(GUESS);
    const first = await send(server, '/tokens', { from: '127.0.0.2' });
    expect(first.status).toBe(401);
    expect(first.headers.get('RateLimit-Policy')).toBe('"address";q=2;w=60');
    expect(remaining(first.headers)).toMatchObject({ policy: 'address', r: 1 });
    expect(
      (await send(server, '/clients', { method: 'POST', headers: { ...bad, ...json }, body: '{"name":"x"}', from: '127.0.0.2' })).status,
    ).toBe(401);

    const refused = await send(server, '/tokens', { headers: bad, from: '127.0.0.2' });
    expect(refused.status).toBe(429);
    expect(refused.body!.error!.code).toBe('rate_limited');
    expect(Number(refused.headers.get('Retry-After'))).toBeGreaterThanOrEqual(1);

    // Another address has its own budget.
    const elsewhere = await send(server, '/tokens', { headers: bad, from: '127.0.0.3' });
    expect(elsewhere.status).toBe(401);
    expect(remaining(elsewhere.headers)).toMatchObject({ policy: 'address', r: 1 });
  });

  it('an address over its budget is refused even with a valid token, until its window ends', async () => {
    const { token } = await briefWindow.tenant();
    expect((await send(briefWindow, '/tokens', { from: '127.0.0.4' })).status).toBe(401);
    expect((await send(briefWindow, '/tokens', { from: '127.0.0.4' })).status).toBe(429);

    // A right guess must look like a wrong one: 429, and the address's fields, not the token's.
    const valid = await send(briefWindow, '/tokens', { headers: withToken(token.token), from: '127.0.0.4' });
    expect(valid.status).toBe(429);
    expect(remaining(valid.headers).policy).toBe('address');
    // The same token from another address is served, and its own budget was not spent.
    const elsewhere = await send(briefWindow, '/tokens', { headers: withToken(token.token), from: '127.0.0.5' });
    expect(elsewhere.status).toBe(200);
    expect(remaining(elsewhere.headers)).toMatchObject({ policy: 'tenant', r: 1 });

    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect((await send(briefWindow, '/tokens', { headers: withToken(token.token), from: '127.0.0.4' })).status).toBe(200);
  });

  it("behind a trusted proxy, the client's address is the one X-Forwarded-For gives", async () => {
    const proxied = await serverWith({ perTenant: 3, perAddress: 1, windowSeconds: 60 }, { trustProxy: 'loopback' });
    expect((await send(proxied, '/tokens', { headers: { 'X-Forwarded-For': '203.0.113.7' } })).status).toBe(401);
    expect((await send(proxied, '/tokens', { headers: { 'X-Forwarded-For': '203.0.113.7' } })).status).toBe(429);
    expect((await send(proxied, '/tokens', { headers: { 'X-Forwarded-For': '203.0.113.8' } })).status).toBe(401);

    // Without trust, the header is the client's word and changes nothing.
    for (const [forwarded, status] of [
      ['203.0.113.7', 401],
      ['203.0.113.8', 401],
      ['203.0.113.9', 429],
    ] as const) {
      expect((await send(server, '/tokens', { headers: { 'X-Forwarded-For': forwarded }, from: '127.0.0.13' })).status).toBe(status);
    }
  });
});
