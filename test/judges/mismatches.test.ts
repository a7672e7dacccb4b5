/**
 * Each judge fails when the server and the spec part ways. A server with an injected handler
 * introduces one deliberate mismatch at a time, with its own response validation off (as in
 * production), so only the independent judges stand between the mismatch and a green build:
 *
 * | mismatch                                   | caught by                                          |
 * |--------------------------------------------|----------------------------------------------------|
 * | a field the server returns that the spec lacks | Ajv response check, Prism, the fuzzer          |
 * | a status the server returns undocumented   | Ajv response check, coverage gate, Prism, the fuzzer |
 * | a request the spec allows that the server refuses | the fuzzer                                  |
 *
 * The spec's responses are open to additions, so the judges of response fields read a copy of it
 * with closed responses (test/support/closed-spec.ts); the first tests here prove that copy is what
 * catches an undocumented field. The last ones regress the spec itself, as an edit could, and prove
 * the generated-client judge (test/judges/generated-clients.test.ts) fails on each regression.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import bundledSpec from '../../generated/openapi.json' with { type: 'json' };
import { clientHandlers } from '../../server/clients/clients.http.js';
import { validationFailed } from '../../server/shared/errors.js';
import type { Handlers } from '../../server/operations/handler-types.js';
import { compareCoverage, coverageFails, documentedPairs, formatCoverage } from '../../scripts/contract-coverage.js';
import { fuzzOperation, type FuzzTarget } from '../support/fuzz.js';
import {
  compileClients,
  generateClients,
  generatorNamed,
  loadConsumer,
  regressSpec,
  ROUND_TRIP_BODY,
  shadowedGlobals,
  type GeneratorName,
  type SpecRegression,
} from '../support/generated-clients.js';
import { OBSERVATIONS_DIR_VARIABLE, readObservations } from '../support/observations.js';
import { FUZZ_TENANT } from '../support/operation-fixtures.js';
import { startPrismFront, startPrismJudge } from '../support/prism.js';
import { operationModels } from '../support/request-check.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { specCheckingFetch, validatorAt } from '../support/spec-check.js';

type Mismatch = 'none' | 'extra field' | 'undocumented status' | 'refuses a valid request';
let mismatch: Mismatch = 'none';

const createClient: Handlers['createClient'] = async (ctx) => {
  // A rule the spec does not state, as a hand-written check might add: no tabs or line breaks in a name.
  if (mismatch === 'refuses a valid request' && /[\t\n]/.test(ctx.body.name)) {
    throw validationFailed({ name: 'must not contain tabs or line breaks' });
  }
  const result = await clientHandlers.createClient(ctx);
  if (mismatch === 'extra field') {
    const { data } = JSON.parse(result.text) as { data: object };
    return { ...result, text: JSON.stringify({ data: { ...data, internalNote: 'not in the spec' } }) };
  }
  if (mismatch === 'undocumented status') return { ...result, status: 200 } as never;
  return result;
};

let server: TestServer;
let target: FuzzTarget;
beforeAll(async () => {
  server = await startTestServer({ validateResponses: false, handlers: { createClient } });
  const { token } = await server.tenant(FUZZ_TENANT);
  target = { baseUrl: server.baseUrl, token: token.token, record: false };
});
afterAll(() => server?.close());

const createClientModel = operationModels.find((m) => m.operationId === 'createClient')!;
const post = (baseUrl: string, body: unknown) =>
  new Request(`${baseUrl}/clients`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${target.token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
const fuzzBriefly = () => fuzzOperation(createClientModel, target, { numRuns: 100, seed: 1 });

describe('a field the server returns that the spec lacks', () => {
  it('is allowed by the spec, whose responses are open to additions, and refused by the copy the tests judge by', () => {
    const open = new Ajv2020({ strict: false, validateFormats: false })
      .addSchema(bundledSpec, 'open')
      .compile({ $ref: 'open#/components/schemas/ClientData' });
    const closed = validatorAt(['components', 'schemas', 'ClientData']);
    const client = (bundledSpec.components.examples.ClientData.value as { data: object }).data;
    expect(open({ data: client })).toBe(true);
    expect(closed({ data: client })).toBe(true);
    expect(open({ data: { ...client, internalNote: 'not in the spec' } })).toBe(true);
    expect(closed({ data: { ...client, internalNote: 'not in the spec' } })).toBe(false);
  });

  it("fails the server's own response validation in tests (a 500)", async () => {
    const validating = await startTestServer({ handlers: { createClient } }, { database: server.database });
    try {
      mismatch = 'none';
      expect((await fetch(post(validating.serverUrl, { name: 'Validated' }))).status).toBe(201);
      mismatch = 'extra field';
      const response = await fetch(post(validating.serverUrl, { name: 'Validated' }));
      expect(response.status).toBe(500);
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe('internal_error');
    } finally {
      await validating.close();
    }
  });

  it('fails the Ajv response check', async () => {
    mismatch = 'extra field';
    await expect(specCheckingFetch(undefined, { record: false })(post(server.baseUrl, { name: 'Extra' }))).rejects.toThrow(
      /must NOT have additional properties/,
    );
  });

  it('fails the fuzzer, which prints the shrunk request', async () => {
    mismatch = 'extra field';
    await expect(fuzzBriefly()).rejects.toThrow(/Counterexample[\s\S]*"method":"POST"[\s\S]*must NOT have additional properties/);
  });
});

describe('a status the server returns undocumented', () => {
  it('fails the Ajv response check', async () => {
    mismatch = 'undocumented status';
    await expect(specCheckingFetch(undefined, { record: false })(post(server.baseUrl, { name: 'Status' }))).rejects.toThrow(
      /status 200 is not documented/,
    );
  });

  it('fails the coverage gate, as does a documented status never observed', async () => {
    // Recorded as the contract tests record, into a run directory of this test's own.
    mismatch = 'undocumented status';
    const runDir = mkdtempSync(join(tmpdir(), 'clients-api-observed-'));
    const realRunDir = process.env[OBSERVATIONS_DIR_VARIABLE];
    process.env[OBSERVATIONS_DIR_VARIABLE] = runDir;
    try {
      await specCheckingFetch()(post(server.baseUrl, { name: 'Recorded' })).catch(() => undefined);
    } finally {
      if (realRunDir === undefined) delete process.env[OBSERVATIONS_DIR_VARIABLE];
      else process.env[OBSERVATIONS_DIR_VARIABLE] = realRunDir;
    }
    const observed = readObservations(runDir);
    rmSync(runDir, { recursive: true, force: true });
    expect(observed).toEqual([{ operationId: 'createClient', status: 200 }]);
    const withUndocumented = compareCoverage(documentedPairs(), [...documentedPairs(), ...observed]);
    expect(coverageFails(withUndocumented)).toBe(true);
    expect(formatCoverage(withUndocumented, observed)).toMatch(/observed, not documented: createClient .* 200/);

    const withGap = compareCoverage(
      documentedPairs(),
      documentedPairs().filter((p) => !(p.operationId === 'createClient' && p.status === 402)),
    );
    expect(coverageFails(withGap)).toBe(true);
    expect(withGap.percent).toBeLessThan(100);
    expect(coverageFails(compareCoverage(documentedPairs(), documentedPairs()))).toBe(false);
  });

  it('fails the fuzzer', async () => {
    mismatch = 'undocumented status';
    await expect(fuzzBriefly()).rejects.toThrow(/status 200 is not documented/);
  });
});

describe('a request the spec allows that the server refuses', () => {
  it('fails the fuzzer, which prints the shrunk request', async () => {
    mismatch = 'refuses a valid request';
    await expect(fuzzBriefly()).rejects.toThrow(/Counterexample[\s\S]*the spec allows this request, but the server refused it: 400/);
  });
});

/** Sends requests through a Prism judge of its own, in front of this server; Prism's verdict. */
async function throughPrism(send: (url: string) => Promise<void>) {
  const judge = await startPrismJudge();
  const front = await startPrismFront(server.baseUrl, judge.url);
  try {
    await send(front.url);
  } finally {
    await front.close();
  }
  return judge.stop();
}

