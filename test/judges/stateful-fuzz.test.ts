/**
 * Stateful fuzzing (test/support/stateful-model.ts): sequences of calls that follow the spec's
 * chains, checked against a model of the rules. FUZZ_STATEFUL_RUNS runs (a tenth of FUZZ_RUNS by
 * default), seed FUZZ_SEED; a failure is replayed with FUZZ_SEED, FUZZ_PATH and FUZZ_REPLAY_PATH.
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import { FUZZ_RATE_LIMITS } from '../support/operation-fixtures.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { fuzzStateful, statefulDefaults } from '../support/stateful-model.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ rateLimits: FUZZ_RATE_LIMITS, concurrencyLimit: false });
});
afterAll(() => server?.close());

describe('stateful fuzzing', () => {
  it(`follows the chains between calls (${statefulDefaults.numRuns} runs)`, async () => {
    const stats = await fuzzStateful({ server });
    console.log(`stateful fuzzing: ${JSON.stringify(stats)}`);
  }, 600_000);
});
