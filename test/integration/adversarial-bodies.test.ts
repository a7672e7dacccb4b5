/**
 * No request body can stall the server. For every string field of every request body in the spec
 * (found by walking the bundled spec: `$ref`, `anyOf` and array items included, so a new field is
 * covered without touching this file), bodies at the body limit built to make a backtracking
 * pattern explode: a long run of spaces and then a character the field refuses, and the shapes an
 * attacker would pick for the field's pattern (digits and then a letter for an amount, a long
 * local part or domain for an e-mail address, long or many host labels for a URL, a long JSON
 * number where the field takes one). Each is refused as the spec says (400 naming the field) for
 * well under a second of work, while a second connection asks for `/healthz` and reads as another
 * tenant, and is answered promptly throughout.
 *
 * "Work" is the CPU time of this process (the server runs in it, with PGlite when that is the
 * database) while the request was under way, not the wall-clock time: a pattern that backtracks
 * burns CPU, and CPU time does not stretch when other processes load the machine, which wall-clock
 * time does (a CI run beside other suites took 3.6 s for a refusal that cost a tenth of that).
 *
 * With the patterns as they were (`^\s*(X)?\s*$`), one such body took the validator a minute, and
 * the whole process (the embedded database with it) waited.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import spec from '../../generated/openapi.json' with { type: 'json' };
import { BODY_LIMIT_BYTES } from '../../server/http/body-parser.js';
import { operationModels } from '../support/request-check.js';
import { startTestServer, type TestServer } from '../support/server.js';

type Node = Record<string, any>;
type Path = (string | number)[];

/** CPU milliseconds: generous; the old patterns took tens of seconds. */
const PROMPT_MS = 1_000;

