/**
 * The concurrent-requests limit (CONCURRENCY_LIMIT): an organisation may have at most so many
 * requests in flight at once in a process, from the moment its token is checked until its answer
 * is sent or its connection closes. Requests are held in flight by a `GET /tokens` handler that
 * waits, for requests carrying `X-Test-Hold`, until the test lets them go
 * (test/support/held-requests.ts). Requests go straight to the server, even under `npm run test:prism`: these tests are
 * about connections, which a proxy in between would hold and close on its own terms.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClientsApi, type ClientsApi } from '../../client/index.js';
import { createMetrics } from '../../server/metrics/metrics.js';
import { holdingHandler } from '../support/held-requests.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { specCheckingFetch } from '../support/spec-check.js';
import { waitFor } from '../support/webhook-worker-fixtures.js';

const LIMIT = 2;

const metrics = createMetrics();
const gate = holdingHandler();
let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ concurrencyLimit: LIMIT, metrics, handlers: { listTokens: gate.listTokens } });
});
afterAll(async () => {
  gate.letGo();
  await server?.close();
});

const clientFor = (target: TestServer, token: string): ClientsApi =>
  createClientsApi({ baseUrl: target.serverUrl, token, retry: false, fetch: specCheckingFetch() });

async function tenant(target: TestServer = server) {
  const { token } = await target.tenant({ plan: 'studio' });
  return { api: clientFor(target, token.token), token };
}

/** Sends `count` requests that wait in the handler, and resolves once they all do (fails if one is answered first). */
async function hold(api: ClientsApi, count: number, how: 'yes' | 'fail' = 'yes', signal?: AbortSignal, holding = gate) {
  const before = holding.held();
  const requests = Array.from({ length: count }, () => api.GET('/tokens', { headers: { 'X-Test-Hold': how }, signal }));
  let answeredEarly: string | undefined;
  for (const request of requests)
    request.then(
      (answer) => (answeredEarly ??= `a held request was answered ${answer.response.status} before it was let go`),
      () => {},
    );
  await waitFor(
    () => {
      if (answeredEarly) throw new Error(answeredEarly);
      return holding.held() === before + count;
    },
    `${count} requests in the handler`,
    5_000,
  );
  return requests;
}

/** All LIMIT slots of the organisation are free: as many requests as the limit can be held at once (waiting for aborted ones' slots to come back). */
async function expectSlotsFree(api: ClientsApi): Promise<void> {
  await waitFor(
    async () => {
      const before = gate.held();
      const requests = Array.from({ length: LIMIT }, () => api.GET('/tokens', { headers: { 'X-Test-Hold': 'yes' } }));
      let refused = false;
      for (const request of requests) request.then((answer) => (refused ||= answer.response.status === 429));
      await waitFor(() => refused || gate.held() === before + LIMIT, 'held or refused', 5_000);
      gate.letGo();
      const answers = await Promise.all(requests);
      if (refused) return false;
      expect(answers.map((a) => a.response.status)).toEqual(Array(LIMIT).fill(200));
      return true;
    },
    `${LIMIT} free slots`,
    5_000,
  );
}

const refusals = async () =>
  Number(/^rate_limit_refusals_total\{limiter="concurrency"\} (\d+)$/m.exec(await metrics.registry.metrics())?.[1]);

describe('over the limit', () => {
  it('the next request of the organisation is 429 rate_limited with Retry-After, in either environment, and nothing is done', async () => {
    const a = await tenant();
    const refusedBefore = await refusals();
    const held = await hold(a.api, LIMIT);

    const refused = await a.api.GET('/clients');
    expect(refused.response.status).toBe(429);
    expect(refused.error!.error.code).toBe('rate_limited');
    expect(refused.error!.error.message).toContain(`${LIMIT} requests in flight at once`);
    expect(refused.response.headers.get('Retry-After')).toBe('1');
    // It was counted against the tenant's budget, which has plenty left: the budget did not refuse it.
    expect(refused.response.headers.get('RateLimit')).toMatch(/^"tenant";r=[1-9]\d*;t=\d+$/);

    // Before validation and the handler: an invalid body is refused as busy, and a valid one writes nothing.
    const invalid = await a.api.POST('/clients', { body: { nmae: 'typo' } as never });
    expect(invalid.response.status).toBe(429);
    const write = await a.api.POST('/clients', { body: { name: 'Not now' } });
    expect(write.response.status).toBe(429);
    const orgName = (
      await server.database.db.selectFrom('organisations').select('name').where('id', '=', a.token.orgId).executeTakeFirstOrThrow()
    ).name;
    const live = clientFor(server, (await server.mint({ orgName, env: 'live' })).token);
    expect((await live.GET('/clients')).response.status).toBe(429);
    expect(await server.database.db.selectFrom('clients').select('id').where('org_id', '=', a.token.orgId).execute()).toEqual([]);
    expect(await refusals()).toBe(refusedBefore + 4);

    gate.letGo();
    expect((await Promise.all(held)).map((answer) => answer.response.status)).toEqual(Array(LIMIT).fill(200));
    // Each slot comes back as its connection's answer is finished, at most a moment after the client has it.
    await waitFor(async () => (await a.api.POST('/clients', { body: { name: 'Now' } })).response.status === 201, 'a free slot', 5_000);
  });

  it('another organisation is served meanwhile, up to its own limit', async () => {
    const busy = await tenant();
    const held = await hold(busy.api, LIMIT);
    const other = await tenant();
    expect((await other.api.GET('/clients')).response.status).toBe(200);
    expect((await other.api.POST('/clients', { body: { name: 'Unhindered' } })).response.status).toBe(201);
    const otherHeld = await hold(other.api, LIMIT);
    expect((await other.api.GET('/clients')).response.status).toBe(429);
    gate.letGo();
    await Promise.all([...held, ...otherHeld]);
  });
});

