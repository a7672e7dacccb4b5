/**
 * Clients we did not write, made as a consumer would make them: four popular TypeScript generators
 * (pinned in package.json) read a bundled spec into a scratch folder, with the settings
 * docs/generated-clients.md recommends. Beside each output goes a consumer written against the
 * spec: it must compile under `strict`, its deliberate mistakes (a misspelt field, an invalid enum
 * value, a wrong type, a one-client answer read without its `data` envelope) must not, and it
 * exports one round trip (a create, then a read of that client) to run against a real server.
 *
 * Used by test/judges/generated-clients.test.ts on the real spec, and by
 * test/judges/mismatches.test.ts on deliberately regressed copies of it.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { root } from './processes.js';

const run = promisify(execFile);
const bin = (name: string) => join(root, 'node_modules/.bin', name);

export type GeneratorName = 'orval' | 'swagger-typescript-api' | 'openapi-typescript-codegen' | 'openapi-zod-client';

/** The body every consumer sends: an enum in lower case (stored upper case), money as a string and a number, the empty string. */
export const ROUND_TRIP_BODY = {
  name: 'Generated Globex',
  currency: 'eur',
  billingCountry: 'gb',
  defaultRate: '120.5',
  defaultTaxRate: 8.875,
  requirePoNumber: '',
  notes: '',
} as const;

/**
 * Compile-time checks every consumer shares, over its generator's names for the request body and
 * the stored client. Each `@ts-expect-error` differs from a line that compiles by one mistake only,
 * so it fails the build (TS2578, an unused directive) exactly when the generated type lets that
 * mistake through: a widened enum, a lost field, a loose object.
 */
const typeChecks = (body: string, client: string) => `
export const valid: ${body}[] = [
  { name: 'Globex', currency: 'eur', billingCountry: 'GB', requirePoNumber: false, defaultRate: '120.50', defaultTaxRate: 8.875 },
  { name: 'Initech', currency: '', billingCountry: '', requirePoNumber: '', defaultRate: 120.5, email: null },
  { name: 'Umbrella', currency: null, billingCountry: null, requirePoNumber: null, defaultRate: null },
];
// @ts-expect-error a misspelt field
export const misspelt: ${body} = { name: 'Globex', nmae: 'Globex' };
// @ts-expect-error a currency that is no ISO 4217 code
export const badCurrency: ${body} = { name: 'Globex', currency: 'usdd' };
// @ts-expect-error a country that is no ISO 3166-1 code
export const badCountry: ${body} = { name: 'Globex', billingCountry: 'gbr' };
// @ts-expect-error requirePoNumber is true, false, "" or null
export const badFlag: ${body} = { name: 'Globex', requirePoNumber: 'yes' };
// @ts-expect-error a number where text goes
export const wrongType: ${body} = { name: 42 };
// @ts-expect-error money is a decimal string or a number, not a boolean
export const wrongMoney: ${body} = { name: 'Globex', defaultRate: true };

export function stored(client: ${client}): { id: string; currency: string | null; requirePoNumber: boolean; defaultRate: string | null } {
  // @ts-expect-error a stored currency is one of the upper-case codes
  const lower: typeof client.currency = 'eur';
  // @ts-expect-error a stored flag is a boolean
  const blank: typeof client.requirePoNumber = '';
  void lower;
  void blank;
  return { id: client.id, currency: client.currency, requirePoNumber: client.requirePoNumber, defaultRate: client.defaultRate };
}
`;

export interface Generator {
  name: GeneratorName;
  /** Generates the client from `spec` into `dir/<folder>`; `baseUrl` for those that bake it in. */
  generate(spec: string, dir: string, baseUrl: string): Promise<void>;
  /** The consumer's source, written to `dir/<folder>.consumer.ts`. */
  consumer: string;
  folder: string;
}