const resolve = (node: Node): Node =>
  typeof node?.$ref === 'string'
    ? resolve(
        node.$ref
          .slice(2)
          .split('/')
          .map((p: string) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
          .reduce((n: Node, p: string) => n[p], spec as Node),
      )
    : node;

interface Field {
  path: Path;
  /** Every pattern a string value of the field meets (each branch of an anyOf has its own). */
  patterns: string[];
  /** The field also takes a JSON number (which reaches the pattern as the text it was sent as). */
  number: boolean;
}

/** The string (and number) fields of a body schema, at any depth: properties, array items, map values. */
function fieldsOf(schema: Node, path: Path = [], found = new Map<string, Field>()): Map<string, Field> {
  const s = resolve(schema);
  for (const branch of [...(s.anyOf ?? []), ...(s.oneOf ?? []), ...(s.allOf ?? [])]) fieldsOf(branch, path, found);
  for (const [name, property] of Object.entries((s.properties ?? {}) as Node)) fieldsOf(property, [...path, name], found);
  if (s.items) fieldsOf(s.items, [...path, 0], found);
  // A map's values (metadata-like objects): one key stands for them all.
  if (s.additionalProperties && typeof s.additionalProperties === 'object') fieldsOf(s.additionalProperties, [...path, 'key'], found);
  const types = [s.type].flat();
  const string = types.includes('string') || typeof s.const === 'string' || (s.enum ?? []).some((v: unknown) => typeof v === 'string');
  const number = types.includes('number') || types.includes('integer');
  if (path.length === 0 || (!string && !number)) return found;
  const key = JSON.stringify(path);
  const field = found.get(key) ?? { path, patterns: [], number: false };
  if (string && typeof s.pattern === 'string') field.patterns.push(s.pattern);
  field.number ||= number;
  if (string || found.has(key)) found.set(key, field);
  return found;
}

interface Attack {
  label: string;
  /** The value for `n` repetitions of its unit; `raw`: written into the JSON as it is (a number). */
  make: (n: number) => string;
  raw?: boolean;
}

/** What an attacker would send to this field: white space for every one, more by its pattern. */
function attacksOn(field: Field): Attack[] {
  const patterns = field.patterns.join('\n');
  const attacks: Attack[] = [
    { label: 'spaces, then a refused character', make: (n) => `${' '.repeat(n)}\u0000` },
    { label: 'a character, spaces, then a refused character', make: (n) => `a${' '.repeat(n)}\u0000` },
    { label: 'words and spaces, then a refused character', make: (n) => `${'a '.repeat(n)}\u0000` },
    { label: 'one long word', make: (n) => 'a'.repeat(n) },
  ];
  if (/\[0-9\]|\\d/.test(patterns)) {
    attacks.push(
      { label: 'digits, then a letter', make: (n) => `${'1'.repeat(n)}x` },
      { label: 'a number, spaces, then a letter', make: (n) => `1.5${' '.repeat(n)}x` },
    );
  }
  if (patterns.includes('@')) {
    attacks.push(
      { label: 'a long local part', make: (n) => `${'a'.repeat(n)}@x` },
      { label: 'a dotted local part without a domain', make: (n) => `${'a.'.repeat(n)}@` },
      { label: 'many domain labels, then a refused character', make: (n) => `a@${'a.'.repeat(n)}!` },
      { label: 'a long hyphenated label', make: (n) => `a@${'a-'.repeat(n)}.zz!` },
    );
  }
  if (patterns.includes('://')) {
    attacks.push(
      { label: 'a long host label', make: (n) => `http://${'a'.repeat(n)}!` },
      { label: 'many host labels, then a refused character', make: (n) => `http://${'a.'.repeat(n)}!` },
      { label: 'a host of hyphens', make: (n) => `http://a${'-'.repeat(n)}!` },
      { label: 'a long path, then a space', make: (n) => `http://a/${'b'.repeat(n)} x` },
      { label: 'an unclosed IPv6 literal', make: (n) => `http://[${':'.repeat(n)}` },
    );
  }
  if (field.number) {
    attacks.push(
      { label: 'a long JSON number', make: (n) => '1'.repeat(n + 1), raw: true },
      { label: 'a JSON number with a long fraction', make: (n) => `0.${'0'.repeat(n)}1`, raw: true },
    );
  }
  return attacks;
}

/** `value` at `path` in a copy of `body` (arrays made where the path has an index). */
function withValue(body: unknown, path: Path, value: unknown): unknown {
  const [head, ...rest] = path;
  if (head === undefined) return value;
  if (typeof head === 'number') return [withValue(undefined, rest, value)];
  const object = body && typeof body === 'object' && !Array.isArray(body) ? (body as Node) : {};
  return { ...object, [head]: withValue(object[head], rest, value) };
}

const MARK = '@@adversarial@@';

/** The body text with the attack's value as large as the body limit allows. */
function bodyAtLimit(example: unknown, field: Field, attack: Attack): string {
  const text = JSON.stringify(withValue(example, field.path, MARK));
  const at = (n: number) => {
    const value = attack.make(n);
    return text.replace(JSON.stringify(MARK), attack.raw ? value : JSON.stringify(value));
  };
  const base = Buffer.byteLength(at(0));
  const unit = Buffer.byteLength(at(1)) - base;
  const body = at(Math.floor((BODY_LIMIT_BYTES - base) / unit));
  expect(Buffer.byteLength(body)).toBeLessThanOrEqual(BODY_LIMIT_BYTES);
  expect(Buffer.byteLength(body)).toBeGreaterThan(BODY_LIMIT_BYTES - 2 * unit - 8);
  return body;
}

interface Answer {
  status: number;
  text: string;
  /** Wall-clock milliseconds, for the messages. */
  ms: number;
  /** CPU milliseconds this process spent meanwhile (the server's work, and whatever else it ran). */
  cpuMs: number;
}

/** One request on `agent`'s one connection, timed from its first byte sent to its answer's last. */
function send(agent: http.Agent, method: string, url: string, headers: Record<string, string>, body?: string): Promise<Answer> {
  return new Promise((done, fail) => {
    const started = performance.now();
    const cpu = process.cpuUsage();
    const request = http.request(url, { method, agent, headers }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk) => (text += chunk));
      response.on('end', () => {
        const { user, system } = process.cpuUsage(cpu);
        done({ status: response.statusCode!, text, ms: performance.now() - started, cpuMs: (user + system) / 1000 });
      });
    });
    request.on('error', fail);
    request.end(body);
  });
}

const operations = operationModels.filter((model) => model.body?.mediaTypes.includes('application/json'));
const cases = operations.flatMap((model) =>
  [...fieldsOf(model.body!.schema).values()].flatMap((field) =>
    attacksOn(field).map((attack) => [`${model.operationId} ${field.path.join('.')}: ${attack.label}`, model, field, attack] as const),
  ),
);

