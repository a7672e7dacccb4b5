/**
 * Property-based fuzzing from the spec. For one operation, fast-check builds requests from the
 * spec's schemas (json-schema-faker makes the values the schemas describe) and then, in most runs,
 * breaks them on purpose: a field set to any JSON value, any text or any number, a field or
 * parameter dropped, a parameter set to any text, the body replaced, another content type.
 *
 * For every request, whatever it is:
 * - the server answers below 500, and its answer is valid against the spec (status, headers, body);
 * - the server refuses it as malformed (VALIDATION_REFUSALS) exactly when an independent validator
 *   (Ajv over the bundled spec, test/support/request-check.ts) says the spec does not allow it;
 * - after a create (201 with a Location the spec can read), the read returns what the create did
 *   (its `data`: a secret shown once beside it is not read back).
 *
 * A failure names the shrunk request: fast-check's counterexample is the request as sent.
 */
import fc from 'fast-check';
import { generateSync } from 'json-schema-faker';
import { isDeepStrictEqual } from 'node:util';
import { fieldValues, parameterValues, VALIDATION_REFUSALS, type FixtureContext } from './operation-fixtures.js';
import { requestProblems, type ModelRequest, type OperationModel } from './request-check.js';
import { doc, findOperation, readBody, specCheckingFetch } from './spec-check.js';

type Node = Record<string, any>;

export interface FuzzTarget {
  baseUrl: string;
  /** The bearer token every request carries; undefined: none. */
  token: string | undefined;
  /** Record what is observed for the contract-coverage gate (off when a test injects a mismatch). */
  record?: boolean;
}

export interface FuzzOptions {
  numRuns: number;
  seed: number;
}

/** Runs per operation: FUZZ_RUNS, 300 by default. Seed: FUZZ_SEED, fixed by default. */
export const fuzzDefaults: FuzzOptions = {
  numRuns: Number(process.env.FUZZ_RUNS ?? 300),
  seed: Number(process.env.FUZZ_SEED ?? 20261127),
};

/** An operation that takes no input has one possible request: a few runs say all there is. */
const RUNS_WITHOUT_INPUT = 5;

// Schemas as json-schema-faker needs them: the spec's components beside, so its $refs resolve.
const withComponents = (schema: Node) => ({ ...schema, components: doc.components });

const PRINTABLE = [...Array(95).keys()].map((i) => String.fromCharCode(32 + i));
/** Characters that trip text handling: NUL and other controls, odd spaces, lone surrogates, astral, combining. */
const AWKWARD = [
  '\u0000',
  '\u0001',
  '\u001f',
  '\u007f',
  '\t',
  '\n',
  '\r',
  '\u000b',
  '\u00a0',
  '\u2028',
  '\ufeff',
  '\u200b',
  '\ud800',
  '\udfff',
  '😀',
  'é',
  'e\u0301',
  'İ',
  'ß',
  '"',
  '\\',
  "'",
  '%',
  '<',
  ' ',
  'a',
  'Z',
  '0',
  '.',
  '@',
  '/',
];
/** Text an HTTP header or a URL can carry: printable ASCII, trimmed as HTTP trims it. */
const headerText = fc.string({ unit: fc.constantFrom(...PRINTABLE), maxLength: 60 }).map((s) => s.trim());

type Mutation =
  | { kind: 'set'; field: string; value: unknown }
  | { kind: 'drop'; field: string }
  | { kind: 'param'; name: string; value: string }
  | { kind: 'dropParam'; name: string }
  | { kind: 'rawBody'; text: string }
  | { kind: 'contentType'; value: string };

