/**
 * The client's helpers with a fetch of the test's (no server): paginate over every kind of cursor
 * list, timeoutMs and signal against the retry budget, and throwOnError's ClientsApiError. The
 * package test (test/package) runs the same helpers, installed, against the real server.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { ClientsApiError, createClientsApi, type Fetch } from '../../client/index.js';

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } });

/** Answers each request with the next of `answers`, and keeps the requests. */
function scripted(answers: ((request: Request) => Response | Promise<Response>)[]) {
  const sent: Request[] = [];
  const fetch: Fetch = async (request) => {
    sent.push(request);
    const answer = answers.shift();
    if (!answer) throw new Error(`unexpected request ${request.method} ${request.url}`);
    return answer(request);
  };
  return { fetch, sent, query: () => sent.map((request) => new URL(request.url).search) };
}

/** Never answers; rejects when the request is aborted, as fetch does. */
const hold = (request: Request) =>
  new Promise<Response>((_, reject) => request.signal.addEventListener('abort', () => reject(request.signal.reason), { once: true }));

const baseUrl = 'https://clients-api.test';
const token = 'hsk_test_x';
const event = (id: string) => ({
  id,
  type: 'client.deleted',
  env: 'test',
  createdAt: '2026-12-01T10:00:00.000Z',
  data: { object: { id } },
});

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const item of items) all.push(item);
  return all;
}

describe('paginate', () => {
  it('follows nextCursor as cursor until it is null, keeping the other parameters', async () => {
    const server = scripted([
      () => json(200, { data: [{ id: 'a' }, { id: 'b' }], nextCursor: 'c1' }),
      () => json(200, { data: [{ id: 'c' }], nextCursor: 'c2' }),
      () => json(200, { data: [], nextCursor: null }),
    ]);
    const api = createClientsApi({ baseUrl, token, fetch: server.fetch });
    const ids = (await collect(api.paginate('/clients', { params: { query: { limit: 2, q: 'glo' } } }))).map((c) => c.id);
    expect(ids).toEqual(['a', 'b', 'c']);
    expect(server.query()).toEqual(['?limit=2&q=glo', '?limit=2&q=glo&cursor=c1', '?limit=2&q=glo&cursor=c2']);
  });

  it('walks the feed with `after`, from a kept cursor, until hasMore is false (its cursor never runs out)', async () => {
    const server = scripted([
      () => json(200, { data: [event('e1')], nextCursor: 'f1', hasMore: true }),
      () => json(200, { data: [event('e2')], nextCursor: 'f2', hasMore: false }),
    ]);
    const api = createClientsApi({ baseUrl, token, fetch: server.fetch });
    const ids = (await collect(api.paginate('/events', { params: { query: { after: 'kept', limit: 1 } } }))).map((e) => e.id);
    expect(ids).toEqual(['e1', 'e2']);
    expect(server.query()).toEqual(['?after=kept&limit=1', '?after=f1&limit=1']);
  });

  it('stops on an empty page whose cursor did not move, rather than asking for it forever', async () => {
    const server = scripted([() => json(200, { data: [], nextCursor: 'same', hasMore: true })]);
    const api = createClientsApi({ baseUrl, token, fetch: server.fetch });
    expect(await collect(api.paginate('/events', { params: { query: { after: 'same' } } }))).toEqual([]);
    expect(server.sent).toHaveLength(1);
  });

  it("keeps a list's path parameters on every page", async () => {
    const server = scripted([
      () => json(200, { data: [{ id: 'd1' }], nextCursor: 'n' }),
      () => json(200, { data: [{ id: 'd2' }], nextCursor: null }),
    ]);
    const api = createClientsApi({ baseUrl, token, fetch: server.fetch });
    await collect(api.paginate('/webhook-endpoints/{id}/deliveries', { params: { path: { id: 'ep1' } } }));
    expect(server.sent.map((request) => new URL(request.url).pathname + new URL(request.url).search)).toEqual([
      '/webhook-endpoints/ep1/deliveries',
      '/webhook-endpoints/ep1/deliveries?cursor=n',
    ]);
  });

  it('retries a page as any GET, and throws a ClientsApiError for a page that stays an error, without throwOnError', async () => {
    const server = scripted([
      () => json(200, { data: [{ id: 'a' }], nextCursor: 'n' }),
      () => json(503, { error: { code: 'service_unavailable', message: 'later' } }),
      () => json(200, { data: [{ id: 'b' }], nextCursor: 'm' }),
      () => json(400, { error: { code: 'validation_failed', message: 'bad cursor', fields: { cursor: 'is not one of ours' } } }),
    ]);
    const api = createClientsApi({ baseUrl, token, fetch: server.fetch, retry: { maxAttempts: 2, sleep: async () => {} } });
    const seen: string[] = [];
    const walk = async () => {
      for await (const client of api.paginate('/clients')) seen.push(client.id);
    };
    await expect(walk()).rejects.toMatchObject({
      name: 'ClientsApiError',
      status: 400,
      code: 'validation_failed',
      fields: { cursor: 'is not one of ours' },
    });
    expect(seen).toEqual(['a', 'b']);
    expect(server.sent).toHaveLength(4);
  });

  it('stops the walk when its signal aborts', async () => {
    const controller = new AbortController();
    const server = scripted([() => json(200, { data: [{ id: 'a' }, { id: 'b' }], nextCursor: 'n' })]);
    const api = createClientsApi({ baseUrl, token, fetch: server.fetch });
    const seen: string[] = [];
    const walk = async () => {
      for await (const client of api.paginate('/clients', { signal: controller.signal })) {
        seen.push(client.id);
        controller.abort();
      }
    };
    await expect(walk()).rejects.toMatchObject({ name: 'AbortError' });
    expect(seen).toEqual(['a', 'b']);
    expect(server.sent).toHaveLength(1);
  });
});