export const GENERATORS: Generator[] = [
  {
    name: 'orval',
    folder: 'orval',
    async generate(spec, dir, baseUrl) {
      // orval reads no ESM config file here (`Config require an input`); CommonJS works.
      const config = join(dir, 'orval.config.cjs');
      const output = { target: join(dir, 'orval/api.ts'), client: 'fetch', mode: 'single', headers: true, baseUrl };
      writeFileSync(config, `module.exports = ${JSON.stringify({ clients: { input: { target: spec }, output } })};\n`);
      await run(bin('orval'), ['--config', config], { cwd: dir });
    },
    consumer: `import { createClient, getClient, type Client, type ClientCreate, type CreateClientHeaders } from './orval/api';
${typeChecks('ClientCreate', 'Client')}
// @ts-expect-error with headers: true, orval types the header parameters: a misspelt one is refused
export const badHeader: CreateClientHeaders = { 'Idempotency-Kye': '01JDQ3W4J6Y5Z8K2N7P9R1T3V5' };

export async function roundTrip(_baseUrl: string, token: string, body: ClientCreate) {
  const auth = { headers: { Authorization: \`Bearer \${token}\` } };
  const created = await createClient(body, { 'Idempotency-Key': crypto.randomUUID() }, auth);
  if (created.status !== 201) throw new Error(\`createClient answered \${created.status}\`);
  const read = await getClient(created.data.data.id, auth);
  if (read.status !== 200) throw new Error(\`getClient answered \${read.status}\`);
  return { created: created.data, read: read.data, stored: stored(read.data.data) };
}
`,
  },
  {
    name: 'swagger-typescript-api',
    folder: 'sta',
    async generate(spec, dir) {
      await run(
        bin('swagger-typescript-api'),
        ['generate', '--path', spec, '--output', join(dir, 'sta'), '--name', 'api.ts', '--responses', '--enum-style=union', '--silent'],
        { cwd: dir },
      );
    },
    consumer: `import { Api, type Client, type ClientCreate } from './sta/api';
${typeChecks('ClientCreate', 'Client')}
export async function roundTrip(baseUrl: string, token: string, body: ClientCreate) {
  const api = new Api({ baseUrl, baseApiParams: { headers: { Authorization: \`Bearer \${token}\` } } });
  const created = await api.clients.createClient(body, { headers: { 'Idempotency-Key': crypto.randomUUID() } });
  const read = await api.clients.getClient(created.data.data.id);
  return { created: created.data, read: read.data, stored: stored(read.data.data) };
}
`,
  },
  {
    name: 'openapi-typescript-codegen',
    folder: 'otc',
    async generate(spec, dir) {
      // Its command is named `openapi`, as @redocly/cli's is: which one node_modules/.bin holds depends
      // on the install, so the package's own script is run.
      await run(
        process.execPath,
        [
          join(root, 'node_modules/openapi-typescript-codegen/bin/index.js'),
          '--input',
          spec,
          '--output',
          join(dir, 'otc'),
          '--client',
          'fetch',
          '--useUnionTypes',
        ],
        { cwd: dir },
      );
    },
    consumer: `import { ClientsService, OpenAPI, type Client, type ClientCreate } from './otc';
${typeChecks('ClientCreate', 'Client')}
export async function roundTrip(baseUrl: string, token: string, body: ClientCreate) {
  OpenAPI.BASE = baseUrl;
  OpenAPI.TOKEN = token;
  const created = await ClientsService.createClient(body, crypto.randomUUID());
  const read = await ClientsService.getClient(created.data.id);
  return { created, read, stored: stored(read.data) };
}
`,
  },
  {
    name: 'openapi-zod-client',
    folder: 'ozc',
    async generate(spec, dir) {
      mkdirSync(join(dir, 'ozc'), { recursive: true });
      await run(bin('openapi-zod-client'), [spec, '-o', join(dir, 'ozc/client.ts'), '--export-schemas', '--strict-objects'], { cwd: dir });
    },
    consumer: `import type { z } from 'zod';
import { createApiClient, schemas } from './ozc/client';
type ClientCreate = z.input<typeof schemas.ClientCreate>;
type Client = z.output<typeof schemas.Client>;
${typeChecks('ClientCreate', 'Client')}
export { schemas };

export async function roundTrip(baseUrl: string, token: string, body: ClientCreate) {
  const api = createApiClient(baseUrl, { axiosConfig: { headers: { Authorization: \`Bearer \${token}\` } } });
  const created = await api.createClient(body, { headers: { 'Idempotency-Key': crypto.randomUUID() } });
  const read = await api.getClient({ params: { id: created.data.id } });
  return { created, read, stored: stored(read.data) };
}
`,
  },
];

export const generatorNamed = (name: GeneratorName) => GENERATORS.find((g) => g.name === name)!;

/**
 * Generates each client and writes its consumer and one tsconfig (strict, as a consumer's build
 * would be) into `dir`. `node_modules` is linked in so that the generated code finds its runtime
 * packages (zod, @zodios/core, axios) as a consumer's project would.
 */
export async function generateClients(generators: Generator[], spec: string, dir: string, baseUrl: string): Promise<void> {
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir');
  // One at a time: the machine is shared, and each generator is CPU-bound for a second or three.
  for (const generator of generators) {
    await generator.generate(spec, dir, baseUrl);
    writeFileSync(join(dir, `${generator.folder}.consumer.ts`), generator.consumer);
  }
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        noEmit: true,
        target: 'ES2022',
        module: 'ESNext',
        // openapi-typescript-codegen writes extensionless relative imports, as for a bundler.
        moduleResolution: 'Bundler',
        lib: ['ES2023', 'DOM', 'DOM.Iterable'],
        types: [],
        skipLibCheck: true,
      },
      include: generators.flatMap((g) => [g.folder, `${g.folder}.consumer.ts`]),
    }),
  );
}

