/** GET /clients: newest first, keyset pages, search, sync and the deleted filter. */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClientResource, ClientsApi, paths } from '../../client/index.js';
import { readJson } from '../support/json.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { specCheckingFetch } from '../support/spec-check.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.close());

type ListQuery = NonNullable<paths['/clients']['get']['parameters']['query']>;

async function page(api: ClientsApi, query: ListQuery) {
  const { data, error, response } = await api.GET('/clients', { params: { query } });
  expect(error, JSON.stringify(error)).toBeUndefined();
  expect(response.status).toBe(200);
  return data!;
}

/** Every page from the first, `limit` at a time; `between` runs after each page. */
async function walk(api: ClientsApi, query: ListQuery, between: () => Promise<void> = async () => {}) {
  const seen: ClientResource[] = [];
  const sizes: number[] = [];
  let cursor: string | null = null;
  do {
    const body = await page(api, cursor === null ? query : { ...query, cursor });
    seen.push(...body.data);
    sizes.push(body.data.length);
    cursor = body.nextCursor;
    await between();
  } while (cursor !== null && sizes.length < 50);
  return { seen, sizes };
}

async function createMany(api: ClientsApi, count: number, name = (i: number) => `Client ${i}`): Promise<ClientResource[]> {
  const created: ClientResource[] = [];
  for (let i = 0; i < count; i++) {
    const { data, response } = await api.POST('/clients', { body: { name: name(i) } });
    expect(response.status).toBe(201);
    created.push(data!.data);
  }
  return created;
}

/** The order the database itself gives: created_at then id, newest first. */
async function idsNewestFirst(orgId: string): Promise<string[]> {
  const rows = await server.database.db
    .selectFrom('clients')
    .select('id')
    .where('org_id', '=', orgId)
    .where('deleted_at', 'is', null)
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .execute();
  return rows.map((r) => r.id);
}

describe('walking the cursor', () => {
  it('over 23 clients 5 at a time sees each exactly once, newest first', async () => {
    const { api, token } = await server.tenant({ plan: 'studio' });
    const created = await createMany(api, 23);
    const { seen, sizes } = await walk(api, { limit: 5 });
    expect(sizes).toEqual([5, 5, 5, 5, 3]);
    expect(seen.map((c) => c.id)).toEqual(await idsNewestFirst(token.orgId));
    expect(new Set(seen.map((c) => c.id))).toEqual(new Set(created.map((c) => c.id)));
  });

  it('sees each of the 23 exactly once while clients are created between pages', async () => {
    const { api } = await server.tenant({ plan: 'studio' });
    const created = await createMany(api, 23);
    let added = 0;
    const { seen, sizes } = await walk(api, { limit: 5 }, async () => {
      await createMany(api, 2, (i) => `Newcomer ${added++}-${i}`);
    });
    expect(sizes).toEqual([5, 5, 5, 5, 3]);
    expect(seen.map((c) => c.id).sort()).toEqual(created.map((c) => c.id).sort());
    // The newcomers are newer than the walk's start: the next walk's first page begins with them.
    const first = await page(api, { limit: 10 });
    expect(first.data.every((c) => c.name.startsWith('Newcomer'))).toBe(true);
  });

  it('is exact to the microsecond: rows within one millisecond, and rows of the same instant', async () => {
    const { api, token } = await server.tenant({ plan: 'studio' });
    // 23 rows inside one millisecond, several sharing an instant: a cursor that went through a JS
    // Date (milliseconds) would skip or repeat them; only (created_at µs, id) orders them.
    const micros = [1, 1, 1, 2, 3, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 987, 987, 999, 999, 0];
    await server.database.db
      .insertInto('clients')
      .values(
        micros.map((us, i) => ({
          org_id: token.orgId,
          env: token.env,
          name: `Tick ${i}`,
          created_at: sql<Date>`${`2026-03-01T12:00:00.${String(us).padStart(6, '0')}Z`}::timestamptz`,
          updated_at: sql<Date>`now()`,
        })),
      )
      .execute();
    for (const limit of [1, 2, 5, 7]) {
      const { seen } = await walk(api, { limit });
      expect(
        seen.map((c) => c.id),
        `limit ${limit}`,
      ).toEqual(await idsNewestFirst(token.orgId));
    }
  });

  it('gives no nextCursor on the last page, nor on an empty list', async () => {
    const { api } = await server.tenant();
    expect(await page(api, {})).toEqual({ data: [], nextCursor: null });
    await createMany(api, 3);
    const exact = await page(api, { limit: 3 });
    expect(exact.data).toHaveLength(3);
    expect(exact.nextCursor).toBeNull();
  });

  it('pages 25 by default and up to 100', async () => {
    const { api } = await server.tenant({ plan: 'studio' });
    await createMany(api, 101);
    const first = await page(api, {});
    expect(first.data).toHaveLength(25);
    expect(first.nextCursor).toEqual(expect.any(String));
    const big = await page(api, { limit: 100 });
    expect(big.data).toHaveLength(100);
    const rest = await page(api, { limit: 100, cursor: big.nextCursor! });
    expect(rest).toMatchObject({ data: [expect.anything()], nextCursor: null });
  });
});