describe('Prism', () => {
  it('reports a field the spec lacks and a status it does not document', async () => {
    const verdict = await throughPrism(async (url) => {
      // With --errors, Prism answers a response that breaks the spec with its own 500.
      mismatch = 'extra field';
      expect((await fetch(post(url, { name: 'Via Prism' }))).status).toBe(500);
      mismatch = 'undocumented status';
      expect((await fetch(post(url, { name: 'Via Prism' }))).status).toBe(500);
    });
    const violations = verdict.violations.join('\n');
    expect(violations).toMatch(/additional properties/);
    expect(violations).toMatch(/POST \/clients.*Unable to match the returned status code/);
  }, 120_000);

  it('passes the same requests when the server keeps to the spec, and names its own float slip', async () => {
    const verdict = await throughPrism(async (url) => {
      mismatch = 'none';
      expect((await fetch(post(url, { name: 'Via Prism' }))).status).toBe(201);
      expect((await fetch(post(url, { name: 'Via Prism', nmae: 'typo' }))).status).toBe(400);
      // 19.99 is a multiple of 0.0001, but not in binary floating point: Prism refuses it, the server takes it.
      expect((await fetch(post(url, { name: 'Via Prism', defaultRate: 19.99 }))).status).toBe(201);
    });
    expect(verdict.violations).toEqual([]);
    expect(verdict.deviations).toEqual([
      expect.stringMatching(/binary floating point.*defaultRate":19.99.*Prism 422.*multipleOf.*server 201/),
    ]);
  }, 120_000);
});

describe('a spec regressed the way generators misread it fails the generated-client judge', () => {
  let scratch: string;
  beforeAll(() => {
    scratch = mkdtempSync(join(tmpdir(), 'clients-api-regressed-'));
  });
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  /** Generates one generator's client and consumer from the regressed spec, in a folder of its own. */
  async function generateFrom(regression: SpecRegression, name: GeneratorName) {
    const dir = join(scratch, regression.replace(/\W+/g, '-'));
    mkdirSync(dir);
    const doc = regressSpec(bundledSpec, regression);
    writeFileSync(join(dir, 'openapi.json'), JSON.stringify(doc));
    const generator = generatorNamed(name);
    await generateClients([generator], join(dir, 'openapi.json'), dir, server.baseUrl);
    return { dir, doc, generator };
  }

  it('a response component named like a schema: swagger-typescript-api types the answer as the bare Client, and leaves its JSON unparsed', async () => {
    mismatch = 'none';
    const { dir, generator } = await generateFrom('response component named like a schema', 'swagger-typescript-api');
    const errors = (await compileClients([generator], dir)).get(generator.name)!;
    expect(errors.join('\n')).toMatch(/^sta\.consumer\.ts\(\d+,\d+\): error TS2339: Property 'data' does not exist on type 'Client'/m);
    const { token } = await server.tenant({ plan: 'studio' });
    // getClient's data stays null: the consumer's read of data.data throws.
    await expect((await loadConsumer(dir, generator)).roundTrip(server.baseUrl, token.token, ROUND_TRIP_BODY)).rejects.toThrow(/null/);
  }, 120_000);

  it('Blank in an enum input: the enum widens to string, so an invalid currency compiles', async () => {
    const { dir, generator } = await generateFrom('blank widens an enum', 'openapi-typescript-codegen');
    const errors = (await compileClients([generator], dir)).get(generator.name)!;
    const line = generator.consumer.split('\n').findIndex((l) => l.includes('@ts-expect-error a currency')) + 1;
    expect(errors).toEqual([
      expect.stringMatching(new RegExp(`^otc\\.consumer\\.ts\\(${line},\\d+\\): error TS2578: Unused '@ts-expect-error' directive`)),
    ]);
  }, 120_000);

  it('a schema named Error: the generated type shadows the built-in Error', async () => {
    const { dir, doc, generator } = await generateFrom('a schema named Error', 'swagger-typescript-api');
    expect(shadowedGlobals(dir, generator.folder, doc)).toEqual(['sta/api.ts: Error']);
  }, 120_000);
});
