/**
 * The client package as a project elsewhere gets it: `npm pack` makes the tarball, a scratch
 * project outside the repository installs it (with its dependencies from the registry, openapi-fetch
 * and standardwebhooks, and msw, the optional peer of `@clients-api/client/msw`),
 * compiles its own TypeScript against it under `strict` (test/package/scratch: a program, the
 * README's examples, and calls that must not compile), then runs the program against the real
 * server and verifies a webhook delivery signed here, and runs a program that calls every
 * operation through the package's MSW handlers, each answer judged against the spec. publint judges the tarball, and esbuild
 * bundles its runtime code for a neutral platform, which then runs with the web platform's globals
 * only (no process, Buffer or require).
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
  token = (await server.tenant()).token.token;
  writeFileSync(
    join(project, 'config.ts'),
    `export const baseUrl = ${JSON.stringify(server.serverUrl)};\nexport const token = ${JSON.stringify(token)};\n`,
  );
  // The README's examples, in order, as one module: they must compile against the package too.
  const readme = readFileSync(join(installed, 'README.md'), 'utf8');
  const examples = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1]);
  expect(examples.length).toBeGreaterThan(3);
  writeFileSync(join(project, 'readme.ts'), examples.join('\n'));
}, 240_000);

afterAll(async () => {
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

  it("compiles under strict (its README's examples too), and a wrong field or type does not compile", async () => {
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
  }, 120_000);

  it('runs against the real server (create, replay, read, list, update with an ETag, a 400 with fields, a retry with the same key), and verifies a webhook', async () => {
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