describe('slots come back however a request ends', () => {
  it('after an answer, an error (500) and every refusal that comes after the slot is taken', async () => {
    const { api } = await tenant();
    const failing = await hold(api, LIMIT, 'fail');
    gate.letGo();
    for (const answer of await Promise.all(failing)) {
      expect(answer.response.status).toBe(500);
      expect(answer.error!.error.code).toBe('internal_error');
    }
    await expectSlotsFree(api);

    // More refusals in a row than there are slots: each gave its slot back.
    const refused: number[] = [];
    for (let i = 0; i < LIMIT + 1; i++) {
      refused.push((await api.POST('/clients', { body: { nmae: 'typo' } as never })).response.status);
      refused.push((await api.GET('/clients/{id}', { params: { path: { id: crypto.randomUUID() } } })).response.status);
      refused.push((await api.POST('/clients', { body: { name: 'x'.repeat(300_000) } })).response.status);
      refused.push((await api.GET('/clients', { params: { query: { cursor: 'not-a-cursor' } } })).response.status);
    }
    expect(new Set(refused)).toEqual(new Set([400, 404, 413]));
    await expectSlotsFree(api);
  });

  it('when the client goes away: in the handler, and while its body is still on its way', async () => {
    const a = await tenant();
    const aborting = new AbortController();
    const held = await hold(a.api, LIMIT, 'yes', aborting.signal);
    aborting.abort();
    await Promise.allSettled(held);
    gate.letGo(); // the handlers of the aborted requests finish, answering no one
    await expectSlotsFree(a.api);

    // Headers sent, body never finished: in flight from the moment the token is checked. A probe
    // of the same organisation is then refused. (Had the probe taken a slot before a slow request
    // came, that one would be refused instead and answered: then the attempt starts over.)
    const b = await tenant();
    const url = new URL(server.serverUrl);
    const sendSlowly = () => {
      const request = http.request({
        host: url.hostname,
        port: url.port,
        path: '/clients',
        method: 'POST',
        agent: false,
        headers: { Authorization: `Bearer ${b.token.token}`, 'Content-Type': 'application/json', 'Content-Length': '1000' },
      });
      request.on('error', () => {});
      request.write('{"name":"');
      return request;
    };
    let slow: http.ClientRequest[] = [];
    await waitFor(
      async () => {
        for (const request of slow) request.destroy();
        slow = Array.from({ length: LIMIT }, sendSlowly);
        let answered = false;
        for (const request of slow) request.on('response', () => (answered = true));
        await new Promise((resolve) => setTimeout(resolve, 50));
        return (await b.api.GET('/clients')).response.status === 429 && !answered;
      },
      'the slow bodies to hold every slot',
      5_000,
    );
    for (const request of slow) request.destroy();
    await expectSlotsFree(b.api);
  });
});

it('CONCURRENCY_LIMIT=0: no limit', async () => {
  const unlimitedGate = holdingHandler();
  const unlimited = await startTestServer({ concurrencyLimit: false, handlers: { listTokens: unlimitedGate.listTokens } });
  try {
    const { api } = await tenant(unlimited);
    const held = await hold(api, LIMIT * 3, 'yes', undefined, unlimitedGate);
    expect((await api.GET('/clients')).response.status).toBe(200);
    unlimitedGate.letGo();
    expect((await Promise.all(held)).map((answer) => answer.response.status)).toEqual(Array(LIMIT * 3).fill(200));
  } finally {
    unlimitedGate.letGo();
    await unlimited.close();
  }
});
