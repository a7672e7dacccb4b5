/**
 * Answers that show a secret carry `Cache-Control: no-store` (the spec fixes the header on those
 * responses; the router sets what the spec fixes): the token `POST /tokens` mints, the signing
 * secret of `POST /webhook-endpoints` and of `POST /webhook-endpoints/{id}/rotate-secret`. A replay
 * with the same Idempotency-Key shows no secret and carries `no-store` all the same, as the spec
 * says. The spec-checking fetch checks the header's presence and value on every such answer.
 */
import { randomUUID } from 'node:crypto';
import { beforeAll, afterAll, describe, expect, it } from 'vitest';
import type { ClientsApi } from '../../client/index.js';
import { startTestServer, type TestServer } from '../support/server.js';

let server: TestServer;
let api: ClientsApi;
beforeAll(async () => {
  server = await startTestServer();
  ({ api } = await server.tenant({ plan: 'pro' }));
});
afterAll(() => server?.close());

const noStore = (response: Response) => response.headers.get('Cache-Control');

/**
 * Sends one keyed request twice: the first answer shows the secret (`shown` reads it) with
 * no-store; the replay shows none, with no-store all the same. Returns the first answer's body.
 */
async function shownOnceNeverStored<T>(
  send: (headers: Record<string, string>) => Promise<{ response: Response; data?: T }>,
  shown: (data: T) => string | undefined,
  form: RegExp,
): Promise<T> {
  const headers = { 'Idempotency-Key': randomUUID() };
  const first = await send(headers);
  expect(first.response.ok).toBe(true);
  expect(shown(first.data!)).toMatch(form);
  expect(noStore(first.response)).toBe('no-store');
  const replay = await send(headers);
  expect(replay.response.headers.get('Idempotent-Replayed')).toBe('true');
  expect(shown(replay.data!)).toBeUndefined();
  expect(noStore(replay.response)).toBe('no-store');
  return first.data!;
}

describe('Cache-Control: no-store', () => {
  it('POST /tokens: on the answer with the token, and on its replay without it', async () => {
    const body = { name: 'Shown once', scopes: ['clients:read' as const] };
    await shownOnceNeverStored(
      (headers) => api.POST('/tokens', { body, headers }),
      (data) => data.token,
      /^hsk_test_/,
    );
  });

  it('POST /webhook-endpoints and rotate-secret: on the answers with the signing secret, and on their replays', async () => {
    const body = { url: 'https://hooks.example.com/in', enabledEvents: ['*' as const] };
    const created = await shownOnceNeverStored(
      (headers) => api.POST('/webhook-endpoints', { body, headers }),
      (data) => data.secret,
      /^whsec_/,
    );
    const params = { path: { id: created.data.id } };
    await shownOnceNeverStored(
      (headers) => api.POST('/webhook-endpoints/{id}/rotate-secret', { params, headers }),
      (data) => data.secret,
      /^whsec_/,
    );
  });

  it('is not set on answers that show no secret', async () => {
    const listed = await api.GET('/tokens');
    expect(listed.response.status).toBe(200);
    expect(noStore(listed.response)).toBeNull();
    const endpoints = await api.GET('/webhook-endpoints');
    expect(noStore(endpoints.response)).toBeNull();
  });
});
