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

describe('Cache-Control: no-store', () => {
  it('POST /tokens: on the answer with the token, and on its replay without it', async () => {
    const headers = { 'Idempotency-Key': randomUUID() };
    const body = { name: 'Shown once', scopes: ['clients:read' as const] };
    const first = await api.POST('/tokens', { body, headers });
    expect(first.response.status).toBe(201);
    expect(first.data!.token).toMatch(/^hsk_test_/);
    expect(noStore(first.response)).toBe('no-store');
    const replay = await api.POST('/tokens', { body, headers });
    expect(replay.response.headers.get('Idempotent-Replayed')).toBe('true');
    expect(replay.data!.token).toBeUndefined();
    expect(noStore(replay.response)).toBe('no-store');
  });

  it('POST /webhook-endpoints and rotate-secret: on the answers with the signing secret, and on their replays', async () => {
    const create = { 'Idempotency-Key': randomUUID() };
    const body = { url: 'https://hooks.example.com/in', enabledEvents: ['*' as const] };
    const created = await api.POST('/webhook-endpoints', { body, headers: create });
    expect(created.response.status).toBe(201);
    expect(created.data!.secret).toMatch(/^whsec_/);
    expect(noStore(created.response)).toBe('no-store');
    const createdAgain = await api.POST('/webhook-endpoints', { body, headers: create });
    expect(createdAgain.response.headers.get('Idempotent-Replayed')).toBe('true');
    expect(createdAgain.data!.secret).toBeUndefined();
    expect(noStore(createdAgain.response)).toBe('no-store');

    const rotate = { 'Idempotency-Key': randomUUID() };
    const params = { path: { id: created.data!.data.id } };
    const rotated = await api.POST('/webhook-endpoints/{id}/rotate-secret', { params, headers: rotate });
    expect(rotated.response.status).toBe(200);
    expect(rotated.data!.secret).toMatch(/^whsec_/);
    expect(noStore(rotated.response)).toBe('no-store');
    const rotatedAgain = await api.POST('/webhook-endpoints/{id}/rotate-secret', { params, headers: rotate });
    expect(rotatedAgain.response.headers.get('Idempotent-Replayed')).toBe('true');
    expect(rotatedAgain.data!.secret).toBeUndefined();
    expect(noStore(rotatedAgain.response)).toBe('no-store');
  });

  it('is not set on answers that show no secret', async () => {
    const listed = await api.GET('/tokens');
    expect(listed.response.status).toBe(200);
    expect(noStore(listed.response)).toBeNull();
    const endpoints = await api.GET('/webhook-endpoints');
    expect(noStore(endpoints.response)).toBeNull();
  });
});
