/**
 * Errors never escape the envelope: whatever a step throws, the error handler included, the answer
 * is JSON in the seed's envelope with X-Request-Id, and never Express's HTML page with the stack.
 * The statuses of every operation are provoked in test/contract/status-matrix.test.ts (unknown
 * query names that do not decode, a failure that breaks the error handler, other spellings of
 * ids); here, the probe that once showed the stack, each way the error handler can fail on its
 * own, and Express's mode.
 */
import type { Express } from 'express';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../server/app.js';
import { startTestServer, type TestServer, unreadableError } from '../support/server.js';
import { specCheckingFetch } from '../support/spec-check.js';

const STACK_OR_PAGE = /<!DOCTYPE|<html|<pre|\n\s+at |error-handler|node_modules/i;
const SECRET = 'select secret_hash from api_tokens';

let server: TestServer;
let token: string;
beforeAll(async () => {
  server = await startTestServer({
    handlers: {
      // Throws what the error handler cannot read, nor log.
      getClient: async () => {
        throw unreadableError(SECRET);
      },
      // Breaks the error handler's own answer (the response's json), then fails.
      listClients: async (ctx) => {
        ctx.req.res!.json = () => {
          throw new Error(`json broke: ${SECRET}`);
        };
        throw new Error(SECRET);
      },
      // Fails after its answer has begun: the error handler cannot answer again.
      getEvent: async (ctx) => {
        ctx.req.res!.writeHead(200, { 'Content-Type': 'application/json' });
        ctx.req.res!.write('{"data":');
        throw new Error(SECRET);
      },
    },
  });
  token = (await server.tenant({ plan: 'studio' })).token.token;
});
afterAll(() => server?.close());

const request = (path: string, headers: Record<string, string> = {}) =>
  specCheckingFetch()(new Request(`${server.baseUrl}${path}`, { headers: { Authorization: `Bearer ${token}`, ...headers } }));

async function expectEnvelope(response: Response, status: number, code: string): Promise<Record<string, unknown>> {
  const text = await response.text();
  expect(text).not.toMatch(STACK_OR_PAGE);
  expect(text).not.toContain(SECRET);
  expect(response.headers.get('Content-Type')).toBe('application/json; charset=utf-8');
  expect(response.headers.get('X-Request-Id')).toBeTruthy();
  const body = JSON.parse(text) as { error: Record<string, unknown> };
  expect({ status: response.status, code: body.error.code }).toEqual({ status, code });
  return body.error;
}

describe('the envelope, whatever fails', () => {
  it('GET /healthz?%25=1, the probe that once showed the stack, is a JSON 400 naming the parameter', async () => {
    const response = await specCheckingFetch()(new Request(`${server.baseUrl}/healthz?%25=1`));
    const error = await expectEnvelope(response, 400, 'validation_failed');
    expect(error.fields).toEqual({ '%': expect.any(String) });
  });

  it('an error that cannot be read (every property, its prototype and its keys throw) is a 500', async () => {
    await expectEnvelope(await request('/clients/00000000-0000-4000-8000-000000000000'), 500, 'internal_error');
  });

  it("a failure of the error handler's own answer is answered by the last resort: a 500 with the request's id", async () => {
    const response = await request('/clients', { 'X-Request-Id': 'last-resort-probe' });
    expect(response.headers.get('X-Request-Id')).toBe('last-resort-probe');
    await expectEnvelope(response, 500, 'internal_error');
  });

  it('a failure after the answer began cuts the connection: the client sees a broken answer, never one that looks whole', async () => {
    // Cut before or after the status line reached the client: either way the answer fails.
    const outcome = await fetch(`${server.serverUrl}/events/00000000-0000-4000-8000-000000000000`, {
      headers: { Authorization: `Bearer ${token}` },
    }).then(
      (response) =>
        response.text().then(
          (text) => `whole: ${text}`,
          () => 'broken',
        ),
      () => 'broken',
    );
    expect(outcome).toBe('broken');
  });

  it("Express's own mode is production, whatever NODE_ENV says (test, under the tests)", () => {
    expect(process.env.NODE_ENV).toBe('test');
    const { createServer } = createApp({ db: server.database.db, logger: pino({ level: 'silent' }) });
    const app = createServer().listeners('request')[0] as Express;
    expect(app.get('env')).toBe('production');
  });
});
