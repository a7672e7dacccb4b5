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
beforeAll(async () => {
  server = await startTestServer({ rateLimits: FUZZ_RATE_LIMITS });
});
afterAll(() => server?.close());

describe('fuzzing every operation from the spec', () => {
  it.each(operationModels.map((model) => [model.operationId, model] as const))(
    '%s',
    async (_id, model) => {
      // A tenant per operation: what one operation's runs made (up to a limit, such as 16 webhook
      // endpoints) never decides how another's are answered.
      const { token } = await server.tenant(FUZZ_TENANT);
      const target: FuzzTarget = { baseUrl: server.baseUrl, token: token.token };
      const statuses = await fuzzOperation(model, target);
      console.log(`${model.operationId}: requests by status ${JSON.stringify(statuses)}`);
    },
    600_000,
  );
});
