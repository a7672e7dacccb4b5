/**
 * Tenancy: for every operation on clients, a token of another organisation and a token of the
 * owner's other environment get 404 (or a list without the owner's clients), and nothing of the
 * owner's changes. Runs on PGlite, and on PostgreSQL when TEST_DATABASE_URL is set.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClientResource, ClientsApi } from '../../client/index.js';
import { startTestServer, type TestServer } from '../support/server.js';

let server: TestServer;
/** The owner (organisation A, test mode): one active client and one deleted. */
let owner: { api: ClientsApi; orgId: string };
let active: ClientResource;
let activeEtag: string;
let deleted: ClientResource;
const INTRUDERS = ['another organisation', 'the other environment'] as const;
const intruders = {} as Record<(typeof INTRUDERS)[number], ClientsApi>;

beforeAll(async () => {
  server = await startTestServer();
  const a = await server.tenant({ plan: 'studio', env: 'test' });
  owner = { api: a.api, orgId: a.token.orgId };
  const first = await a.api.POST('/clients', { body: { name: 'Owner Active', email: 'active@owner.test' } });
  active = first.data!.data;
  activeEtag = first.response.headers.get('ETag')!;
  const second = await a.api.POST('/clients', { body: { name: 'Owner Deleted', email: 'deleted@owner.test' } });
  deleted = (await a.api.DELETE('/clients/{id}', { params: { path: { id: second.data!.data.id } } })).data!.data;

  // Another organisation, same environment; and the owner's own organisation in live mode.
  intruders['another organisation'] = (await server.tenant({ plan: 'studio', env: 'test' })).api;
  const orgName = (
    await server.database.db.selectFrom('organisations').select('name').where('id', '=', a.token.orgId).executeTakeFirstOrThrow()
  ).name;
  intruders['the other environment'] = server.client((await server.mint({ orgName, env: 'live' })).token);
  // Each intruder has a client of its own, so an empty answer is not just an empty table.
  for (const api of Object.values(intruders)) {
    expect((await api.POST('/clients', { body: { name: 'Owner lookalike', email: 'active@owner.test' } })).response.status).toBe(201);
  }
});
afterAll(() => server?.close());

async function ownerRows() {
  return server.database.db
    .selectFrom('clients')
    .selectAll()
    .where('org_id', '=', owner.orgId)
    .where('env', '=', 'test')
    .orderBy('id')
    .execute();
}

type Attempt = (api: ClientsApi) => Promise<{ response: Response; error?: { error: { code: string } } | undefined }>;

const singleClientOperations: [string, Attempt][] = [
  ['GET /clients/{id}', (api) => api.GET('/clients/{id}', { params: { path: { id: active.id } } })],
  [
    'PATCH /clients/{id}',
    (api) => api.PATCH('/clients/{id}', { params: { path: { id: active.id } }, body: { name: 'Hijacked', notes: 'x' } }),
  ],
  [
    'PATCH /clients/{id} with the right If-Match',
    (api) =>
      api.PATCH('/clients/{id}', { params: { path: { id: active.id }, header: { 'If-Match': activeEtag } }, body: { name: 'Hijacked' } }),
  ],
  [
    'PATCH /clients/{id} of a deleted client',
    (api) => api.PATCH('/clients/{id}', { params: { path: { id: deleted.id } }, body: { notes: 'x' } }),
  ],
  ['DELETE /clients/{id}', (api) => api.DELETE('/clients/{id}', { params: { path: { id: active.id } } })],
  [
    'DELETE /clients/{id} with If-Match: *',
    (api) => api.DELETE('/clients/{id}', { params: { path: { id: active.id }, header: { 'If-Match': '*' } } }),
  ],
  ['POST /clients/{id}/restore', (api) => api.POST('/clients/{id}/restore', { params: { path: { id: deleted.id } } })],
];

const cases = INTRUDERS.flatMap((who) => singleClientOperations.map(([operation, attempt]) => [who, operation, attempt] as const));

describe('a single client of another organisation or environment', () => {
  it.each(cases)('%s: %s is 404 not_found and changes nothing', async (who, _operation, attempt) => {
    const before = await ownerRows();
    const { response, error } = await attempt(intruders[who]);
    expect(response.status).toBe(404);
    expect(error!.error.code).toBe('not_found');
    expect(await ownerRows()).toEqual(before);
  });
});

describe('GET /clients', () => {
  it.each(INTRUDERS.map((who) => [who]))("%s sees none of the owner's clients, whatever the filter", async (who) => {
    const api = intruders[who];
    const ownerIds = [active.id, deleted.id];
    for (const query of [
      {},
      { deleted: 'include' as const },
      { deleted: 'only' as const },
      { q: 'owner' },
      { updatedSince: '2000-01-01T00:00:00Z', deleted: 'include' as const },
    ]) {
      const { data } = await api.GET('/clients', { params: { query } });
      expect(
        data!.data.map((c) => c.id).filter((id) => ownerIds.includes(id)),
        JSON.stringify(query),
      ).toEqual([]);
      expect(data!.data.every((c) => c.name === 'Owner lookalike')).toBe(true);
    }
  });

  it('the owner still sees its own, and only its own', async () => {
    const { data } = await owner.api.GET('/clients', { params: { query: { deleted: 'include' } } });
    expect(data!.data.map((c) => c.id).sort()).toEqual([active.id, deleted.id].sort());
    expect((await owner.api.GET('/clients/{id}', { params: { path: { id: active.id } } })).data!.data).toEqual(active);
  });

  it("a cursor made from the owner's rows shows the intruder nothing of the owner's", async () => {
    const { data } = await owner.api.GET('/clients', { params: { query: { limit: 1, deleted: 'include' } } });
    const cursor = data!.nextCursor!;
    for (const api of Object.values(intruders)) {
      const page = await api.GET('/clients', { params: { query: { cursor, deleted: 'include' } } });
      expect(page.data!.data.every((c) => c.name === 'Owner lookalike')).toBe(true);
    }
  });
});