/** Compiles everything in `dir` once; each generator's diagnostics (its output's and its consumer's). */
export async function compileClients(generators: Generator[], dir: string): Promise<Map<GeneratorName, string[]>> {
  const output = await run(bin('tsc'), ['-p', dir, '--pretty', 'false'], { cwd: dir, maxBuffer: 64 * 1024 * 1024 }).then(
    () => '',
    (error: { stdout?: string }) => error.stdout ?? String(error),
  );
  const lines = output.split('\n').filter((line) => /error TS\d+/.test(line));
  return new Map(
    generators.map(
      (g) => [g.name, lines.filter((line) => line.startsWith(`${g.folder}/`) || line.startsWith(`${g.folder}.consumer.ts`))] as const,
    ),
  );
}

/**
 * Names from the spec's components that a generator's output declares (or re-exports) and that
 * shadow a JavaScript global the generated code or its users rely on, such as `Error` from a schema
 * named Error. A generator's own runtime (openapi-typescript-codegen's `type Headers`) is its
 * business, not the spec's.
 */
export function shadowedGlobals(dir: string, folder: string, spec: { components?: Record<string, Record<string, unknown>> }): string[] {
  const fromSpec = new Set(Object.values(spec.components ?? {}).flatMap((group) => Object.keys(group)));
  const globals = new Set(
    ['Error', 'Date', 'Response', 'Request', 'Headers', 'Record', 'Promise', 'Array', 'Object', 'Map', 'Set', 'URL', 'Blob', 'File'].filter(
      (n) => fromSpec.has(n),
    ),
  );
  const declared = /\b(?:type|interface|class|const|let|var|function|enum)\s+([A-Za-z_$][\w$]*)/g;
  const reExported = /export\s+(?:type\s+)?\{([^}]*)\}/g;
  const found: string[] = [];
  const walk = (path: string) => {
    for (const entry of readdirSync(path)) {
      const full = join(path, entry);
      if (statSync(full).isDirectory()) walk(full);
      else if (full.endsWith('.ts')) {
        const text = readFileSync(full, 'utf8');
        const names = [
          ...[...text.matchAll(declared)].map((m) => m[1]!),
          ...[...text.matchAll(reExported)].flatMap((m) =>
            m[1]!.split(',').map((n) =>
              n
                .trim()
                .split(/\s+as\s+/)
                .pop()!
                .replace(/^type\s+/, ''),
            ),
          ),
        ];
        for (const name of new Set(names)) if (globals.has(name)) found.push(`${relative(dir, full).split(sep).join('/')}: ${name}`);
      }
    }
  };
  walk(join(dir, folder));
  return found;
}

export interface RoundTrip {
  created: unknown;
  read: unknown;
  stored: { id: string; currency: string | null; requirePoNumber: boolean; defaultRate: string | null };
}

export interface Consumer {
  roundTrip(baseUrl: string, token: string, body: unknown): Promise<RoundTrip>;
  schemas?: Record<string, { parse(value: unknown): unknown }>;
}

/** The compiled-against consumer module of a generator, loaded as the consumer's code would be. */
export async function loadConsumer(dir: string, generator: Generator): Promise<Consumer> {
  return (await import(pathToFileURL(join(dir, `${generator.folder}.consumer.ts`)).href)) as Consumer;
}

type Json = Record<string, any>;

/** Regressions a spec edit could bring back; mismatches.test.ts proves the judge fails on each. */
export type SpecRegression = 'response component named like a schema' | 'blank widens an enum' | 'a schema named Error';

/** A copy of the bundled spec `source` with one regression put back. */
export function regressSpec(source: Json, regression: SpecRegression): Json {
  const doc = structuredClone(source);
  if (regression === 'response component named like a schema') {
    // As the spec was: the one-client answers shared as components/responses/Client.
    const item = doc.paths['/clients/{id}'];
    doc.components.responses.Client = item.get.responses['200'];
    for (const operation of [item.get, item.patch, item.delete, doc.paths['/clients/{id}/restore'].post])
      operation.responses['200'] = { $ref: '#/components/responses/Client' };
  } else if (regression === 'blank widens an enum') {
    doc.components.schemas.Blank = { type: 'string', title: 'Blank', pattern: '^\\s*$' };
    const input = doc.components.schemas.CurrencyInput;
    input.anyOf = input.anyOf.map((branch: Json) => (branch.enum?.[0] === '' ? { $ref: '#/components/schemas/Blank' } : branch));
  } else {
    const text = JSON.stringify(doc).replaceAll('#/components/schemas/ErrorEnvelope"', '#/components/schemas/Error"');
    const renamed = JSON.parse(text) as Json;
    renamed.components.schemas = Object.fromEntries(
      Object.entries(renamed.components.schemas as Json).map(([name, schema]) => [name === 'ErrorEnvelope' ? 'Error' : name, schema]),
    );
    return renamed;
  }
  return doc;
}
