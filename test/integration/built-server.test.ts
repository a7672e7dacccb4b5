/**
 * What `npm start` runs is the bundle `npm run build` makes (scripts/bundle-server.ts), not the
 * sources the other tests load through tsx: bundling can break a package that looks at its own
 * files or class names. This bundles it and drives it over HTTP through the typed client: on
 * PostgreSQL when TEST_DATABASE_URL is set (prepared statements, rate limits counted in the
 * database), on the embedded database otherwise, without NODE_ENV as `npm start` runs it (so in
 * production mode). Last, it drains it under keep-alive load (server/lifecycle/drain.ts), signalled
 * as an operator does: SIGTERM to the node process alone, then to the process group of
 * `npm start` (npm and node) as systemd does; between and after them, the next server on the same
 * database finds every acknowledged client once.
 */
import { type ChildProcess, execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createClientsApi } from '../../client/index.js';
import { openDatabase } from '../../server/db/database.js';
import type { DatabaseHandle } from '../../server/db/handle.js';
import { migrateOrThrow } from '../../server/db/migrate.js';
import { mintTokenForOrganisation } from '../../server/tokens/tokens.service.js';
import { createTestDatabase, usingPostgres, type TestDatabase } from '../support/database.js';
import { root, startServerProcess, type RunningServer } from '../support/processes.js';

const BUNDLE = ['node', 'dist/server/main.js'];
let server: RunningServer | undefined;
let database: TestDatabase | undefined;
let dataDir: string | undefined;
let env: Record<string, string | undefined>;
let token: string;
/** An organisation per drain, so that each finds its own clients and nothing else. */
const drainTokens = { node: '', group: '' };
const cleanups: (() => void)[] = [];

beforeAll(async () => {
  // The bundle alone (the rest of `npm run build` is tsc, which the tests do not need).
  await promisify(execFile)(join(root, 'node_modules/.bin/tsx'), ['scripts/bundle-server.ts'], { cwd: root });
  mkdirSync(join(root, 'dist/generated'), { recursive: true });
  copyFileSync(join(root, 'generated/docs.html'), join(root, 'dist/generated/docs.html'));
  // The tokens first, then the server: an embedded database has one process at a time.
  let handle: DatabaseHandle;
  if (usingPostgres) {
    handle = database = await createTestDatabase();
    env = { DATABASE_URL: database.url! };
  } else {
    // The webhook key is made beside the data directory: both in one folder, removed after.
    dataDir = mkdtempSync(join(tmpdir(), 'clients-api-built-'));
    env = { DATA_DIR: join(dataDir, 'data'), DATABASE_URL: '' };
    handle = await openDatabase({ dataDir: env.DATA_DIR });
    await migrateOrThrow(handle.db);
  }
  const mint = async (orgName: string) => (await mintTokenForOrganisation(handle.db, { orgName, plan: 'studio' })).token;
  token = await mint('Built');
  drainTokens.node = await mint('Drained node');
  drainTokens.group = await mint('Drained group');
  if (!usingPostgres) await handle.close();
  // Two seconds of SHUTDOWN_DELAY, as a load balancer needs: see the drains. Their 16 writers are
  // one organisation: no concurrency limit. Without NODE_ENV (the tests' own is `test`), as
  // `npm start` runs it; npm's own update check stays off.
  env = {
    ...env,
    NODE_ENV: undefined,
    RATE_LIMIT: '100000',
    CONCURRENCY_LIMIT: '0',
    SHUTDOWN_DELAY: '2',
    SHUTDOWN_TIMEOUT: '30',
    METRICS_PORT: '0',
    npm_config_update_notifier: 'false',
  };
  server = await startServerProcess(env, BUNDLE);
}, 180_000);

afterAll(async () => {
  await server?.stop();
  await database?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  for (const cleanup of cleanups) cleanup();
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
  // The bundle runs on the Node that runs the tests (CI's Node 24 run: test/unit/runtime.test.ts),
  // and prints no deprecation warning there: Node 24 warns of calls to url.parse (DEP0169) that
  // come from outside node_modules, as everything inside the bundle does (patches/README.md).
  expect(scrape).toContain(`nodejs_version_info{version="${process.version}"`);
  expect(server!.stderr()).not.toContain('DeprecationWarning');
  // Never on the API's port.
  const api = await fetch(`${server!.url}/metrics`);
  expect(api.status).toBe(404);
  expect(await api.text()).not.toContain('http_server_request_duration_seconds');
});

interface Creation {
  key: string;
  name: string;
  status?: number;
  id?: string;
  /** The answer's Connection header. */
  connection?: string | null;
  /** What made the request fail, when it failed: the cause's code (ECONNREFUSED, UND_ERR_SOCKET, ECONNRESET...). */
  error?: string;
}

const createClient = (url: string, token: string, creation: Creation) =>
  fetch(`${url}/clients`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', 'Idempotency-Key': creation.key },
    body: JSON.stringify({ name: creation.name }),
  });

/** The id of the client an answer carries, when it carries one. */
const idIn = async (response: Response) => ((await response.json()) as { data?: { id?: string } }).data?.id;

/**
 * 16 clients creating continuously, as real clients do: fetch (undici), whose pool keeps each
 * connection alive, honours `Keep-Alive: timeout` and `Connection: close`, and reuses a
 * connection as soon as its last answer is read. Each request has its own Idempotency-Key; each
 * client sends its next request as soon as the last is answered, until one fails.
 */