describe('q', () => {
  let api: ClientsApi;
  let names: (query: ListQuery) => Promise<string[]>;
  beforeAll(async () => {
    ({ api } = await server.tenant({ plan: 'studio' }));
    const bodies = [
      { name: 'Acme Anvils' },
      { name: 'Road Runner Ltd', contactName: 'Wile E. COYOTE' },
      { name: 'Globex', email: 'Hank@Globex.test' },
      { name: 'Initech', billingEmail: 'Accounts.Payable@INITECH.test' },
      { name: '100% Cotton_Co' },
      { name: 'Ben&Co' },
      { name: '1000 Cottons' },
      { name: 'Back\\slash' },
      { name: 'Nobody', contactName: 'No One', email: 'no@one.test', billingEmail: 'ap@one.test', notes: 'acme coyote globex initech' },
    ];
    for (const body of bodies) expect((await api.POST('/clients', { body })).response.status).toBe(201);
    names = async (query) => (await page(api, query)).data.map((c) => c.name).sort();
  });

  it.each([
    ['name', 'acme', ['Acme Anvils']],
    ['contact name', 'coyote', ['Road Runner Ltd']],
    ['e-mail', 'hank@GLOBEX', ['Globex']],
    ['billing e-mail', 'accounts.payable@initech', ['Initech']],
    ['several fields at once', 'one', ['Nobody']],
  ])('matches the %s, ignoring case', async (_label, q, expected) => {
    expect(await names({ q })).toEqual(expected);
  });

  it('does not search other fields (notes)', async () => {
    expect(await names({ q: 'acme coyote' })).toEqual([]);
  });

  it('takes %, _ and \\ literally', async () => {
    expect(await names({ q: '0% c' })).toEqual(['100% Cotton_Co']);
    expect(await names({ q: 'n_c' })).toEqual(['100% Cotton_Co']);
    expect(await names({ q: '%' })).toEqual(['100% Cotton_Co']);
    expect(await names({ q: 'k\\s' })).toEqual(['Back\\slash']);
  });

  it('takes reserved characters as sent or percent-encoded (the typed client leaves * ( ) ! as they are)', async () => {
    const { api: own, token } = await server.tenant();
    await createMany(own, 2, (i) => (i === 0 ? 'Wile E. (Super Genius)! *' : 'Road Runner: beep'));
    const search = async (query: ListQuery) => (await page(own, query)).data.map((c) => c.name);
    expect(await search({ q: '(super genius)!' })).toEqual(['Wile E. (Super Genius)! *']);
    expect(await search({ q: '*' })).toEqual(['Wile E. (Super Genius)! *']);
    // As curl sends them: nothing percent-encoded but the space.
    const raw = async (query: string) => {
      const response = await specCheckingFetch()(
        new Request(`${server.baseUrl}/clients?${query}`, { headers: { Authorization: `Bearer ${token.token}` } }),
      );
      expect(response.status).toBe(200);
      return ((await response.json()) as { data: ClientResource[] }).data.map((c) => c.name);
    };
    expect(await raw('q=r:%20beep')).toEqual(['Road Runner: beep']);
    expect(await raw('q=r%3A%20beep')).toEqual(['Road Runner: beep']);
    expect(await raw('updatedSince=2000-01-01T00:00:00Z&q=)!%20*')).toEqual(['Wile E. (Super Genius)! *']);
  });

  it('trims the search text, and pages through the matches', async () => {
    expect(await names({ q: '  COTTON ' })).toEqual(['100% Cotton_Co', '1000 Cottons']);
    const { seen, sizes } = await walk(api, { q: 'o', limit: 2 });
    expect(sizes.length).toBeGreaterThan(2);
    expect(new Set(seen.map((c) => c.id)).size).toBe(seen.length);
    expect(seen.every((c) => [c.name, c.contactName, c.email, c.billingEmail].some((v) => v?.toLowerCase().includes('o')))).toBe(true);
  });
});

