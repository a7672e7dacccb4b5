/**
 * Stateful fuzzing (test/support/stateful-model.ts): sequences of calls that follow the spec's
 * chains, checked against a model of the rules. FUZZ_STATEFUL_RUNS runs (a tenth of FUZZ_RUNS by
 * default), seed FUZZ_SEED; a failure is replayed with FUZZ_SEED, FUZZ_PATH and FUZZ_REPLAY_PATH.
 *
 * Then the regressions of test/support/regressions.ts (a restore that drops a field, an update that
 * keeps the ETag, a cursor that skips a row), one at a time, on a server of their own: every answer
 * stays valid against the spec, so only a judge that follows the chains sees them, and the stateful
 * fuzzer, with its default runs and seed, fails on each with a short, shrunk sequence of calls.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FUZZ_RATE_LIMITS } from '../support/operation-fixtures.js';
import { type Regression, regressions } from '../support/regressions.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { fuzzStateful, type StatefulOptions, statefulDefaults } from '../support/stateful-model.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ rateLimits: FUZZ_RATE_LIMITS, concurrencyLimit: false });
});
afterAll(() => server?.close());

describe('stateful fuzzing', () => {
  it(`follows the chains between calls (${statefulDefaults.numRuns} runs)`, async () => {
    const stats = await fuzzStateful({ server });
    console.log(`stateful fuzzing: ${JSON.stringify(stats)}`);
    // Both sides of the rules were exercised: changes and requests that change nothing, walks to their end.
    expect(Object.keys(stats.changes).sort()).toEqual(['client.created', 'client.deleted', 'client.restored', 'client.updated']);
    expect(stats.unchanged).toBeGreaterThan(0);
    expect(stats.walksFinished).toBeGreaterThan(0);
  }, 600_000);
});

/**
 * The stateful fuzzer against a server with `regression`: its report, which the test then reads.
 * `replay`: the seed, path and replayPath of an earlier report, to run just its counterexample.
 */
async function fuzzRegressed(regression: Regression, replay: Partial<StatefulOptions> = {}): Promise<string> {
  const regressed = await startTestServer(
    { rateLimits: FUZZ_RATE_LIMITS, concurrencyLimit: false, validateResponses: false, handlers: regressions[regression] },
    { database: server.database },
  );
  try {
    await fuzzStateful({ server: regressed, record: false }, { ...statefulDefaults, path: undefined, replayPath: undefined, ...replay });
  } catch (error) {
    return (error as Error).message;
  } finally {
    await regressed.close();
  }
  throw new Error(`the stateful fuzzer passed a server whose ${regression}`);
}

/** The calls of a report's shrunk counterexample, one per line. */
function shrunkCalls(report: string): string[] {
  const counterexample = /^Counterexample: \[(.*)\]$/m.exec(report)?.[1] ?? '';
  const call = String.raw`(?:[A-Z]\d? = )?(?:GET|POST|PATCH|DELETE) \/`;
  return counterexample.match(new RegExp(String.raw`${call}.*?(?=,${call}| \/\*replayPath|$)`, 'g')) ?? [];
}

describe('deliberate regressions fail the stateful fuzzer, with the shrunk sequence of calls', () => {
  it('a restore that drops a field', async () => {
    const report = await fuzzRegressed('restoreDropsField');
    console.log(report);
    expect(report).toMatch(/\{ seed: \d+, path: "[\d:]+"/);
    expect(report).toMatch(/replayPath="[^"]+"/);
    // Give a client notes (as it is created, or by a PATCH), delete it, restore it: the restore answers it without them.
    const calls = shrunkCalls(report);
    const label = calls[0]?.[0] ?? '?';
    expect(calls.length).toBeLessThanOrEqual(4);
    expect(calls[0]).toMatch(new RegExp(String.raw`^${label} = POST /clients \{`));
    expect(calls.join('\n')).toMatch(/"notes":"/);
    expect(calls.slice(-2)).toEqual([
      expect.stringMatching(new RegExp(String.raw`^DELETE /clients/\{${label}\}`)),
      expect.stringMatching(new RegExp(String.raw`^POST /clients/\{${label}\}/restore`)),
    ]);
    expect(report).toMatch(/the answer shows the change, and nothing else: notes: expected "[^"]+", got null/);
  }, 600_000);

  it('an update that does not change the ETag', async () => {
    const report = await fuzzRegressed('updateKeepsEtag');
    console.log(report);
    expect(report).toMatch(/\{ seed: \d+, path: "[\d:]+"/);
    expect(report).toMatch(/replayPath="[^"]+"/);
    // Create a client, change it: the answer keeps the ETag it had.
    const calls = shrunkCalls(report);
    const label = calls[0]?.[0] ?? '?';
    expect(calls).toEqual([
      expect.stringMatching(new RegExp(String.raw`^${label} = POST /clients \{`)),
      expect.stringMatching(new RegExp(String.raw`^PATCH /clients/\{${label}\} \{.+\}`)),
    ]);
    expect(report).toContain(`the ETag changes when the client changes: ${label} changed, and its answer's ETag is the one it had`);

    // The report's seed, path and replayPath (FUZZ_SEED, FUZZ_PATH, FUZZ_REPLAY_PATH) run that sequence again, and only it.
    const seed = Number(/\{ seed: (-?\d+)/.exec(report)![1]);
    const path = /path: "([\d:]+)"/.exec(report)![1];
    const replayPath = /replayPath="([^"]+)"/.exec(report)![1];
    const replayed = await fuzzRegressed('updateKeepsEtag', { seed, path, replayPath });
    expect(replayed).toMatch(/^Property failed after 1 tests/);
    expect(shrunkCalls(replayed)).toEqual(calls);
  }, 600_000);

  it('a cursor that skips a row', async () => {
    const report = await fuzzRegressed('listSkipsRow');
    console.log(report);
    // A few clients, a walk of a page and the next: the second page leaves out its first row.
    const calls = shrunkCalls(report);
    expect(calls.length).toBeLessThanOrEqual(5);
    expect(calls.slice(-2)).toEqual([
      expect.stringMatching(/^GET \/clients\?limit=\d&deleted=\w+ \(a new list walk\)/),
      expect.stringMatching(/^GET \/clients\?limit=\d&cursor=/),
    ]);
    expect(report).toMatch(/a list walk shows every client that matched throughout it: it missed [A-D]/);
  }, 600_000);
});