function keepCreating(url: string, token: string, label: string) {
  const creations: Creation[] = [];
  const clients = Array.from({ length: 16 }, async (_, n) => {
    for (let i = 0; ; i++) {
      const creation: Creation = { key: randomUUID(), name: `${label}-${n}-${i}` };
      creations.push(creation);
      try {
        const response = await createClient(url, token, creation);
        creation.status = response.status;
        creation.connection = response.headers.get('Connection');
        creation.id = await idIn(response);
      } catch (error) {
        const { code, cause } = error as { code?: string; cause?: { code?: string } };
        creation.error = cause?.code ?? code ?? String(error);
        return;
      }
    }
  });
  return {
    creations,
    acknowledged: () => creations.filter((creation) => creation.status === 201).length,
    done: Promise.all(clients),
  };
}

/**
 * What a drain under that load must show: every request was answered in full, 201 with its
 * client, whenever it was sent (before the signal, during SHUTDOWN_DELAY, or on a connection
 * still open after the listener closed), except those refused as new connections once the
 * listener had closed, which sent nothing. The answers after the listener closed, on connections
 * still open, said `Connection: close`.
 */
function expectNothingFailed(creations: Creation[]) {
  const failed = creations.filter((creation) => !(creation.status === 201 && creation.id) && creation.error !== 'ECONNREFUSED');
  expect(failed).toEqual([]);
  expect(creations.some((creation) => creation.status === 201 && creation.connection === 'close')).toBe(true);
}

/** Readiness turns 503 as soon as the process has the signal, while everything else is still served during SHUTDOWN_DELAY. */
async function expectReadinessDraining(url: string) {
  let ready = await fetch(`${url}/readyz`);
  while (ready.status === 200) ready = await fetch(`${url}/readyz`);
  expect(ready.status).toBe(503);
  expect(await ready.json()).toMatchObject({ error: { code: 'service_unavailable' } });
  expect((await fetch(`${url}/healthz`)).status).toBe(200);
}

/**
 * On the next server (the new version, on the same database): each refused creation sent again
 * with its key is created, once (a second retry is a replay of it); then the organisation holds
 * exactly the clients acknowledged or retried, each once, with the id its client was given.
 */
async function expectEachClientOnce(url: string, token: string, creations: Creation[]) {
  for (const creation of creations.filter((c) => c.error)) {
    const retried = await createClient(url, token, creation);
    expect(retried.status).toBe(201);
    expect(retried.headers.get('Idempotent-Replayed')).toBeNull();
    creation.id = await idIn(retried);
    const again = await createClient(url, token, creation);
    expect(again.headers.get('Idempotent-Replayed')).toBe('true');
    expect(await idIn(again)).toBe(creation.id);
  }
  const api = createClientsApi({ baseUrl: url, token, retry: false });
  const stored = new Map<string, string[]>();
  for (let cursor: string | undefined, page = 0; page === 0 || cursor; page++) {
    const { data } = await api.GET('/clients', { params: { query: { limit: 100, ...(cursor && { cursor }) } } });
    for (const client of data!.data) stored.set(client.name, [...(stored.get(client.name) ?? []), client.id]);
    cursor = data!.nextCursor ?? undefined;
  }
  expect(stored).toEqual(new Map(creations.map((creation) => [creation.name, [creation.id]])));
}

const exitOf = (child: ChildProcess) =>
  new Promise<{ code: number | null; signal: string | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

const until = async (condition: () => boolean) => {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 20));
};

it('drains on SIGTERM to the node process alone, under keep-alive load: no request fails but new connections refused once the listener closed; exit 0', {
  timeout: 120_000,
}, async () => {
  const load = keepCreating(server!.url, drainTokens.node, 'node');
  await until(() => load.acknowledged() >= 100);
  const exited = exitOf(server!.child);
  server!.child.kill('SIGTERM');
  await expectReadinessDraining(server!.url);
  await load.done;
  expect(await exited).toEqual({ code: 0, signal: null });
  expect(server!.stdout()).toMatch(/"msg":"stopped"/);
  expectNothingFailed(load.creations);

  server = await startServerProcess(env, BUNDLE);
  await expectEachClientOnce(server.url, drainTokens.node, load.creations);
});

it('drains on SIGTERM to the `npm start` process group (npm, node), as systemd stops a service: no request fails but new connections refused; node and npm exit 0', {
  timeout: 120_000,
}, async () => {
  await server?.stop();
  // The real start script, run by npm and sh as `npm start` runs it, in a package whose `build` is
  // already done (beforeAll bundled the server; the rest of the build is tsc, slow and not needed).
  const start = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
  const npmStart = await startServerProcess(env, ['npm', 'start', '--silent'], { cwd: npmPackage(start), detached: true });
  server = npmStart; // stopped after the tests should they fail before it exits
  const nodePid = Number(/"pid":(\d+)[^\n]*"msg":"listening"/.exec(npmStart.stdout())![1]);
  expect(nodePid).not.toBe(npmStart.child.pid);

  const load = keepCreating(npmStart.url, drainTokens.group, 'group');
  await until(() => load.acknowledged() >= 100);
  const exited = exitOf(npmStart.child);
  process.kill(-npmStart.child.pid!, 'SIGTERM');
  await expectReadinessDraining(npmStart.url);
  await load.done;
  // npm waited for node, and says what node said; node is gone, not left behind still draining.
  expect(await exited).toEqual({ code: 0, signal: null });
  expect(() => process.kill(nodePid, 0)).toThrow(expect.objectContaining({ code: 'ESRCH' }));
  expect(npmStart.stdout()).toMatch(/"msg":"stopped"/);
  expectNothingFailed(load.creations);

  server = await startServerProcess(env, BUNDLE);
  await expectEachClientOnce(server.url, drainTokens.group, load.creations);
});

/** A package whose `start` is `start` and whose `build` does nothing, with the built dist/ of the repository. */
function npmPackage(start: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'clients-api-npm-start-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'npm-start', private: true, scripts: { build: 'true', start } }));
  symlinkSync(join(root, 'dist'), join(dir, 'dist'));
  return dir;
}
