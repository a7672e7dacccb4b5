/** Logs carry the request id of every line of a request, and never the Authorization header nor a webhook secret. */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ephemeralWebhookSettings } from '../../server/webhook-delivery/settings.js';
import { startWebhookWorker } from '../../server/webhook-delivery/worker.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { startReceiver, waitFor } from '../support/webhook-worker-fixtures.js';

const lines: Record<string, unknown>[] = [];
let server: TestServer;

beforeAll(async () => {
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  server = await startTestServer({ logger: pino({ level: 'info' }, sink) });
});
afterAll(() => server?.close());

it('logs each request with its id and without the token', async () => {
  const { api, token } = await server.tenant();
  const { response } = await api.POST('/clients', { body: { name: 'Logged' }, headers: { 'X-Request-Id': 'trace-me-123' } });
  expect(response.headers.get('X-Request-Id')).toBe('trace-me-123');
  const text = JSON.stringify(lines);
  expect(text).toContain('trace-me-123');
  expect(text).not.toContain(token.token);
  expect(text).not.toContain(token.token.split('_')[3]);
  expect(text.toLowerCase()).not.toContain('authorization');
});

it('makes up a request id when the caller sends none or a bad one', async () => {
  const { api } = await server.tenant();
  const a = await api.POST('/clients', { body: { name: 'A' } });
  const b = await api.POST('/clients', { body: { name: 'B' }, headers: { 'X-Request-Id': 'bad id with spaces' } });
  const idA = a.response.headers.get('X-Request-Id');
  const idB = b.response.headers.get('X-Request-Id');
  expect(idA).toMatch(/^[0-9a-f-]{36}$/);
  expect(idB).toMatch(/^[0-9a-f-]{36}$/);
  expect(idA).not.toBe(idB);
  expect(lines.some((l) => (l.req as { id?: string } | undefined)?.id === idB)).toBe(true);
});

it('logs a 500 with its cause and request id, while the body says nothing', async () => {
  const failing = await startTestServer({
    logger: pino(
      { level: 'info' },
      new Writable({
        write: (c, _e, d) => {
          lines.push(
            ...String(c)
              .split('\n')
              .filter(Boolean)
              .map((l) => JSON.parse(l)),
          );
          d();
        },
      }),
    ),
    handlers: {
      createClient: async () => {
        throw new Error('disk on fire');
      },
    },
  });
  try {
    const { api } = await failing.tenant();
    const { response } = await api.POST('/clients', { body: { name: 'X' } });
    const id = response.headers.get('X-Request-Id');
    const entry = lines.find((l) => (l.req as { id?: string } | undefined)?.id === id && l.level === 50);
    expect(JSON.stringify(entry)).toContain('disk on fire');
  } finally {
    await failing.close();
  }
});

it('logs the probes (/healthz, /readyz) below info, so that a load balancer polling them fills no log', async () => {
  const ids: (string | null)[] = [];
  for (const path of ['/healthz', '/readyz']) {
    const response = await fetch(`${server.serverUrl}${path}`);
    expect(response.status).toBe(200);
    ids.push(response.headers.get('X-Request-Id'));
  }
  const { api } = await server.tenant();
  const listed = await api.GET('/clients');
  const idOf = (line: Record<string, unknown>) => (line.req as { id?: string } | undefined)?.id;
  // A line is written once its answer is done: the later request's line comes after the probes'.
  await expect
    .poll(() => lines.some((line) => idOf(line) === listed.response.headers.get('X-Request-Id') && line.msg === 'request completed'))
    .toBe(true);
  expect(lines.filter((line) => ids.includes(idOf(line) ?? null))).toEqual([]);
});