describe('deleted', () => {
  it('exclude (the default) hides deleted clients; include shows both; only shows the deleted', async () => {
    const { api } = await server.tenant();
    const [kept, gone] = await createMany(api, 2);
    expect((await api.DELETE('/clients/{id}', { params: { path: { id: gone!.id } } })).response.status).toBe(200);
    const ids = async (query: ListQuery) => (await page(api, query)).data.map((c) => c.id);
    expect(await ids({})).toEqual([kept!.id]);
    expect(await ids({ deleted: 'exclude' })).toEqual([kept!.id]);
    expect(await ids({ deleted: 'include' })).toEqual([gone!.id, kept!.id]);
    expect(await ids({ deleted: 'only' })).toEqual([gone!.id]);
    expect((await page(api, { deleted: 'only' })).data[0]!.deletedAt).toEqual(expect.any(String));
  });
});

describe('updatedSince', () => {
  it('keeps clients updated at or after the moment; deletions show with deleted=include', async () => {
    const { api } = await server.tenant();
    const [a, b, c] = await createMany(api, 3);
    await new Promise((r) => setTimeout(r, 5));
    const patched = await api.PATCH('/clients/{id}', { params: { path: { id: a!.id } }, body: { notes: 'changed' } });
    const since = patched.data!.data.updatedAt;
    expect(since > a!.updatedAt).toBe(true);
    await api.DELETE('/clients/{id}', { params: { path: { id: c!.id } } });
    const ids = async (query: ListQuery) => (await page(api, query)).data.map((x) => x.id).sort();
    expect(await ids({ updatedSince: since })).toEqual([a!.id]);
    expect(await ids({ updatedSince: since, deleted: 'include' })).toEqual([a!.id, c!.id].sort());
    expect(await ids({ updatedSince: b!.updatedAt, deleted: 'include' })).toEqual([a!.id, b!.id, c!.id].sort());
    expect(await ids({ updatedSince: '2999-01-01T00:00:00Z' })).toEqual([]);
  });

  it('compares to the microsecond, in any time zone', async () => {
    const { api, token } = await server.tenant();
    const [client] = await createMany(api, 1);
    await server.database.db
      .updateTable('clients')
      .set({ updated_at: sql<Date>`'2026-05-05T10:00:00.123456Z'::timestamptz` })
      .where('id', '=', client!.id)
      .execute();
    const count = async (updatedSince: string) => (await page(api, { updatedSince })).data.length;
    expect(await count('2026-05-05T10:00:00.123456Z')).toBe(1);
    expect(await count('2026-05-05T10:00:00.123457Z')).toBe(0);
    expect(await count('2026-05-05T11:00:00.123456+01:00')).toBe(1);
    expect(await count('2026-05-05T11:00:00.123457+01:00')).toBe(0);
    expect(token.env).toBe('test');
  });
});

