/**
 * The workflows fail on regressions that live between calls, which no check of one answer
 * against the spec can see: each answer below is still valid by itself. A server with an injected
 * handler introduces one regression at a time, its own response validation off (as in
 * production), as test/judges/mismatches.test.ts does for the per-operation judges:
 *
 * | regression                                      | the workflow's step that fails             |
 * |-------------------------------------------------|--------------------------------------------|
 * | a restore whose answer loses a field's value    | clientLife/restore (`contactName` kept)    |
 * | a restore whose answer drops a field            | clientLife/restore (also the schema check) |
 * | an update that does not change the ETag         | clientLife/update (`ETag` changed)         |
 *
 * The same server without a regression passes the same workflow, so what fails is the regression
 * and not the injection. And a step's retry is the step: a feed read that comes before the last
 * event shows (as while an older transaction runs), then its retry that finds it, passes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientHandlers } from '../../server/clients/clients.http.js';
import { eventHandlers } from '../../server/events/events.http.js';
import type { Handlers } from '../../server/operations/handler-types.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { runWorkflowFile, workflowInputs } from '../support/workflows.js';

type Regression = 'none' | 'restore loses a value' | 'restore drops a field' | 'update keeps the ETag';
let regression: Regression = 'none';

/** `ctx` with its answers passed through `respond` (the context's fields are getters of its class). */
function answering<C extends object>(ctx: C, respond: C extends { respond: infer R } ? R : never): C {
  return Object.create(ctx, { respond: { value: respond } }) as C;
}

const restoreClient: Handlers['restoreClient'] = (ctx) =>
  clientHandlers.restoreClient(
    answering(ctx, (answer) => {
      const { data } = answer.body;
      if (regression === 'restore loses a value') return ctx.respond({ ...answer, body: { data: { ...data, contactName: null } } });
      if (regression === 'restore drops a field') {
        const { notes: _dropped, ...rest } = data;
        return ctx.respond({ ...answer, body: { data: rest as typeof data } });
      }
      return ctx.respond(answer);
    }),
  );

const updateClient: Handlers['updateClient'] = (ctx) =>
  clientHandlers.updateClient(
    answering(ctx, (answer) => {
      // The ETag the request was made under, as if the change had not moved it.
      const before = ctx.req.get('If-Match');
      if (regression === 'update keeps the ETag' && before) return ctx.respond({ ...answer, headers: { ...answer.headers, ETag: before } });
      return ctx.respond(answer);
    }),
  );

/** How many of the next reads of the feed come before its last event shows (as while an older transaction runs). */
let earlyFeedReads = 0;
const listEvents: Handlers['listEvents'] = async (ctx) => {
  const answer = await eventHandlers.listEvents(ctx);
  if (earlyFeedReads === 0 || answer.body.data.length === 0) return answer;
  earlyFeedReads--;
  return { ...answer, body: { ...answer.body, data: answer.body.data.slice(0, -1) } };
};

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ validateResponses: false, handlers: { restoreClient, updateClient, listEvents } });
});
afterAll(() => server?.close());

const FILE = 'client-life.arazzo.yaml';
const runClientLife = async () => runWorkflowFile(FILE, server.serverUrl, await workflowInputs[FILE]!(server));

describe('the client-life workflow', () => {
  it('passes on the server with the injected handlers when they change nothing', async () => {
    regression = 'none';
    const run = await runClientLife();
    expect(run.failures, run.output).toEqual([]);
    expect(run.exitCode).toBe(0);
  }, 120_000);

  it('fails when a restore answers the client with a value lost', async () => {
    regression = 'restore loses a value';
    const run = await runClientLife();
    expect(run.exitCode).not.toBe(0);
    expect(run.failures).toEqual(["clientLife/restore: success criteria check - $response.body#/data/contactName == 'Mindy Simmons'"]);
  }, 120_000);

  it('fails when a restore answers the client without one of its fields', async () => {
    regression = 'restore drops a field';
    const run = await runClientLife();
    expect(run.exitCode).not.toBe(0);
    expect(run.failures).toContain("clientLife/restore: success criteria check - $response.body#/data/notes == 'Pays on the 1st.'");
    expect(run.failures.some((failure) => failure.startsWith('clientLife/restore: schema check'))).toBe(true);
  }, 120_000);

  it('fails when an update does not change the ETag', async () => {
    regression = 'update keeps the ETag';
    const run = await runClientLife();
    expect(run.exitCode).not.toBe(0);
    expect(run.failures).toEqual(['clientLife/update: success criteria check - $response.header.ETag != $steps.read.outputs.etag']);
  }, 120_000);
});

describe("a step's retry", () => {
  it('is the step: a feed read that came before the last event showed, then its retry that found it, passes the workflow', async () => {
    regression = 'none';
    earlyFeedReads = 1;
    const file = 'idempotent-replay.arazzo.yaml';
    const run = await runWorkflowFile(file, server.serverUrl, await workflowInputs[file]!(server));
    expect(earlyFeedReads).toBe(0);
    expect(run.output).toContain('Retrying step feed');
    expect(run.failures, run.output).toEqual([]);
    expect(run.exitCode).toBe(0);
    expect(run.executedSteps).toEqual(run.declaredSteps);
  }, 120_000);
});
