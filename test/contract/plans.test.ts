/** Plan limits and feature gates on create: 402 with the cheapest plan that allows it. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClientsApi } from '../../client/index.js';
import { startTestServer, type TestServer } from '../support/server.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.close());

async function fill(api: ClientsApi, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const { response } = await api.POST('/clients', { body: { name: `Client ${i}` } });
    expect(response.status).toBe(201);
  }
}

async function activeRows(orgId: string, env: 'test' | 'live' = 'test'): Promise<number> {
  const rows = await server.database.db
    .selectFrom('clients')
    .select('id')
    .where('org_id', '=', orgId)
    .where('env', '=', env)
    .where('deleted_at', 'is', null)
    .execute();
  return rows.length;
}

describe('active clients per plan', () => {
  it('free: the fourth is 402 plan_limit_reached, requiredPlan pro; a deleted one frees a slot', async () => {
    const { api, token } = await server.tenant({ plan: 'free' });
    await fill(api, 3);
    const { error, response } = await api.POST('/clients', { body: { name: 'Fourth' } });
    expect(response.status).toBe(402);
    expect(error!.error).toMatchObject({ code: 'plan_limit_reached', requiredPlan: 'pro', feature: 'clients.max' });
    expect(await activeRows(token.orgId)).toBe(3);

    await server.database.db
      .updateTable('clients')
      .set({ deleted_at: new Date() })
      .where('org_id', '=', token.orgId)
      .where('name', '=', 'Client 0')
      .execute();
    expect((await api.POST('/clients', { body: { name: 'Fourth, again' } })).response.status).toBe(201);
  });

  it('free: the test quota and the live quota are separate', async () => {
    const { api, token } = await server.tenant({ plan: 'free', env: 'test' });
    await fill(api, 3);
    const live = await server.mint({ orgName: (await orgName(token.orgId))!, env: 'live' });
    await fill(server.client(live.token), 3);
    expect(await activeRows(token.orgId, 'live')).toBe(3);
  });

  it('pro: stops at 100 with requiredPlan studio', async () => {
    const { api } = await server.tenant({ plan: 'pro' });
    await fill(api, 100);
    const { error, response } = await api.POST('/clients', { body: { name: '101st' } });
    expect(response.status).toBe(402);
    expect(error!.error).toMatchObject({ code: 'plan_limit_reached', requiredPlan: 'studio', feature: 'clients.max' });
  });

  it('studio: does not stop', async () => {
    const { api, token } = await server.tenant({ plan: 'studio' });
    await fill(api, 105);
    expect(await activeRows(token.orgId)).toBe(105);
  });

  it('two creates racing for the last slot: one 201, one 402, never over the limit', async () => {
    for (let round = 0; round < 5; round++) {
      const { api, token } = await server.tenant({ plan: 'free' });
      await fill(api, 2);
      const answers = await Promise.all([0, 1, 2].map((i) => api.POST('/clients', { body: { name: `Racer ${i}` } })));
      expect(answers.map((a) => a.response.status).sort()).toEqual([201, 402, 402]);
      expect(await activeRows(token.orgId)).toBe(3);
    }
  });
});

describe('requirePoNumber', () => {
  it.each([['free'], ['pro']] as const)('true on %s is 402 plan_required, requiredPlan studio', async (plan) => {
    const { api, token } = await server.tenant({ plan });
    const { error, response } = await api.POST('/clients', { body: { name: 'PO', requirePoNumber: true } });
    expect(response.status).toBe(402);
    expect(error!.error).toMatchObject({ code: 'plan_required', requiredPlan: 'studio', feature: 'clients.requirePoNumber' });
    expect(await activeRows(token.orgId)).toBe(0);
  });

  it('false is fine on any plan, and true is fine on studio', async () => {
    const free = await server.tenant({ plan: 'free' });
    expect((await free.api.POST('/clients', { body: { name: 'PO', requirePoNumber: false } })).response.status).toBe(201);
    const studio = await server.tenant({ plan: 'studio' });
    const { data } = await studio.api.POST('/clients', { body: { name: 'PO', requirePoNumber: true } });
    expect(data!.data.requirePoNumber).toBe(true);
  });
});

async function orgName(orgId: string) {
  return (await server.database.db.selectFrom('organisations').select('name').where('id', '=', orgId).executeTakeFirst())?.name;
}