let server: TestServer;
let attacker: string;
const attackerAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const bystanderAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
/** The other connection's answers while the attacks ran: `/healthz`, and a read with a token. */
const bystanderAnswers: (Answer & { what: string })[] = [];
let bystanderStop = false;
let bystander: Promise<void>;

beforeAll(async () => {
  server = await startTestServer({ rateLimits: false });
  attacker = (await server.tenant({ plan: 'studio' })).token.token;
  // Without rate limits (hundreds of requests), so answers lack the RateLimit fields the
  // spec-checking client would ask for: plain requests here.
  const auth = { Authorization: `Bearer ${(await server.tenant({ plan: 'studio' })).token.token}` };
  const created = await send(
    bystanderAgent,
    'POST',
    `${server.serverUrl}/clients`,
    { ...auth, 'Content-Type': 'application/json' },
    '{"name":"Bystander"}',
  );
  expect(created.status).toBe(201);
  const read = `${server.serverUrl}/clients/${(JSON.parse(created.text) as { data: { id: string } }).data.id}`;
  bystander = (async () => {
    while (!bystanderStop) {
      const health = await send(bystanderAgent, 'GET', `${server.serverUrl}/healthz`, {});
      bystanderAnswers.push({ ...health, what: 'GET /healthz' });
      const client = await send(bystanderAgent, 'GET', read, auth);
      bystanderAnswers.push({ ...client, what: 'GET /clients/{id}' });
      await new Promise((pause) => setTimeout(pause, 20));
    }
  })();
});

afterAll(async () => {
  bystanderStop = true;
  await bystander?.catch(() => undefined);
  attackerAgent.destroy();
  bystanderAgent.destroy();
  await server?.close();
});

describe('a body at the limit built to make a pattern backtrack is refused at once, naming the field', () => {
  it('covers every operation with a JSON body, and each one a string field', () => {
    const withBodies = Object.values((spec as Node).paths as Node).flatMap((item) =>
      ['post', 'put', 'patch'].filter((method) => (item as Node)[method]?.requestBody),
    );
    expect(operations).toHaveLength(withBodies.length);
    for (const model of operations) expect(fieldsOf(model.body!.schema).size, model.operationId).toBeGreaterThan(0);
  });

  it.each(cases)('%s', async (_label, model, field, attack) => {
    const body = bodyAtLimit(model.body!.example, field, attack);
    const path = model.template.replace(/\{[^}]+\}/g, '00000000-0000-4000-8000-000000000000');
    const answer = await send(
      attackerAgent,
      model.method.toUpperCase(),
      `${server.serverUrl}${path}`,
      { Authorization: `Bearer ${attacker}`, 'Content-Type': 'application/json' },
      body,
    );
    const error = (JSON.parse(answer.text) as { error: { code: string; fields?: Record<string, string> } }).error;
    expect({ status: answer.status, code: error.code }).toEqual({ status: 400, code: 'validation_failed' });
    expect(Object.keys(error.fields ?? {})).toContain(String(field.path[0]));
    expect(answer.cpuMs, `${Math.round(answer.cpuMs)} ms of CPU (${Math.round(answer.ms)} ms wall-clock)`).toBeLessThan(PROMPT_MS);
  });
});

it('the other connection was answered promptly all along', async () => {
  bystanderStop = true;
  await bystander;
  // It did run beside the attacks, many times.
  expect(bystanderAnswers.length).toBeGreaterThan(10);
  expect(bystanderAnswers.filter((a) => a.status !== 200).map((a) => `${a.what} ${a.status}`)).toEqual([]);
  // One thread serves both connections: a bystander's request may wait for the refusal under way
  // (each under PROMPT_MS of work, above) before its own turn, never for more work than that.
  const slowest = bystanderAnswers.reduce((a, b) => (b.cpuMs > a.cpuMs ? b : a));
  expect(
    slowest.cpuMs,
    `${slowest.what} waited behind ${Math.round(slowest.cpuMs)} ms of CPU (${Math.round(slowest.ms)} ms wall-clock)`,
  ).toBeLessThan(2 * PROMPT_MS);
});