function mutations(model: OperationModel, fixed: ReadonlySet<string>): fc.Arbitrary<Mutation> {
  const options: fc.Arbitrary<Mutation>[] = [];
  if (model.body) {
    const known = Object.keys(model.body.schema.properties ?? {});
    const unknown = fc.string({ minLength: 1, maxLength: 12 });
    const field =
      known.length > 0 ? fc.oneof({ arbitrary: fc.constantFrom(...known), weight: 4 }, { arbitrary: unknown, weight: 1 }) : unknown;
    const value = fc.oneof(
      fc.jsonValue({ maxDepth: 2 }),
      fc.string({ unit: 'binary', maxLength: 40 }),
      { arbitrary: fc.string({ maxLength: 300 }), weight: 3 },
      { arbitrary: fc.string({ unit: fc.constantFrom(...AWKWARD), maxLength: 30 }), weight: 3 },
      fc.double({ noNaN: true, noDefaultInfinity: true }),
      fc.integer(),
      // Decimals near the edges the spec draws: places, magnitude, sign.
      fc
        .tuple(fc.bigInt({ min: -(10n ** 13n), max: 10n ** 13n }), fc.integer({ min: 0, max: 6 }))
        .map(([digits, places]) => Number(digits) / 10 ** places),
    );
    options.push(fc.record({ kind: fc.constant('set' as const), field, value }));
    if (known.length > 0) options.push(fc.record({ kind: fc.constant('drop' as const), field: fc.constantFrom(...known) }));
    options.push(
      fc.record({
        kind: fc.constant('rawBody' as const),
        text: fc.oneof(
          fc.constant(''),
          fc.string({ maxLength: 20 }),
          fc.jsonValue({ maxDepth: 1 }).map((v) => JSON.stringify(v)),
        ),
      }),
      fc.record({
        kind: fc.constant('contentType' as const),
        value: fc.constantFrom(
          'text/plain',
          'application/x-www-form-urlencoded',
          'application/json; charset=utf-8',
          'application/merge-patch+json',
          'application/xml',
        ),
      }),
    );
  }
  const free = model.parameters.filter((p) => !fixed.has(p.name));
  // A path parameter is never dropped, emptied or made a dot segment: `/clients/` (and `/clients/.`,
  // which URLs normalise to it) is another path, not a request to GET /clients/{id}.
  const inPath = free.filter((p) => p.in === 'path').map((p) => p.name);
  const elsewhere = free.filter((p) => p.in !== 'path').map((p) => p.name);
  if (inPath.length > 0) {
    options.push(
      fc.record({ kind: fc.constant('param' as const), name: fc.constantFrom(...inPath), value: headerText.filter(namesAPathSegment) }),
    );
  }
  if (elsewhere.length > 0) {
    options.push(fc.record({ kind: fc.constant('param' as const), name: fc.constantFrom(...elsewhere), value: headerText }));
    options.push(fc.record({ kind: fc.constant('dropParam' as const), name: fc.constantFrom(...elsewhere) }));
  }
  return fc.oneof(...options);
}

/** Whether a value can fill a path segment: `''`, `.` and `..` (also as `%2E`) cannot (RFC 3986 §5.2.4). */
const namesAPathSegment = (value: string) => !['', '.', '..'].includes(value);

function setParameter(request: ModelRequest, model: OperationModel, name: string, value: string | undefined): void {
  const p = model.parameters.find((q) => q.name === name)!;
  const bag = p.in === 'header' ? request.headers : p.in === 'query' ? request.query : request.pathParams;
  const key = p.in === 'header' ? name.toLowerCase() : name;
  if (value === undefined) delete bag[key];
  else bag[key] = value;
}

interface Plan {
  seed: number;
  keep: string[];
  params: string[];
  fixture: Record<string, string | undefined>;
  /** Body fields whose fixture gives their value (test/support/operation-fixtures.ts). */
  fields: Record<string, unknown>;
  mutations: Mutation[];
}

function build(model: OperationModel, plan: Plan): ModelRequest {
  const request: ModelRequest = { operationId: model.operationId, method: model.method, path: '', pathParams: {}, query: {}, headers: {} };
  for (const p of model.parameters) {
    if (!p.required && !plan.params.includes(p.name)) continue;
    let value = plan.fixture[p.name] ?? String(generateSync(withComponents(p.schema), { seed: plan.seed }));
    if (p.in === 'path' && !namesAPathSegment(value)) value = `${value}-`;
    setParameter(request, model, p.name, p.in === 'header' ? value.trim() : value);
  }
  let body: Record<string, unknown> | undefined;
  if (model.body) {
    const generated = generateSync(withComponents(model.body.schema), { seed: plan.seed, alwaysFakeOptionals: true }) as Record<
      string,
      unknown
    >;
    const required = new Set<string>(model.body.schema.required ?? []);
    body = Object.fromEntries(Object.entries(generated).filter(([k]) => required.has(k) || plan.keep.includes(k)));
    for (const [field, value] of Object.entries(plan.fields)) if (field in body) body[field] = value;
  }
  let contentType = 'application/json';
  let rawBody: string | undefined;
  for (const m of plan.mutations) {
    if (m.kind === 'set' && body) body[m.field] = m.value;
    if (m.kind === 'drop' && body) delete body[m.field];
    if (m.kind === 'param') setParameter(request, model, m.name, m.value);
    if (m.kind === 'dropParam') setParameter(request, model, m.name, undefined);
    if (m.kind === 'rawBody') rawBody = m.text;
    if (m.kind === 'contentType') contentType = m.value;
  }
  request.path = model.template.replace(/\{([^}]+)\}/g, (_, name: string) => encodeURIComponent(request.pathParams[name] ?? ''));
  if (model.body) request.body = { contentType, text: rawBody ?? JSON.stringify(body) };
  return request;
}

