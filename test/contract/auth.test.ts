/** Every way a token can fail is a 401 `unauthenticated` that says which, without leaking prefixes. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClientsApi } from '../../client/index.js';
import { readJson } from '../support/json.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { specCheckingFetch } from '../support/spec-check.js';
import type { MintedToken } from '../../server/tokens/tokens.service.js';

let server: TestServer;
let token: MintedToken;

beforeAll(async () => {
  server = await startTestServer();
  token = (await server.tenant()).token;
});
afterAll(() => server?.close());

async function postWith(authorization: string | undefined) {
  const headers: Record<string, string> = { 'Content-Type': 'application/json' };
  if (authorization !== undefined) headers.Authorization = authorization;
  const response = await specCheckingFetch()(
    new Request(`${server.baseUrl}/clients`, { method: 'POST', headers, body: '{"name":"Auth"}' }),
  );
  return { status: response.status, body: await readJson(response) };
}

describe('401 unauthenticated', () => {
  it('no Authorization header', async () => {
    const { status, body } = await postWith(undefined);
    expect(status).toBe(401);
    expect(body.error.code).toBe('unauthenticated');
    expect(body.error.message).toMatch(/No token/);
  });

  it.each([['Basic dXNlcjpwYXNz'], ['Bearer'], ['Bearer a b'], ['Token abc']])(
    'a header that is not "Bearer <token>": %s',
    async (header) => {
      const { status, body } = await postWith(header);
      expect(status).toBe(401);
      expect(body.error.message).toMatch(/Bearer <token>|malformed/);
    },
  );

  it.each([
    ['wrong prefix word', () => token.token.replace('hsk_', 'sk_')],
    ['unknown env', () => token.token.replace('_test_', '_prod_')],
    ['short secret', () => token.token.slice(0, -1)],
    ['non-base62 character', () => `${token.token.slice(0, -1)}-`],
    ['extra part', () => `${token.token}_x`],
  ])('a malformed token (%s)', async (_label, make) => {
    const { status, body } = await postWith(`Bearer ${make()}`);
    expect(status).toBe(401);
    expect(body.error.message).toMatch(/malformed/);
  });

  it('an unknown prefix and a wrong secret get the same answer', async () => {
    const parts = token.token.split('_');
    const unknownPrefix = `hsk_test_${'A'.repeat(12)}_${parts[3]}`;
    const wrongSecret = `hsk_test_${parts[2]}_${'B'.repeat(32)}`;
    const a = await postWith(`Bearer ${unknownPrefix}`);
    const b = await postWith(`Bearer ${wrongSecret}`);
    expect(a.status).toBe(401);
    expect(b.status).toBe(401);
    expect(a.body).toEqual(b.body);
    expect(a.body.error.message).toMatch(/not valid/);
  });

  it('the right prefix and secret under the other environment is not valid', async () => {
    const { status, body } = await postWith(`Bearer ${token.token.replace('_test_', '_live_')}`);
    expect(status).toBe(401);
    expect(body.error.message).toMatch(/not valid/);
  });

  it('a revoked token', async () => {
    const revoked = (await server.tenant()).token;
    await server.database.db.updateTable('api_tokens').set({ revoked_at: new Date() }).where('id', '=', revoked.tokenId).execute();
    const { status, body } = await postWith(`Bearer ${revoked.token}`);
    expect(status).toBe(401);
    expect(body.error.message).toMatch(/revoked/);
  });

  it('an expired token', async () => {
    const expired = (await server.tenant()).token;
    await server.database.db
      .updateTable('api_tokens')
      .set({ expires_at: new Date(Date.now() - 1000) })
      .where('id', '=', expired.tokenId)
      .execute();
    const { status, body } = await postWith(`Bearer ${expired.token}`);
    expect(status).toBe(401);
    expect(body.error.message).toMatch(/expired/);
  });

  it('comes before validation: a bad body without a token is 401, and writes nothing', async () => {
    const api = createClientsApi({ baseUrl: server.baseUrl, token: 'nope', fetch: specCheckingFetch() });
    const { error, response } = await api.POST('/clients', { body: { nmae: 'x' } as never });
    expect(response.status).toBe(401);
    expect(error!.error.code).toBe('unauthenticated');
  });
});

describe('a valid token', () => {
  it('works, case-insensitive scheme and all', async () => {
    expect((await postWith(`Bearer ${token.token}`)).status).toBe(201);
    expect((await postWith(`bearer ${token.token}`)).status).toBe(201);
  });

  it('without clients:write cannot create: 403 naming the scope', async () => {
    const readOnly = await server.tenant({ scopes: ['clients:read'] });
    const { error, response } = await readOnly.api.POST('/clients', { body: { name: 'Nope' } });
    expect(response.status).toBe(403);
    expect(error!.error.code).toBe('forbidden');
    expect(error!.error.message).toContain('clients:write');
  });
});

describe('stored tokens', () => {
  it('keep only a hash of the secret', async () => {
    const row = await server.database.db.selectFrom('api_tokens').selectAll().where('id', '=', token.tokenId).executeTakeFirstOrThrow();
    const secretPart = token.token.split('_')[3]!;
    expect(JSON.stringify(row)).not.toContain(secretPart);
    expect(Buffer.from(row.secret_hash).toString('utf8')).not.toContain(secretPart);
    expect(row.prefix).toBe(token.token.split('_')[2]);
  });
});
