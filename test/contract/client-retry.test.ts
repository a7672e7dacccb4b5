/**
 * The published client's idempotency keys and retrying fetch, against the real server with faults
 * injected in the transport: one logical call creates exactly one client, whatever is lost.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { retryingFetch, type Fetch } from '../../client/index.js';
import { startTestServer, type TestServer } from '../support/server.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.close());

const noWait = { baseDelayMs: 1, maxDelayMs: 5, sleep: async () => {} };

async function rows(orgId: string): Promise<number> {
  return (await server.database.db.selectFrom('clients').select('id').where('org_id', '=', orgId).execute()).length;
}

/** A transport that fails on some attempts, in the ways networks fail. */
function faultyTransport(plan: ('ok' | 'refused' | 'lost' | '503')[]) {
  const seen: { key: string | null }[] = [];
  const transport: Fetch = async (request) => {
    seen.push({ key: request.headers.get('Idempotency-Key') });
    const fault = plan.shift() ?? 'ok';
    if (fault === 'refused') throw new TypeError('fetch failed: connection refused');
    if (fault === '503') return new Response('{"error":{"code":"internal_error","message":"upstream"}}', { status: 503 });
    const response = await fetch(request);
    if (fault === 'lost') {
      await response.arrayBuffer();
      throw new TypeError('fetch failed: socket hang up after the request was sent');
    }
    return response;
  };
  return { transport, seen };
}

describe('retries against the real server', () => {
  it.each([[['refused']], [['lost']], [['lost', 'lost', 'refused']], [['503', 'lost']]] as const)(
    'faults %j: one client, and the answer is the 201',
    async (faults) => {
      const { token } = await server.tenant({ plan: 'studio' });
      const { transport, seen } = faultyTransport([...faults]);
      // The test server's client checks every response against the spec; the synthetic 503 is not ours.
      const api = server.client(token.token, { fetch: retryingFetch(transport, noWait), retry: false });
      const { data, response } = await api.POST('/clients', { body: { name: 'Retried' } });
      expect(response.status).toBe(201);
      expect(data!.data.name).toBe('Retried');
      expect(seen).toHaveLength(faults.length + 1);
      expect(new Set(seen.map((s) => s.key)).size).toBe(1);
      expect(seen[0]!.key).toMatch(/^[0-9a-f-]{36}$/);
      expect(await rows(token.orgId)).toBe(1);
    },
  );

  it('twenty logical calls through a transport that loses a third of everything: twenty clients', async () => {
    const { token } = await server.tenant({ plan: 'studio' });
    let n = 0;
    const plan = () => (['ok', 'lost', 'ok', 'refused', 'ok', 'lost'] as const)[n++ % 6]!;
    const transport: Fetch = async (request) => faultyTransport([plan()]).transport(request);
    const api = server.client(token.token, { fetch: retryingFetch(transport, { ...noWait, maxAttempts: 6 }), retry: false });
    for (let i = 0; i < 20; i++) expect((await api.POST('/clients', { body: { name: `Call ${i}` } })).response.status).toBe(201);
    expect(await rows(token.orgId)).toBe(20);
  });

  it('keeps a key the caller set', async () => {
    const { token } = await server.tenant();
    const { transport, seen } = faultyTransport(['lost']);
    const api = server.client(token.token, { fetch: retryingFetch(transport, noWait) });
    const key = '01JDQ3W4J6Y5Z8K2N7P9R1T3V6';
    await api.POST('/clients', { body: { name: 'Mine' }, headers: { 'Idempotency-Key': key } });
    expect(seen.map((s) => s.key)).toEqual([key, key]);
  });
});

describe('what is retried, and for how long', () => {
  const reply = (status: number, headers: Record<string, string> = {}) => new Response('{}', { status, headers });
  function scripted(statuses: (number | Error | [number, Record<string, string>])[]) {
    const calls: Request[] = [];
    const fetch: Fetch = async (request) => {
      calls.push(request);
      const next = statuses.shift() ?? 200;
      if (next instanceof Error) throw next;
      return Array.isArray(next) ? reply(next[0], next[1]) : reply(next);
    };
    return { fetch, calls };
  }
  const post = (key = true) =>
    new Request('http://api.test/clients', { method: 'POST', body: '{}', headers: key ? { 'Idempotency-Key': crypto.randomUUID() } : {} });

  it('honours Retry-After on 429 and on 409 in progress', async () => {
    const waits: number[] = [];
    const { fetch, calls } = scripted([[429, { 'Retry-After': '2' }], [409, { 'Retry-After': '1' }], 201]);
    const response = await retryingFetch(fetch, { sleep: async (ms) => void waits.push(ms), maxElapsedMs: 60_000 })(post());
    expect(response.status).toBe(201);
    expect(calls).toHaveLength(3);
    expect(waits).toEqual([2000, 1000]);
  });

  it('backs off exponentially with full jitter, bounded by maxDelayMs', async () => {
    const waits: number[] = [];
    const { fetch } = scripted([500, 502, 503, 504, 200]);
    await retryingFetch(fetch, {
      maxAttempts: 5,
      baseDelayMs: 100,
      maxDelayMs: 300,
      random: () => 0.5,
      sleep: async (ms) => void waits.push(ms),
    })(post());
    expect(waits).toEqual([50, 100, 150, 150]);
  });

  it('gives up after maxAttempts with the last response, or the last network error', async () => {
    const a = scripted([503, 503, 503, 503, 503]);
    expect((await retryingFetch(a.fetch, { ...noWait, maxAttempts: 3 })(post())).status).toBe(503);
    expect(a.calls).toHaveLength(3);
    const b = scripted([new TypeError('down'), new TypeError('still down')]);
    await expect(retryingFetch(b.fetch, { ...noWait, maxAttempts: 2 })(post())).rejects.toThrow('still down');
  });

  it('does not wait past maxElapsedMs', async () => {
    const { fetch, calls } = scripted([[429, { 'Retry-After': '120' }], 201]);
    const response = await retryingFetch(fetch, { ...noWait, maxElapsedMs: 30_000 })(post());
    expect(response.status).toBe(429);
    expect(calls).toHaveLength(1);
  });

  it('never repeats a POST without an Idempotency-Key after a 5xx or a lost connection, nor a 409 without Retry-After', async () => {
    const a = scripted([503]);
    expect((await retryingFetch(a.fetch, noWait)(post(false))).status).toBe(503);
    expect(a.calls).toHaveLength(1);
    const b = scripted([new TypeError('lost')]);
    await expect(retryingFetch(b.fetch, noWait)(post(false))).rejects.toThrow('lost');
    expect(b.calls).toHaveLength(1);
    const c = scripted([409]);
    expect((await retryingFetch(c.fetch, noWait)(post())).status).toBe(409);
    expect(c.calls).toHaveLength(1);
  });

  it('retries a GET after a network error, and never a 4xx', async () => {
    const a = scripted([new TypeError('reset'), 200]);
    expect((await retryingFetch(a.fetch, noWait)(new Request('http://api.test/clients'))).status).toBe(200);
    const b = scripted([400, 200]);
    expect((await retryingFetch(b.fetch, noWait)(post())).status).toBe(400);
    expect(b.calls).toHaveLength(1);
  });
});
