/**
 * The client package as a project elsewhere gets it: `npm pack` makes the tarball, a scratch
 * project outside the repository installs it (with its dependencies from the registry, openapi-fetch
 * and standardwebhooks, and msw, the optional peer of `@clients-api/client/msw`),
 * compiles its own TypeScript against it under `strict` and exactOptionalPropertyTypes
 * (test/package/scratch: a program and calls that must not compile), compiles every example of
 * both READMEs' client sections under the tsconfig `tsc --init` writes, then runs the program
 * against the real server (paginate over 250 clients, throwOnError) and a server of the test's that
 * holds requests (timeoutMs, signal) and verifies a webhook delivery signed here, and runs a program that calls every
 * operation through the package's MSW handlers, each answer judged against the spec. publint judges the tarball, and esbuild
 * bundles its runtime code for a neutral platform, which then runs with the web platform's globals
 * only (no process, Buffer or require).
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import vm from 'node:vm';
import { build, type BuildOptions } from 'esbuild';
import { publint } from 'publint';
import { Webhook } from 'standardwebhooks';
import { formatMessage } from 'publint/utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import clientManifest from '../../client/package.json' with { type: 'json' };
import { operationExamples } from '../../client/generated/examples.js';
import spec from '../../generated/openapi.json' with { type: 'json' };
import { root } from '../support/processes.js';
import { checkResponse } from '../support/spec-check.js';
import { startTestServer, type TestServer } from '../support/server.js';

const FIXTURES = join(import.meta.dirname, 'scratch');
const PACKAGE_NAME = '@clients-api/client';
/** What the shipped code may import besides its own files: its dependencies. */
const DEPENDENCIES = ['openapi-fetch', 'standardwebhooks'];
/** ...and, in the files of the `./msw` entry only, its optional peer. */
const MSW_FILES = /^dist\/msw\.(js|d\.ts)$/;
/** The msw the repository tests with (the client's devDependency). */
const MSW = `msw@${clientManifest.devDependencies.msw}`;

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** npm's own variables (set when this runs under `npm test`) would steer the scratch project's npm back here. */
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.toLowerCase().startsWith('npm_')));

