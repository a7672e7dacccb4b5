/**
 * What `npm start` runs is the bundle `npm run build` makes (scripts/bundle-server.ts), not the
 * sources the other tests load through tsx: bundling can break a package that looks at its own
 * files or class names. This bundles it and drives it over HTTP through the typed client: on
 * PostgreSQL when TEST_DATABASE_URL is set (prepared statements, rate limits counted in the
 * database), on the embedded database otherwise, without NODE_ENV as `npm start` runs it (so in
 * production mode). Last, it drains it with SIGTERM under keep-alive load
 * (server/lifecycle/shutdown.ts).
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createClientsApi } from '../../client/index.js';
import { mintTokenForOrganisation } from '../../server/tokens/tokens.service.js';
import { createTestDatabase, usingPostgres, type TestDatabase } from '../support/database.js';
import { root, runCli, startServerProcess, type RunningServer } from '../support/processes.js';

let server: RunningServer | undefined;
let database: TestDatabase | undefined;
let dataDir: string | undefined;
let token: string;

beforeAll(async () => {
  // The bundle alone (the rest of `npm run build` is tsc, which the tests do not need).
  await promisify(execFile)(join(root, 'node_modules/.bin/tsx'), ['scripts/bundle-server.ts'], { cwd: root });
  mkdirSync(join(root, 'dist/generated'), { recursive: true });
  copyFileSync(join(root, 'generated/docs.html'), join(root, 'dist/generated/docs.html'));
  let env: Record<string, string>;
  if (usingPostgres) {
    database = await createTestDatabase();
    token = (await mintTokenForOrganisation(database.db, { orgName: 'Built', plan: 'studio' })).token;
    env = { DATABASE_URL: database.url! };
  } else {
    // The webhook key is made beside the data directory: both in one folder, removed after.
    dataDir = mkdtempSync(join(tmpdir(), 'clients-api-built-'));
    env = { DATA_DIR: join(dataDir, 'data'), DATABASE_URL: '' };
    const minted = await runCli(['token', 'create', '--org', 'Built', '--plan', 'studio', '--json'], env);
    token = JSON.parse(minted.stdout.trim().split('\n').at(-1)!).token;
  }
  // A second of SHUTDOWN_DELAY, as a load balancer needs: see the last test. Its 16 writers are one
  // organisation: no concurrency limit. Without NODE_ENV (the tests' own is `test`), as `npm start` runs it.
  server = await startServerProcess(
    {
      ...env,
      NODE_ENV: undefined,
      RATE_LIMIT: '100000',
      CONCURRENCY_LIMIT: '0',
      SHUTDOWN_DELAY: '2',
      SHUTDOWN_TIMEOUT: '30',
      METRICS_PORT: '0',
    },
    ['node', 'dist/server/main.js'],
  );
}, 180_000);

afterAll(async () => {
  await server?.stop();
  await database?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

it('creates, replays, reads and lists, with rate-limit fields, as the sources do', { timeout: 60_000 }, async () => {
  const api = createClientsApi({ baseUrl: server!.url, token, retry: false });
  const key = randomUUID();
  const created = await api.POST('/clients', { body: { name: 'Bundled', defaultRate: '120.50' }, headers: { 'Idempotency-Key': key } });
  expect(created.response.status).toBe(201);
  expect(created.data!.data).toMatchObject({ name: 'Bundled', defaultRate: '120.50' });
  expect(created.response.headers.get('RateLimit-Policy')).toBe('"tenant";q=100000;w=60');
  expect(created.response.headers.get('X-Request-Id')).toMatch(/^[0-9a-f-]{36}$/);

  const replay = await api.POST('/clients', { body: { name: 'Bundled', defaultRate: '120.50' }, headers: { 'Idempotency-Key': key } });
  expect(replay.response.headers.get('Idempotent-Replayed')).toBe('true');
  expect(replay.data).toEqual(created.data);

  expect(created.response.headers.get('Content-Type')).toBe('application/json; charset=utf-8');

  // Byte for byte: the replay sends the text the first answer sent.
  const raw = () =>
    fetch(`${server!.url}/clients`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', 'Idempotency-Key': rawKey },
      body: '{"name":"Raw","defaultRate":0.10}',
    });
  const rawKey = randomUUID();
  const [first, again] = [await raw(), await raw()];
  expect(first.status).toBe(201);
  expect(again.headers.get('Idempotent-Replayed')).toBe('true');
  const firstText = await first.text();
  expect(await again.text()).toBe(firstText);
  expect(JSON.parse(firstText).data.defaultRate).toBe('0.10');
  expect(Number(first.headers.get('Content-Length'))).toBe(Buffer.byteLength(firstText));

  const id = created.data!.data.id;
  const read = await api.GET('/clients/{id}', { params: { path: { id } } });
  expect(read.response.status).toBe(200);
  expect(read.data!.data).toEqual(created.data!.data);
  expect(read.response.headers.get('ETag')).toBe(created.response.headers.get('ETag'));

  const page = await api.GET('/clients');
  expect(page.data!.data.map((c) => c.id)).toContain(id);

  const invalid = await api.POST('/clients', { body: { name: '' } as never });
  expect(invalid.response.status).toBe(400);
  expect(invalid.error).toMatchObject({ error: { code: 'validation_failed', fields: { name: expect.any(String) } } });

  const docs = await fetch(`${server!.url}/docs`);
  expect(docs.status).toBe(200);
  expect(await docs.text()).toContain('<html');
});

it('runs in production mode unless told otherwise, and answers the stack-page probe in the envelope', async () => {
  expect(server!.stdout()).toMatch(/"nodeEnv":"production".*"msg":"listening"/);
  const probe = await fetch(`${server!.url}/healthz?%25=1`);
  const text = await probe.text();
  expect(text).not.toMatch(/<!DOCTYPE|<html|<pre|\n\s+at /i);
  expect(probe.headers.get('Content-Type')).toBe('application/json; charset=utf-8');
  expect(probe.headers.get('X-Request-Id')).toMatch(/^[0-9a-f-]{36}$/);
  expect({ status: probe.status, body: JSON.parse(text) }).toEqual({
    status: 400,
    body: { error: { code: 'validation_failed', message: expect.any(String), fields: { '%': expect.any(String) } } },
  });
});

it('serves metrics on METRICS_PORT only, with the histogram per operation and the pools', async () => {
  const port = /"metricsPort":(\d+)/.exec(server!.stdout())?.[1];
  expect(port).toBeDefined();
  const scrape = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  expect(scrape).toMatch(
    /^http_server_request_duration_seconds_count\{operation="createClient",http_request_method="POST",http_response_status_code="201"\} [1-9]/m,
  );
  expect(scrape).toMatch(
    /^http_server_request_duration_seconds_count\{operation="getClient",http_request_method="GET",http_response_status_code="200"\} [1-9]/m,
  );
  if (usingPostgres) expect(scrape).toMatch(/^db_pool_connections\{pool="main"\} [1-9]/m);
  // Never on the API's port.
  const api = await fetch(`${server!.url}/metrics`);
  expect(api.status).toBe(404);
  expect(await api.text()).not.toContain('http_server_request_duration_seconds');
});

interface Sent {
  /** performance.now() when the request was handed to Node. */
  at: number;
  status?: number;
  connection?: string;
  complete?: boolean;
  error?: string;
}