it('never logs a webhook signing secret: not on creation, rotation, nor delivery, even at trace level', async () => {
  const traced: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      traced.push(String(chunk));
      done();
    },
  });
  const logger = pino({ level: 'trace' }, sink);
  const settings = ephemeralWebhookSettings({ allowPrivateNetworks: true });
  const verbose = await startTestServer({ logger, webhooks: settings }, { database: server.database });
  const receiver = await startReceiver();
  try {
    const { api } = await verbose.tenant({ plan: 'pro' });
    const created = await api.POST('/webhook-endpoints', { body: { url: receiver.url, enabledEvents: ['*'] } });
    const id = created.data!.data.id;
    const rotated = await api.POST('/webhook-endpoints/{id}/rotate-secret', { params: { path: { id } } });
    await api.POST('/clients', { body: { name: 'Delivered' } });
    const worker = startWebhookWorker({ db: verbose.database.db, settings, logger, pollIntervalMs: 10, timeoutMs: 5000, loop: false });
    await waitFor(async () => {
      await worker.tick();
      return receiver.requests.length > 0;
    }, 'a delivery');
    await worker.stop();

    const text = traced.join('');
    expect(text.length).toBeGreaterThan(0);
    for (const secret of [created.data!.secret!, rotated.data!.secret!]) {
      expect(text).not.toContain(secret);
      expect(text).not.toContain(secret.slice('whsec_'.length, 'whsec_'.length + 16));
    }
  } finally {
    await receiver.close();
    await verbose.close();
  }
});

it('logs the path, the operation and the query’s parameter names, never their values (search text, e-mail addresses, cursors), even at trace level', async () => {
  const traced: Record<string, unknown>[] = [];
  const logger = pino(
    { level: 'trace' },
    new Writable({
      write(chunk, _encoding, done) {
        for (const line of String(chunk).split('\n').filter(Boolean)) traced.push(JSON.parse(line));
        done();
      },
    }),
  );
  const email = 'jane.doe@example.com';
  // A second server on the same database whose listClients fails after logging through the
  // request's own logger, as the error handler does: its child lines must say no more.
  const verbose = await startTestServer({ logger }, { database: server.database });
  const failing = await startTestServer(
    {
      logger,
      handlers: {
        listClients: async ({ log }) => {
          log.trace('listing clients');
          throw new Error('the list broke');
        },
      },
    },
    { database: server.database },
  );
  try {
    const { api, token } = await verbose.tenant();
    for (const name of ['Jane', 'Jane again']) await api.POST('/clients', { body: { name, email } });
    const first = await api.GET('/clients', { params: { query: { q: email, limit: 1 } } });
    const cursor = first.data!.nextCursor!;
    expect(cursor).toBeTruthy();
    const second = await api.GET('/clients', { params: { query: { q: email, limit: 1, cursor } } });
    expect(second.data!.data).toHaveLength(1);
    // Refused ones too: a bad value, and a parameter named by what could be anyone's data.
    const headers = { Authorization: `Bearer ${token.token}` };
    expect((await fetch(`${verbose.serverUrl}/clients?limit=${encodeURIComponent(email)}`, { headers })).status).toBe(400);
    expect((await fetch(`${verbose.serverUrl}/clients?${encodeURIComponent(email)}=1`, { headers })).status).toBe(400);
    expect((await fetch(`${failing.serverUrl}/clients?q=${encodeURIComponent(email)}&cursor=${cursor}`, { headers })).status).toBe(500);

    const text = JSON.stringify(traced);
    for (const secret of [email, encodeURIComponent(email), cursor, encodeURIComponent(cursor), 'jane.doe']) {
      expect(text).not.toContain(secret);
    }
    const lines = traced.filter((line) => (line.req as { operationId?: string } | undefined)?.operationId === 'listClients');
    const requests = lines.map((line) => line.req);
    expect(requests).toContainEqual(expect.objectContaining({ method: 'GET', path: '/clients', query: ['q', 'limit', 'cursor'] }));
    expect(requests).toContainEqual(expect.objectContaining({ path: '/clients', query: ['limit'] }));
    expect(requests).toContainEqual(expect.objectContaining({ path: '/clients', query: ['?'] }));
    // The failing server's own lines: the handler's, the error handler's and the request line.
    const failed = lines.filter((line) => (line.req as { query?: string[] }).query?.join() === 'q,cursor');
    expect(failed.map((line) => line.msg)).toEqual(expect.arrayContaining(['listing clients', 'request failed', 'request errored']));
    for (const line of lines) expect(Object.keys(line.req as object).sort()).toEqual(['id', 'method', 'operationId', 'path', 'query']);
  } finally {
    await failing.close();
    await verbose.close();
  }
});