function run(command: string, args: string[], cwd: string, env: Record<string, string> = {}): Promise<Ran> {
  return new Promise((done) => {
    execFile(command, args, { cwd, env: { ...cleanEnv, ...env }, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) =>
      done({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

async function mustRun(command: string, args: string[], cwd: string, env?: Record<string, string>): Promise<Ran> {
  const ran = await run(command, args, cwd, env);
  if (ran.code !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${ran.code}:\n${ran.stdout}\n${ran.stderr}`);
  return ran;
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)))
    .sort();
}

const tsc = join(root, 'node_modules/.bin/tsc');
/** The Node types the client README tells its readers to add (the repository's own version). */
const NODE_TYPES = `@types/node@${JSON.parse(readFileSync(join(root, 'node_modules/@types/node/package.json'), 'utf8')).version}`;

/** Every ```ts block of a markdown text, in order. */
function tsBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((match) => match[1]!);
}

/**
 * A server that answers as a struggling one does, by the first segment of the path (each client of
 * the program puts it in its baseUrl), and counts the attempts: `hold` and `cancel` never answer;
 * `flaky` answers 503 with Retry-After: 1 once, then never; `busy` always answers 503 with
 * Retry-After: 5.
 */
const attempts = { hold: 0, flaky: 0, busy: 0, cancel: 0 };
function holdingServer(): Promise<Server> {
  const holding = createServer((request, response) => {
    const kind = (request.url ?? '').split('/')[1] as keyof typeof attempts;
    attempts[kind]++;
    if (kind === 'busy' || (kind === 'flaky' && attempts.flaky === 1)) {
      response.writeHead(503, {
        'Content-Type': 'application/json',
        'Retry-After': kind === 'busy' ? '5' : '1',
        'X-Request-Id': `req-${kind}-${attempts[kind]}`,
      });
      response.end(JSON.stringify({ error: { code: 'service_unavailable', message: 'Busy: try again later.' } }));
    }
    // Otherwise held: never answered (its connection is closed when the suite ends).
  });
  return new Promise((done) => holding.listen(0, '127.0.0.1', () => done(holding)));
}

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const deliveredEvent = {
  id: '7d7a5d1e-4f1f-4c3b-9f63-1c1c2b0f7a10',
  type: 'client.deleted',
  env: 'test',
  createdAt: '2026-12-01T10:00:00.000Z',
  data: { object: { id: '0b9e6e0e-3a8f-4c61-8d4e-5f0b8f3c2d11', name: 'Globex Corporation', deletedAt: '2026-12-01T10:00:00.000Z' } },
};

/**
 * A delivery as the server sends one, signed by the library, for the program to verify with the
 * installed package (handed over in its environment, signed just before it runs: the timestamp is
 * good for five minutes).
 */
function signedDelivery(sentAt = new Date()) {
  const body = JSON.stringify(deliveredEvent);
  return {
    secret: SECRET,
    body,
    headers: {
      'webhook-id': deliveredEvent.id,
      'webhook-timestamp': String(Math.floor(sentAt.getTime() / 1000)),
      'webhook-signature': new Webhook(SECRET).sign(deliveredEvent.id, sentAt, body),
    },
  };
}
let scratch: string;
let tarball: string;
let project: string;
let installed: string;
let server: TestServer;
let token: string;
let holding: Server;
/** The 250 clients of the organisation on the top plan, for paginate. */
let walkIds: string[];

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'clients-api-package-'));
  project = join(scratch, 'project');
  installed = join(project, 'node_modules', PACKAGE_NAME);
  const started = startTestServer();
  // prepack builds the package, so the tarball holds what `npm run build:client` makes now.
  await mustRun('npm', ['pack', '--workspace', PACKAGE_NAME, '--pack-destination', scratch, '--silent'], root);
  const packed = readdirSync(scratch).filter((name) => name.endsWith('.tgz'));
  expect(packed).toHaveLength(1);
  tarball = join(scratch, packed[0]!);

  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'scratch-project', private: true, type: 'module' }));
  await mustRun('npm', ['install', '--no-audit', '--no-fund', '--no-package-lock', '--ignore-scripts', tarball, MSW], project);
  cpSync(FIXTURES, project, { recursive: true });

  server = await started;
  holding = await holdingServer();
  token = (await server.tenant()).token.token;
  // 250 active clients need the top plan (studio: no limit); made 5 at a time (the concurrency limit).
  const studio = await server.tenant({ plan: 'studio' });
  walkIds = [];
  for (let batch = 0; batch < 50; batch++) {
    const made = await Promise.all(
      Array.from({ length: 5 }, (_, index) => studio.api.POST('/clients', { body: { name: `Walked ${batch * 5 + index}` } })),
    );
    for (const answer of made) walkIds.push(answer.data!.data.id);
  }
  writeFileSync(
    join(project, 'config.ts'),
    [
      `export const baseUrl = ${JSON.stringify(server.serverUrl)};`,
      `export const token = ${JSON.stringify(token)};`,
      `export const studioToken = ${JSON.stringify(studio.token.token)};`,
      `export const holdingUrl = ${JSON.stringify(`http://127.0.0.1:${(holding.address() as AddressInfo).port}`)};`,
      '',
    ].join('\n'),
  );
}, 300_000);