/** One POST /clients over `agent`; resolves once it is answered in full, or failed. */
function create(agent: http.Agent, url: URL, body: string): Promise<Sent> {
  const sent: Sent = { at: performance.now() };
  return new Promise((done) => {
    const request = http.request(
      {
        agent,
        host: url.hostname,
        port: url.port,
        path: '/clients',
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', 'Idempotency-Key': randomUUID() },
      },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk) => (text += chunk));
        response.on('end', () => {
          let complete = false;
          try {
            complete = typeof JSON.parse(text).data.id === 'string';
          } catch {
            complete = false;
          }
          done({ ...sent, status: response.statusCode, connection: response.headers.connection, complete });
        });
        response.on('error', (error) =>
          done({ ...sent, status: response.statusCode, error: (error as NodeJS.ErrnoException).code ?? error.message }),
        );
      },
    );
    request.on('error', (error) => done({ ...sent, error: (error as NodeJS.ErrnoException).code ?? error.message }));
    request.end(body);
  });
}

it('drains on SIGTERM under keep-alive load: every request sent before it is answered in full; exit 0', { timeout: 120_000 }, async () => {
  const url = new URL(server!.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const results: Sent[] = [];
  let answered = 0;
  // 16 clients, each sending its next request as soon as the last is answered, on its kept-alive
  // connection, until the server refuses a new connection.
  const worker = async (n: number) => {
    for (let i = 0; ; i++) {
      const result = await create(agent, url, JSON.stringify({ name: `drain-${n}-${i}` }));
      results.push(result);
      if (result.complete) answered++;
      if (result.error) return;
    }
  };
  const workers = Array.from({ length: 16 }, (_, n) => worker(n));
  while (answered < 100) await new Promise((resolve) => setTimeout(resolve, 20));

  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    server!.child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const signalledAt = performance.now();
  server!.child.kill('SIGTERM');
  // Readiness turns 503 as soon as the process has the signal, while everything else is still
  // served during SHUTDOWN_DELAY.
  let ready = await fetch(`${server!.url}/readyz`);
  while (ready.status === 200) ready = await fetch(`${server!.url}/readyz`);
  expect(ready.status).toBe(503);
  expect(await ready.json()).toMatchObject({ error: { code: 'service_unavailable' } });
  expect((await fetch(`${server!.url}/healthz`)).status).toBe(200);

  await Promise.all(workers);
  agent.destroy();
  expect(await exited).toEqual({ code: 0, signal: null });

  const before = results.filter((r) => r.at < signalledAt);
  expect(before.length).toBeGreaterThanOrEqual(100);
  expect(before.filter((r) => !(r.status === 201 && r.complete))).toEqual([]);
  // After the signal: answered in full (the last ones on each connection with Connection: close),
  // or refused as new connections once the server stopped accepting. A request cut after the
  // server read it would be an answer begun and not finished: none.
  const after = results.filter((r) => r.at >= signalledAt);
  expect(after.filter((r) => r.status !== undefined && !(r.status === 201 && r.complete))).toEqual([]);
  expect(after.some((r) => r.complete && r.connection === 'close')).toBe(true);
  expect(after.filter((r) => r.error).every((r) => r.error === 'ECONNREFUSED' || r.error === 'ECONNRESET')).toBe(true);
  expect(server!.stdout()).toMatch(/"msg":"stopped"/);
});
