/**
 * The Arazzo workflows of spec/workflows/ pass against the real server, run by Redocly's
 * `respect`: each chain of operations the spec's links describe (a create's id to its read,
 * update, delete and restore; an ETag to If-Match; a cursor to the next page; a minted token to
 * the next call and its revoke; a webhook endpoint to its operations; an event to its client)
 * holds on this server, and every answer on the way is one the spec documents.
 *
 *   npm run test:workflows                                   (PGlite)
 *   TEST_DATABASE_URL=postgres://… npm run test:workflows    (PostgreSQL)
 *
 * test/judges/workflow-mismatches.test.ts shows that the workflows fail on regressions that
 * live between calls.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/server.js';
import { runWorkflowFile, workflowFiles, workflowInputs } from '../support/workflows.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.close());

describe('the workflows of spec/workflows/', () => {
  it('are the ones this test knows how to give inputs to', () => {
    expect(workflowFiles()).toEqual(Object.keys(workflowInputs).sort());
  });

  it.each(workflowFiles())(
    '%s passes, every step run',
    async (file) => {
      const inputs = await workflowInputs[file]!(server);
      const run = await runWorkflowFile(file, server.serverUrl, inputs);
      expect(run.failures, run.output).toEqual([]);
      expect(run.exitCode, run.output).toBe(0);
      expect(run.declaredSteps.length).toBeGreaterThan(0);
      expect(run.executedSteps).toEqual(run.declaredSteps);
    },
    120_000,
  );
});