/** Sends a model request through the spec-checking fetch. */
export function sender(target: FuzzTarget) {
  const checked = specCheckingFetch(undefined, { record: target.record ?? true });
  return (request: ModelRequest): Promise<Response> => {
    const url = new URL(`${target.baseUrl}${request.path}`);
    for (const [name, value] of Object.entries(request.query)) url.searchParams.set(name, value);
    const headers = new Headers(request.headers);
    if (target.token !== undefined) headers.set('Authorization', `Bearer ${target.token}`);
    if (request.body) headers.set('Content-Type', request.body.contentType);
    return checked(new Request(url, { method: request.method, headers, body: request.body?.text }));
  };
}

/**
 * Fuzzes one operation; throws (with fast-check's shrunk counterexample) when an invariant breaks.
 * Resolves to how many requests got each status, to show that both sides were exercised.
 */
export async function fuzzOperation(
  model: OperationModel,
  target: FuzzTarget,
  options: FuzzOptions = fuzzDefaults,
): Promise<Record<number, number>> {
  const send = sender(target);
  const context: FixtureContext = { send };
  const fixtures = await parameterValues(model, context);
  const fixed = new Set(
    Object.entries(fixtures)
      .filter(([, f]) => f.onlyThese)
      .map(([name]) => name),
  );
  const optionalFields = model.body
    ? Object.keys(model.body.schema.properties ?? {}).filter((k) => !(model.body!.schema.required ?? []).includes(k))
    : [];
  const optionalParams = model.parameters.filter((p) => !p.required).map((p) => p.name);
  const hasInput = model.parameters.length > 0 || model.body !== undefined;

  const plan: fc.Arbitrary<Plan> = fc.record({
    seed: fc.integer({ min: 0, max: 0x7fffffff }),
    keep: fc.subarray(optionalFields),
    params: fc.subarray(optionalParams),
    // A fixture's value (a path parameter naming an existing resource), or (undefined) one from the schema.
    fixture: fc.record(
      Object.fromEntries(
        Object.entries(fixtures).map(([name, f]) => [
          name,
          f.onlyThese ? fc.constantFrom(...f.values) : fc.option(fc.constantFrom(...f.values), { nil: undefined }),
        ]),
      ),
    ),
    fields: fc.record(Object.fromEntries(Object.entries(fieldValues(model)).map(([field, values]) => [field, fc.constantFrom(...values)]))),
    mutations: hasInput ? fc.array(mutations(model, fixed), { maxLength: 3 }) : fc.constant([]),
  });

  const statuses: Record<number, number> = {};
  const property = fc.asyncProperty(
    plan.map((p) => build(model, p)),
    async (request) => {
      const problems = requestProblems(model, request);
      const response = await send(request);
      const status = response.status;
      statuses[status] = (statuses[status] ?? 0) + 1;
      const answer = await readBody(response);
      if (status >= 500) throw new Error(`the server failed: ${status} ${JSON.stringify(answer)}`);
      // An emptied path parameter sends the request to another path: only the answer's validity is judged then.
      if (findOperation(request.method, request.path)?.operation.operationId !== model.operationId) return;
      const refused = VALIDATION_REFUSALS.has(status);
      if (refused && problems.length === 0)
        throw new Error(`the spec allows this request, but the server refused it: ${status} ${JSON.stringify(answer)}`);
      if (!refused && problems.length > 0)
        throw new Error(`the spec refuses this request (${problems.join('; ')}), but the server answered ${status}`);
      const location = response.headers.get('location');
      if (status === 201 && location && findOperation('GET', location)) {
        const read = await send({ operationId: '', method: 'GET', path: location, pathParams: {}, query: {}, headers: {} });
        const stored = await readBody(read);
        // What a create shows once (a secret, beside `data`) the read does not: compare what both carry.
        const created = (answer as { data?: unknown }).data !== undefined ? { data: (answer as { data: unknown }).data } : answer;
        if (read.status !== 200 || !isDeepStrictEqual(stored, created)) {
          throw new Error(
            `the read of ${location} differs from the create:\n  created ${JSON.stringify(answer)}\n  read    ${read.status} ${JSON.stringify(stored)}`,
          );
        }
      }
    },
  );
  await fc.assert(property, {
    numRuns: hasInput ? options.numRuns : Math.min(options.numRuns, RUNS_WITHOUT_INPUT),
    seed: options.seed,
    includeErrorInReport: true,
  });
  return statuses;
}