describe('timeoutMs and signal', () => {
  it('aborts a held call at timeoutMs with a TimeoutError, not retried', async () => {
    const server = scripted([hold, hold]);
    const api = createClientsApi({ baseUrl, token, fetch: server.fetch });
    const started = Date.now();
    await expect(api.GET('/clients', { timeoutMs: 150 })).rejects.toMatchObject({
      name: 'TimeoutError',
      message: 'GET /clients timed out after 150 ms',
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    expect(server.sent).toHaveLength(1);
  });

  it("aborts an attempt after a garbage collection too (a cloned request's signal alone would be lost by one in Node 20)", async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const server = scripted([
      (request) => {
        gc();
        return hold(request);
      },
    ]);
    const api = createClientsApi({ baseUrl, token, fetch: server.fetch });
    const answer = api.GET('/clients', { timeoutMs: 200 });
    setTimeout(gc, 50);
    await expect(answer).rejects.toMatchObject({ name: 'TimeoutError' });
  });

  it('bounds the retries and their waits: no retry whose wait would end after the timeout; the last answer stands', async () => {
    const server = scripted(Array.from({ length: 10 }, () => () => json(503, { error: { code: 'service_unavailable', message: 'down' } })));
    const api = createClientsApi({
      baseUrl,
      token,
      fetch: server.fetch,
      retry: { maxAttempts: 10, baseDelayMs: 400, maxDelayMs: 400, random: () => 1 },
    });
    const started = Date.now();
    const answer = await api.GET('/clients', { timeoutMs: 1_000 });
    const elapsed = Date.now() - started;
    expect(answer.response.status).toBe(503);
    expect(answer.error?.error.code).toBe('service_unavailable');
    // Attempts at about 0, 400 and 800 ms (timers run late on a busy machine); the next wait would end after 1 s.
    expect(server.sent.length).toBeGreaterThanOrEqual(2);
    expect(server.sent.length).toBeLessThanOrEqual(3);
    expect(elapsed).toBeLessThan(1_000);
  });

  it("does not wait out a Retry-After longer than what is left, and the client's timeoutMs is each call's default", async () => {
    const server = scripted([() => json(429, { error: { code: 'rate_limited', message: 'slow down' } }, { 'Retry-After': '30' })]);
    const api = createClientsApi({ baseUrl, token, fetch: server.fetch, timeoutMs: 5_000 });
    const started = Date.now();
    const answer = await api.GET('/clients');
    expect(answer.response.status).toBe(429);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(server.sent).toHaveLength(1);
  });

  it('stops at once on its signal, during an attempt or a wait, and retries nothing', async () => {
    const during = scripted([hold, hold]);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const api = createClientsApi({ baseUrl, token, fetch: during.fetch });
    await expect(api.GET('/clients', { signal: controller.signal, timeoutMs: 10_000 })).rejects.toMatchObject({ name: 'AbortError' });
    expect(during.sent).toHaveLength(1);

    const waiting = scripted([() => json(503, { error: { code: 'service_unavailable', message: 'down' } }, { 'Retry-After': '20' })]);
    const later = new AbortController();
    setTimeout(() => later.abort(new Error('shutting down')), 50);
    const started = Date.now();
    const patient = createClientsApi({ baseUrl, token, fetch: waiting.fetch, retry: { maxElapsedMs: 60_000 } });
    await expect(patient.GET('/clients', { signal: later.signal })).rejects.toThrow('shutting down');
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(waiting.sent).toHaveLength(1);
  });
});

describe('throwOnError', () => {
  it('resolves to the data, and throws a ClientsApiError with the envelope, X-Request-Id and Retry-After', async () => {
    const server = scripted([
      () => json(201, { data: { id: 'c1', name: 'Globex' } }),
      () =>
        json(
          402,
          { error: { code: 'plan_limit_reached', message: 'upgrade', requiredPlan: 'pro', feature: 'clients.max' } },
          { 'X-Request-Id': 'req-1', 'Retry-After': '7' },
        ),
    ]);
    const api = createClientsApi({ baseUrl, token, fetch: server.fetch, throwOnError: true, retry: false });
    const created = await api.POST('/clients', { body: { name: 'Globex' } });
    expect(created.data.id).toBe('c1');
    const error = await api.POST('/clients', { body: { name: 'Initech' } }).catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(ClientsApiError);
    expect(error).toBeInstanceOf(Error);
    expect(error).toMatchObject({
      name: 'ClientsApiError',
      status: 402,
      code: 'plan_limit_reached',
      message: 'upgrade',
      requiredPlan: 'pro',
      feature: 'clients.max',
      fields: undefined,
      requestId: 'req-1',
      retryAfter: 7,
    });
  });

  it('per call, either way; an answer that is not the envelope is unexpected_response; Retry-After as a date', async () => {
    const at = new Date(Date.now() + 60_000).toUTCString();
    const server = scripted([
      () => new Response('<html>Bad gateway</html>', { status: 502, statusText: 'Bad Gateway', headers: { 'Retry-After': at } }),
      () => json(404, { error: { code: 'not_found', message: 'no such client' } }),
    ]);
    const api = createClientsApi({ baseUrl, token, fetch: server.fetch, retry: false });
    const error = await api.GET('/clients', { throwOnError: true }).catch((thrown: unknown) => thrown);
    expect(error).toMatchObject({
      status: 502,
      code: 'unexpected_response',
      body: undefined,
      message: "502 Bad Gateway without the API's error envelope",
    });
    expect((error as ClientsApiError).retryAfter).toBeGreaterThanOrEqual(58);
    expect((error as ClientsApiError).retryAfter).toBeLessThanOrEqual(60);

    const strict = createClientsApi({ baseUrl, token, fetch: server.fetch, retry: false, throwOnError: true });
    const answer = await strict.GET('/clients/{id}', { params: { path: { id: 'x' } }, throwOnError: false });
    expect(answer.error?.error.code).toBe('not_found');
    expect(answer.response.status).toBe(404);
  });
});
