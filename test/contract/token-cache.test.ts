/**
 * Tokens are cached for a second per process: no database round trip on the hot path, while a
 * revocation or a plan change made elsewhere is seen within the second, and one made in this
 * process at once. Two apps on one database stand for two server processes; one of them has a
 * clock the test moves, so nothing sleeps.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTokenLookup } from '../../server/auth/token-lookup.js';
import { startTestServer, type TestServer } from '../support/server.js';

let a: TestServer;
let b: TestServer;
let bNow = 1_000_000;

beforeAll(async () => {
  a = await startTestServer();
  b = await startTestServer(
    { tokenLookup: createTokenLookup(a.database.db, { ttlMs: 1000, clock: () => bNow }) },
    { database: a.database },
  );
});
afterAll(async () => {
  await b?.close();
  await a?.close();
});

it('a token revoked in another process is refused there within the second', async () => {
  const { api: onA, token } = await a.tenant();
  const onB = b.client(token.token);
  expect((await onB.GET('/clients')).response.status).toBe(200);

  const revoked = await onA.DELETE('/tokens/{id}', { params: { path: { id: token.tokenId } } });
  expect(revoked.response.status).toBe(200);
  // Still within the second on B: its cached copy answers.
  bNow += 999;
  expect((await onB.GET('/clients')).response.status).toBe(200);
  bNow += 1;
  const refused = await onB.GET('/clients');
  expect(refused.response.status).toBe(401);
  expect(refused.error!.error.message).toMatch(/revoked/);
});

it('a token revoked in this process is refused at once, even while it was cached', async () => {
  const { api, token } = await a.tenant();
  expect((await api.GET('/clients')).response.status).toBe(200);
  await api.DELETE('/tokens/{id}', { params: { path: { id: token.tokenId } } });
  expect((await api.GET('/clients')).response.status).toBe(401);
});

it('a plan change is seen within the second', async () => {
  const { token } = await a.tenant({ plan: 'free' });
  const onB = b.client(token.token);
  const po = () => onB.POST('/clients', { body: { name: 'PO', requirePoNumber: true } });
  expect((await po()).response.status).toBe(402);
  await a.database.db.updateTable('organisations').set({ plan: 'studio' }).where('id', '=', token.orgId).execute();
  bNow += 1000;
  expect((await po()).response.status).toBe(201);
});

it('a new token works at once, though a guess at its prefix was cached as unknown', async () => {
  const lookups = createTokenLookup(a.database.db, { clock: () => bNow });
  expect(await lookups.find('AAAAAAAAAAAA')).toBeUndefined();
  const { token } = await a.tenant();
  expect((await lookups.find(token.token.split('_')[2]!))?.id).toBe(token.tokenId);
});
