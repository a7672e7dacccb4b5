/**
 * Property-based fuzzing of every operation of the spec (test/support/fuzz.ts): valid and broken
 * requests, a fixed seed, FUZZ_RUNS runs per operation (300 by default; more on demand:
 * `FUZZ_RUNS=5000 npx vitest run test/judges/fuzz.test.ts`, another seed with FUZZ_SEED).
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import { fuzzOperation, type FuzzTarget } from '../support/fuzz.js';
import { FUZZ_RATE_LIMITS, FUZZ_TENANT } from '../support/operation-fixtures.js';
import { operationModels } from '../support/request-check.js';
import { startTestServer, type TestServer } from '../support/server.js';

let server: TestServer;
let target: FuzzTarget;
beforeAll(async () => {
  server = await startTestServer({ rateLimits: FUZZ_RATE_LIMITS });
  const { token } = await server.tenant(FUZZ_TENANT);
  target = { baseUrl: server.baseUrl, token: token.token };
});
afterAll(() => server?.close());

describe('fuzzing every operation from the spec', () => {
  it.each(operationModels.map((model) => [model.operationId, model] as const))(
    '%s',
    async (_id, model) => {
      const statuses = await fuzzOperation(model, target);
      console.log(`${model.operationId}: requests by status ${JSON.stringify(statuses)}`);
    },
    600_000,
  );
});