describe('bad parameters are a 400 naming the parameter', () => {
  let token: string;
  beforeAll(async () => {
    token = (await server.tenant()).token.token;
  });

  async function get(query: string) {
    const response = await fetch(`${server.baseUrl}/clients?${query}`, { headers: { Authorization: `Bearer ${token}` } });
    return { status: response.status, body: await readJson(response) };
  }

  const notOurs = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  it.each([
    ['limit=0', 'limit'],
    ['limit=101', 'limit'],
    ['limit=abc', 'limit'],
    ['limit=2.5', 'limit'],
    ['limit=', 'limit'],
    ['limit=5&limit=6', 'limit'],
    ['deleted=all', 'deleted'],
    ['deleted=', 'deleted'],
    ['q=', 'q'],
    ['q=%20%20', 'q'],
    [`q=${'x'.repeat(201)}`, 'q'],
    ['updatedSince=2026-01-01', 'updatedSince'],
    ['updatedSince=yesterday', 'updatedSince'],
    ['updatedSince=2026-01-01T00:00:00', 'updatedSince'],
    ['updatedSince=2026-02-30T00:00:00Z', 'updatedSince'],
    // Percent-encoded as clients send it: the pattern lets these through, the calendar does not.
    ['updatedSince=2026-02-30T00%3A00%3A00Z', 'updatedSince'],
    ['updatedSince=2026-02-29T00%3A00%3A00Z', 'updatedSince'],
    ['updatedSince=2100-02-29T00%3A00%3A00Z', 'updatedSince'],
    ['updatedSince=2026-04-31T00%3A00%3A00Z', 'updatedSince'],
    ['updatedSince=0000-01-01T00:00:00Z', 'updatedSince'],
    ['updatedSince=2026-01-01T00:00:00%2B23:00', 'updatedSince'],
    ['updatedSince=2026-06-30T23:59:60Z', 'updatedSince'],
    ['updatedSince=2026-01-01T24:00:00Z', 'updatedSince'],
    ['updatedSince=2026-13-01T00:00:00Z', 'updatedSince'],
    ['cursor=', 'cursor'],
    ['cursor=not%20base64', 'cursor'],
    ['cursor=abc', 'cursor'],
    [`cursor=${notOurs({ id: 1 })}`, 'cursor'],
    [`cursor=${notOurs(['2026-02-30T00:00:00.000000Z', '497f6eca-6276-4993-bfeb-53cbbbba6f08'])}`, 'cursor'],
    [`cursor=${notOurs(['2026-01-01T00:00:00.000000Z', 'not-a-uuid'])}`, 'cursor'],
    [`cursor=${'a'.repeat(201)}`, 'cursor'],
    ['page=2', 'page'],
    ['orgId=25b2c2d5-a7fc-47d0-89e4-8709a1560bfa', 'orgId'],
  ])('%s', async (query, field) => {
    const { status, body } = await get(query);
    expect(status).toBe(400);
    expect(body.error.code).toBe('validation_failed');
    expect(Object.keys(body.error.fields!)).toEqual([field]);
  });

  it('takes RFC 3339 date-times in their other forms', async () => {
    for (const since of [
      '2024-02-29T00:00:00Z',
      '2000-02-29T23:59:59Z',
      '2026-01-01T00:00:00Z',
      '2026-01-01t00:00:00.123456789z',
      '2026-01-01T00:00:00-15:59',
      '2026-01-01T00:00:00+14:00',
    ]) {
      expect((await get(`updatedSince=${encodeURIComponent(since)}`)).status, since).toBe(200);
    }
  });
});

describe('query parameters reach the handler as the spec types them', () => {
  // Express 5 parses req.query anew on every read; the validator's coercion and defaults must
  // still be what the handler sees (limit a number, deleted defaulted), or `limit + 1` would be "51".
  it('coerced, and with the defaults filled in', async () => {
    const seen: unknown[] = [];
    const spy = await startTestServer({
      handlers: {
        listClients: async ({ query }) => {
          seen.push(query);
          return { status: 200, body: { data: [], nextCursor: null }, headers: { 'Read-Consistency': 'strong' } };
        },
      },
    });
    try {
      const { api } = await spy.tenant();
      await api.GET('/clients', { params: { query: { limit: 5, q: 'x' } } });
      await api.GET('/clients');
      expect(seen).toEqual([
        { limit: 5, q: 'x', deleted: 'exclude' },
        { limit: 25, deleted: 'exclude' },
      ]);
    } finally {
      await spy.close();
    }
  });
});