afterAll(async () => {
  holding?.closeAllConnections();
  holding?.close();
  await server?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('the client package, installed in a project elsewhere', () => {
  it("holds only what a user needs: ESM JavaScript, .d.ts, the README; its version is the spec's; nothing reaches outside it", () => {
    const files = filesUnder(installed);
    expect(files).toEqual(
      expect.arrayContaining(['README.md', 'package.json', 'dist/index.js', 'dist/index.d.ts', 'dist/generated/api.d.ts']),
    );
    for (const file of files) expect(file).toMatch(/^(README\.md|package\.json|dist\/.+\.(js|d\.ts))$/);

    const manifest = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as Record<string, unknown>;
    expect(manifest.name).toBe(PACKAGE_NAME);
    expect(manifest.version).toBe(spec.info.version);
    expect(manifest.private).toBeUndefined();
    expect(Object.keys(manifest.dependencies as object)).toEqual(DEPENDENCIES);
    // msw: a peer, optional, of the ./msw entry alone.
    expect(manifest.peerDependencies).toEqual({ msw: expect.stringMatching(/^\^2\.\d+\.\d+ \|\| \^3\.\d+\.\d+$/) });
    expect(manifest.peerDependenciesMeta).toEqual({ msw: { optional: true } });
    expect(Object.keys(manifest.exports as object)).toEqual(['.', './msw', './package.json']);
    expect(files).toEqual(expect.arrayContaining(['dist/msw.js', 'dist/msw.d.ts', 'dist/generated/examples.js']));
    expect((manifest.dependencies as Record<string, string>).standardwebhooks).toBe('1.1.1');
    expect(
      filesUnder(join(project, 'node_modules')).map((file) =>
        file
          .split('/')
          .slice(0, file.startsWith('@') ? 2 : 1)
          .join('/'),
      ),
    ).toEqual(expect.arrayContaining([PACKAGE_NAME, ...DEPENDENCIES]));

    // Every import of the shipped code is a dependency or a file of the package itself.
    for (const file of files.filter((name) => name.startsWith('dist/'))) {
      const text = readFileSync(join(installed, file), 'utf8');
      const specifiers = [
        ...text.matchAll(/^(?:import|export)\b[^'";]*?from\s*['"]([^'"]+)['"]/gm),
        ...text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g),
      ];
      expect(specifiers.length > 0 || !/\bimport\b/.test(text.replace(/\/\*[\s\S]*?\*\//g, '')), `${file}: imports not understood`).toBe(
        true,
      );
      for (const [, specifier] of specifiers) {
        if (!specifier!.startsWith('.')) {
          expect(MSW_FILES.test(file) ? [...DEPENDENCIES, 'msw'] : DEPENDENCIES, `${file} imports ${specifier}`).toContain(specifier);
          continue;
        }
        const target = resolve(dirname(join(installed, file)), specifier!);
        expect(relative(installed, target).startsWith('..'), `${file} imports ${specifier}`).toBe(false);
        const candidates = [target, target.replace(/\.js$/, '.d.ts')];
        expect(
          candidates.some((path) => files.includes(relative(installed, path))),
          `${file} imports ${specifier}, which is not in the package`,
        ).toBe(true);
      }
    }
  });

  it('passes publint with no error, warning or suggestion', async () => {
    const bytes = readFileSync(tarball);
    const result = await publint({
      pack: { tarball: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer },
      level: 'suggestion',
      strict: true,
    });
    expect(result.messages.map((message) => `${message.type}: ${formatMessage(message, result.pkg)}`)).toEqual([]);
  });

  it('compiles under strict and exactOptionalPropertyTypes, and a wrong field, type, list or error field does not compile', async () => {
    const [right, wrong] = await Promise.all([
      run(tsc, ['-p', 'tsconfig.json', '--pretty', 'false'], project),
      run(tsc, ['-p', 'tsconfig.wrong.json', '--pretty', 'false'], project),
    ]);
    expect(right.stdout + right.stderr).toBe('');
    expect(right.code).toBe(0);

    expect(wrong.code).not.toBe(0);
    const source = readFileSync(join(project, 'wrong.ts'), 'utf8').split('\n');
    const marked = source.flatMap((line, index) => (line.includes('// error:') ? [index + 1] : []));
    const diagnostics = [...wrong.stdout.matchAll(/^(\S+)\((\d+),\d+\): error (TS\d+): (.*)$/gm)].map(([, file, line, code, message]) => ({
      file,
      line: Number(line),
      code,
      message,
    }));
    expect(diagnostics.length).toBeGreaterThan(0);
    expect(
      diagnostics.every((d) => d.file === 'wrong.ts'),
      wrong.stdout,
    ).toBe(true);
    expect([...new Set(diagnostics.map((d) => d.line))].sort((a, b) => a - b)).toEqual(marked);
    const typo = source.findIndex((line) => line.includes('nmae')) + 1;
    expect(diagnostics.find((d) => d.line === typo)).toMatchObject({
      code: 'TS2353',
      message: expect.stringContaining("'nmae' does not exist in type"),
    });
    const lineOf = (text: string) => source.findIndex((line) => line.includes(text)) + 1;
    expect(diagnostics.find((d) => d.line === lineOf("api.paginate('/clients/{id}'"))?.message).toContain(
      "not assignable to parameter of type 'PaginatedPath'",
    );
    expect(diagnostics.find((d) => d.line === lineOf('limt: 100'))?.message).toContain("'limt' does not exist");
    expect(diagnostics.find((d) => d.line === lineOf('error.statusCode'))?.message).toContain(
      "Property 'statusCode' does not exist on type 'ClientsApiError'",
    );
  }, 120_000);

  it("compiles every example of the client README and each of the README's client section on its own under the tsconfig `tsc --init` writes, with Node's types as the client README says", async () => {
    // Its own project (its own package.json and node_modules), so that Node's types reach nothing else.
    const dir = join(project, 'readme');
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'readme-examples', private: true, type: 'module' }));
    await mustRun('npm', ['install', '--no-audit', '--no-fund', '--no-package-lock', '--ignore-scripts', NODE_TYPES], dir);
    // TypeScript's own defaults, as a newcomer gets them; only `types` changed, as the README says.
    await mustRun(tsc, ['--init'], dir);
    const defaults = readFileSync(join(dir, 'tsconfig.json'), 'utf8');
    for (const option of [
      '"strict": true',
      '"exactOptionalPropertyTypes": true',
      '"noUncheckedIndexedAccess": true',
      '"verbatimModuleSyntax": true',
      '"module": "nodenext"',
    ]) {
      expect(defaults).toContain(option);
    }
    expect(defaults).toContain('"types": [],');
    writeFileSync(join(dir, 'tsconfig.json'), defaults.replace('"types": [],', '"types": ["node"],'));

    // The client README's examples, in order, as one module (later blocks use what earlier ones
    // made); the README's, each a module of its own (each stands on its own).
    const clientExamples = tsBlocks(readFileSync(join(installed, 'README.md'), 'utf8'));
    expect(clientExamples.length).toBeGreaterThan(8);
    expect(clientExamples.some((block) => block.includes('.paginate('))).toBe(true);
    expect(clientExamples.some((block) => block.includes('throwOnError: true'))).toBe(true);
    expect(clientExamples.some((block) => block.includes('timeoutMs'))).toBe(true);
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const start = readme.indexOf('\n## Using the typed client');
    const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
    const rootExamples = tsBlocks(section);
    expect(start).toBeGreaterThan(0);
    expect(rootExamples.length).toBeGreaterThan(1);
    writeFileSync(join(dir, 'client-readme.ts'), clientExamples.join('\n'));
    rootExamples.forEach((block, i) => {
      expect(block, `README example ${i + 1} imports what it uses`).toMatch(/^import /m);
      writeFileSync(join(dir, `readme-${i + 1}.ts`), block);
    });

    const compiled = await run(tsc, ['-p', '.', '--pretty', 'false'], dir);
    expect(compiled.stdout + compiled.stderr).toBe('');
    expect(compiled.code).toBe(0);
  }, 180_000);

  it('runs against the real server (create, replay, read, list, update with an ETag, a 400 with fields, a retry with the same key, paginate, throwOnError) and a holding one (timeoutMs, signal), and verifies a webhook', async () => {
    const ran = await mustRun(process.execPath, ['dist/main.js'], project, { WEBHOOK_DELIVERY: JSON.stringify(signedDelivery()) });
    const seen = JSON.parse(ran.stdout);
    const id = seen.created.id as string;
    expect(seen.created).toEqual({ status: 201, id: expect.any(String), currency: 'EUR', defaultRate: '120.50' });
    expect(seen.repeated).toEqual({ status: 201, replayed: 'true', id });
    expect(seen.read).toEqual({ status: 200, name: 'Globex Corporation', etag: expect.stringMatching(/^"[^"]+"$/) });
    expect(seen.listed).toEqual({ status: 200, ids: [id], nextCursor: null });
    expect(seen.updated).toMatchObject({ status: 200, contactName: 'Hank Scorpio', email: null });
    expect(seen.updated.etag).not.toBe(seen.read.etag);
    expect(seen.stale).toEqual({ status: 412, code: 'precondition_failed' });
    expect(seen.invalid).toMatchObject({
      status: 400,
      code: 'validation_failed',
      fields: { email: expect.any(String), defaultRate: expect.any(String) },
    });
    expect(seen.retried).toMatchObject({ status: 201, replayed: 'true', id: expect.any(String) });
    expect(seen.retried.keysSent).toHaveLength(2);
    expect(seen.retried.keysSent[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen.retried.keysSent[1]).toBe(seen.retried.keysSent[0]);
    expect(seen.webhook).toEqual({
      type: 'client.deleted',
      id: deliveredEvent.id,
      deletedAt: deliveredEvent.data.object.deletedAt,
      tampered: 'WebhookVerificationError: No matching signature found',
    });

    // paginate: the 250 clients once each, newest first, in three GETs of 100 following nextCursor.
    expect(seen.paginated.ids).toHaveLength(250);
    expect(new Set(seen.paginated.ids).size).toBe(250);
    expect([...seen.paginated.ids].sort()).toEqual([...walkIds].sort());
    expect(seen.paginated.pagesAsked).toHaveLength(3);
    expect(seen.paginated.pagesAsked[0]).toBe('?limit=100');
    for (const asked of seen.paginated.pagesAsked.slice(1)) expect(asked).toMatch(/^\?limit=100&cursor=[^&]+$/);

    // timeoutMs bounds the whole call, retries and their waits included; signal stops at once.
    const { held, flaky, busy, cancelled } = seen.timeouts;
    expect(held).toMatchObject({ outcome: 'TimeoutError' });
    expect(held.elapsedMs).toBeGreaterThanOrEqual(790);
    expect(held.elapsedMs).toBeLessThan(2_500);
    expect(attempts.hold).toBe(1);
    // 503 + Retry-After: 1, the wait, a second attempt held: cut at the client's 1.8 s.
    expect(flaky).toMatchObject({ outcome: 'TimeoutError' });
    expect(flaky.elapsedMs).toBeGreaterThanOrEqual(1_790);
    expect(flaky.elapsedMs).toBeLessThan(3_500);
    expect(attempts.flaky).toBe(2);
    // Retry-After: 5 would outlast the 2 s: no retry, the 503 thrown at once (throwOnError).
    expect(busy).toMatchObject({
      outcome: 'ClientsApiError',
      status: 503,
      code: 'service_unavailable',
      retryAfter: 5,
      requestId: 'req-busy-1',
      message: 'Busy: try again later.',
    });
    expect(busy.elapsedMs).toBeLessThan(1_500);
    expect(attempts.busy).toBe(1);
    expect(cancelled).toMatchObject({ outcome: 'AbortError' });
    expect(cancelled.elapsedMs).toBeGreaterThanOrEqual(290);
    expect(cancelled.elapsedMs).toBeLessThan(2_000);
    expect(attempts.cancel).toBe(1);

    // throwOnError: the data alone; a 400 and a 404 thrown as ClientsApiError with the envelope's fields.
    expect(seen.throwOnError.read).toBe('Globex Corporation');
    expect(seen.throwOnError.etag).toMatch(/^"[^"]+"$/);
    expect(seen.throwOnError.thrown).toEqual({
      isError: true,
      name: 'ClientsApiError',
      status: 400,
      code: 'validation_failed',
      message: expect.any(String),
      fields: { email: expect.any(String), defaultRate: expect.any(String) },
      requestId: expect.stringMatching(/.+/),
      retryAfter: null,
      sameAsBody: true,
    });
    expect(seen.throwOnError.missing).toEqual({ status: 404, code: 'not_found' });

    // The server holds what the program was told: two clients, the replays and the refusals wrote nothing.
    const page = await server.client(token).GET('/clients', { params: { query: { limit: 10 } } });
    expect(page.data?.data.map((c) => [c.id, c.name, c.contactName, c.notes])).toEqual([
      [seen.retried.id, 'Initech', null, null],
      [id, 'Globex Corporation', 'Hank Scorpio', null],
    ]);
  }, 60_000);

  it("answers every operation through clientsApiHandlers() with the spec's first success example, valid against the spec; overrides answer instead", async () => {
    const ran = await mustRun(process.execPath, ['dist/mocks.js'], project);
    const seen = JSON.parse(ran.stdout) as {
      answers: Record<string, { method: string; path: string; status: number; headers: Record<string, string>; body: unknown }>;
      overridden: Record<string, unknown>;
    };
    const operationIds = Object.keys(operationExamples).sort();
    expect(Object.keys(seen.answers).sort()).toEqual(operationIds);
    expect(operationIds).toEqual(
      Object.values(spec.paths)
        .flatMap((item) => Object.values(item).map((op) => (op as { operationId?: string }).operationId))
        .filter((id) => id !== undefined)
        .sort(),
    );
    for (const [operationId, answer] of Object.entries(seen.answers)) {
      const operation = operationExamples[operationId as keyof typeof operationExamples];
      expect(answer.status, operationId).toBe(operation.success);
      expect(answer.method.toLowerCase(), operationId).toBe(operation.method);
      expect(answer.body, operationId).toEqual(Object.values(operation.responses[operation.success]!.examples)[0]);
      // Status, headers and body as the spec documents them (Ajv over the tests' closed copy of the
      // spec); nosniff is the real server's, sent on every answer, and no mock's business.
      const problems = checkResponse(answer.method, answer.path, answer.status, new Headers(answer.headers), answer.body);
      expect(
        problems.filter((problem) => !problem.includes('X-Content-Type-Options')),
        operationId,
      ).toEqual([]);
    }
    expect(seen.answers.createClient!.headers.location).toBe(
      `/clients/${(seen.answers.createClient!.body as { data: { id: string } }).data.id}`,
    );
    const contact = (seen.answers.createContact!.body as { data: { id: string; clientId: string } }).data;
    expect(seen.answers.createContact!.headers.location).toBe(`/clients/${contact.clientId}/contacts/${contact.id}`);
    expect(seen.overridden).toEqual({
      renamed: { status: 200, name: 'Initech' },
      missing: { status: 404, code: 'not_found' },
      empty: { status: 200, body: { data: [], nextCursor: null } },
    });
  }, 60_000);

  it("bundles for a neutral platform with no Node built-in left, and runs with the web platform's globals only", async () => {
    const entry = join(installed, 'dist/index.js');
    const common: BuildOptions = {
      entryPoints: [entry],
      bundle: true,
      platform: 'neutral',
      // The neutral platform resolves no package.json `main` by default; standardwebhooks (CommonJS)
      // has only `main`, as many packages do, so name the fields every bundler for the web reads.
      mainFields: ['module', 'main'],
      write: false,
      metafile: true,
      logLevel: 'silent',
      absWorkingDir: project,
    };
    const neutral = await build({ ...common, format: 'esm', metafile: true });
    expect(neutral.errors).toEqual([]);
    const inputs = Object.keys(neutral.metafile.inputs);
    expect(inputs.some((input) => input.includes('openapi-fetch'))).toBe(true);
    expect(inputs.some((input) => input.includes('standardwebhooks'))).toBe(true);
    const builtins = new Set([...builtinModules, ...builtinModules.map((name) => `node:${name}`)]);
    expect(inputs.filter((input) => builtins.has(input) || input.startsWith('node:'))).toEqual([]);
    expect(Object.values(neutral.metafile.outputs).flatMap((output) => output.imports)).toEqual([]);

    const script = await build({ ...common, format: 'iife', globalName: 'ClientsApiPackage', write: false });
    const web = {
      fetch: undefined,
      Request,
      Response,
      Headers,
      URL,
      URLSearchParams,
      FormData,
      Blob,
      AbortController,
      AbortSignal,
      TextEncoder,
      TextDecoder,
      crypto: { randomUUID: () => crypto.randomUUID() },
      setTimeout,
      clearTimeout,
    };
    const context = vm.createContext({ ...web });
    const pkg = vm.runInContext(`${script.outputFiles[0]!.text};ClientsApiPackage`, context) as typeof import('../../client/index.js');
    const sent: Request[] = [];
    const api = pkg.createClientsApi({
      baseUrl: 'https://clients-api.test',
      token: 'hsk_test_abc',
      fetch: async (request) => {
        sent.push(request);
        return new Response(JSON.stringify({ data: { id: 'c1', name: 'Globex' } }), {
          status: 201,
          headers: { 'Content-Type': 'application/json' },
        });
      },
    });
    const created = await api.POST('/clients', { body: { name: 'Globex' } });
    expect(created.data).toMatchObject({ data: { id: 'c1' } });
    expect(sent).toHaveLength(1);
    expect(sent[0]!.url).toBe('https://clients-api.test/clients');
    expect(sent[0]!.headers.get('Authorization')).toBe('Bearer hsk_test_abc');
    expect(sent[0]!.headers.get('Idempotency-Key')).toMatch(/^[0-9a-f-]{36}$/);

    // verifyWebhook too: bytes in, the event out; a changed body refused.
    const delivery = signedDelivery();
    const event = pkg.verifyWebhook(new TextEncoder().encode(delivery.body), new Headers(delivery.headers), [delivery.secret]);
    expect(event).toEqual(deliveredEvent);
    expect(() => pkg.verifyWebhook(delivery.body.replace('Globex', 'Initech'), delivery.headers, delivery.secret)).toThrow(
      expect.objectContaining({ name: 'WebhookVerificationError', message: 'No matching signature found' }),
    );
    expect(vm.runInContext('typeof process + typeof Buffer + typeof require', context)).toBe('undefinedundefinedundefined');
  });
});
