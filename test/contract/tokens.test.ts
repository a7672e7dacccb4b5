/**
 * The tokens API ("Settings → API"): list, mint, revoke, through the typed client. The last test
 * scans every response this file received: none carries a secret or its hash, except the one
 * answer that minted that token.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClientsApi, type ClientsApi } from '../../client/index.js';
import type { Env } from '../../server/db/schema.js';
import { MAX_ACTIVE_TOKENS, type MintForOrganisation, type MintedToken } from '../../server/tokens/tokens.service.js';
import { usingPostgres } from '../support/database.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { specCheckingFetch } from '../support/spec-check.js';

let server: TestServer;

/** Every response of this file, as text (status line, header fields, body), for the secret scan. */
const responses: { label: string; text: string }[] = [];
const recordingFetch = specCheckingFetch(async (request) => {
  const response = await fetch(request);
  const fields = [...response.headers].map(([name, value]) => `${name}: ${value}`).join('\n');
  responses.push({
    label: `${request.method} ${new URL(request.url).pathname} ${response.status}`,
    text: `${fields}\n\n${await response.clone().text()}`,
  });
  return response;
});

const clientFor = (token: string): ClientsApi => createClientsApi({ baseUrl: server.baseUrl, token, fetch: recordingFetch });

/** Every token this file minted, API or database: the secret scan looks for each. */
const secrets: string[] = [];

async function tenant(request: Partial<MintForOrganisation> = {}): Promise<{ api: ClientsApi; token: MintedToken }> {
  const { token } = await server.tenant(request);
  secrets.push(token.token);
  return { api: clientFor(token.token), token };
}

async function mintThroughApi(
  api: ClientsApi,
  body: { name: string; scopes: ('clients:read' | 'clients:write' | 'tokens:manage')[]; expiresAt?: string | null },
) {
  const answer = await api.POST('/tokens', { body });
  if (answer.data?.token) secrets.push(answer.data.token);
  return answer;
}

const TOKEN_FIELDS = ['createdAt', 'env', 'expiresAt', 'id', 'lastUsedAt', 'name', 'prefix', 'revokedAt', 'scopes'];

/**
 * Tokens straight in the database, in one statement (so all of one `created_at`): `count` of the
 * tenant's, revoked, expired or expiring as asked. Their secrets are no one's.
 */
async function insertTokens(
  tenant: { orgId: string; env: Env },
  count: number,
  state: { revokedAt?: Date; expiresAt?: Date } = {},
): Promise<string[]> {
  if (count === 0) return [];
  const rows = await server.database.db
    .insertInto('api_tokens')
    .values(
      Array.from({ length: count }, (_, i) => ({
        org_id: tenant.orgId,
        env: tenant.env,
        name: `Filler ${i}`,
        prefix: crypto.randomUUID().replace(/-/g, '').slice(0, 12),
        secret_hash: createHash('sha256').update(crypto.randomUUID()).digest(),
        scopes: ['clients:read'],
        revoked_at: state.revokedAt ?? null,
        expires_at: state.expiresAt ?? null,
      })),
    )
    .returning('id')
    .execute();
  return rows.map((row) => row.id);
}

async function orgNameOf(orgId: string): Promise<string> {
  return (await server.database.db.selectFrom('organisations').select('name').where('id', '=', orgId).executeTakeFirstOrThrow()).name;
}

async function storedToken(id: string) {
  return server.database.db.selectFrom('api_tokens').selectAll().where('id', '=', id).executeTakeFirst();
}

beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.close());

describe('POST /tokens', () => {
  it('mints a token that works at once; the answer shows it whole, this once', async () => {
    const { api, token: caller } = await tenant({ env: 'live' });
    const { data, response } = await mintThroughApi(api, { name: '  Nightly sync  ', scopes: ['clients:write', 'tokens:manage'] });
    expect(response.status).toBe(201);
    expect(Object.keys(data!.data).sort()).toEqual(TOKEN_FIELDS);
    expect(data!.data).toMatchObject({
      name: 'Nightly sync',
      env: 'live',
      scopes: ['clients:write', 'tokens:manage'],
      lastUsedAt: null,
      expiresAt: null,
      revokedAt: null,
    });
    expect(data!.token).toMatch(new RegExp(`^hsk_live_${data!.data.prefix}_[A-Za-z0-9]{32}$`));
    expect(await storedToken(data!.data.id)).toMatchObject({ org_id: caller.orgId, env: 'live' });

    const minted = clientFor(data!.token!);
    const created = await minted.POST('/clients', { body: { name: 'Made by the new token' } });
    expect(created.response.status).toBe(201);
    expect(created.data!.data.orgId).toBe(caller.orgId);
    const listed = await minted.GET('/tokens');
    expect(listed.response.status).toBe(200);
    expect(listed.data!.data.map((t) => t.id)).toContain(data!.data.id);
  });

  it('with an Idempotency-Key: a replay answers the same token without its secret, which is never stored', async () => {
    const { api } = await tenant();
    const key = crypto.randomUUID();
    const first = await api.POST('/tokens', { body: { name: 'Once', scopes: ['clients:read'] }, headers: { 'Idempotency-Key': key } });
    const again = await api.POST('/tokens', { body: { name: 'Once', scopes: ['clients:read'] }, headers: { 'Idempotency-Key': key } });
    expect(first.response.status).toBe(201);
    expect(first.data!.token).toMatch(/^hsk_test_/);
    expect(again.response.status).toBe(201);
    expect(again.response.headers.get('Idempotent-Replayed')).toBe('true');
    expect(again.data).toEqual({ data: first.data!.data });
    const stored = await server.database.db.selectFrom('idempotency_keys').selectAll().execute();
    expect(JSON.stringify(stored)).not.toContain(first.data!.token!.split('_')[3]);
    expect(await server.database.db.selectFrom('api_tokens').select('id').where('name', '=', 'Once').execute()).toHaveLength(1);
  });

  it('grants only scopes the caller holds: 403 forbidden naming the scope, and nothing minted', async () => {
    const { api, token } = await tenant({ scopes: ['tokens:manage', 'clients:read'] });
    const { error, response } = await mintThroughApi(api, { name: 'Escalation', scopes: ['clients:read', 'clients:write'] });
    expect(response.status).toBe(403);
    expect(error!.error.code).toBe('forbidden');
    expect(error!.error.message).toContain('clients:write');
    const rows = await server.database.db.selectFrom('api_tokens').select('id').where('org_id', '=', token.orgId).execute();
    expect(rows).toHaveLength(1);
  });

  it.each([
    ['an empty name', { name: '   ', scopes: ['clients:read'] }, 'name'],
    ['a name of 201 characters', { name: 'n'.repeat(201), scopes: ['clients:read'] }, 'name'],
    ['no scopes', { name: 'x', scopes: [] }, 'scopes'],
    ['an unknown scope', { name: 'x', scopes: ['clients:delete'] }, 'scopes'],
    ['a scope twice', { name: 'x', scopes: ['clients:read', 'clients:read'] }, 'scopes'],
    ['scopes missing', { name: 'x' }, 'scopes'],
    ['an expiry that is not a date-time', { name: 'x', scopes: ['clients:read'], expiresAt: 'tomorrow' }, 'expiresAt'],
    ['an expiry in the past', { name: 'x', scopes: ['clients:read'], expiresAt: '2020-01-01T00:00:00Z' }, 'expiresAt'],
    ['an expiry on a day that does not exist', { name: 'x', scopes: ['clients:read'], expiresAt: '2030-02-30T00:00:00Z' }, 'expiresAt'],
    // No JS Date nor PostgreSQL timestamp holds second 60: it was a 500.
    ['an expiry at a leap second', { name: 'x', scopes: ['clients:read'], expiresAt: '2030-06-30T23:59:60Z' }, 'expiresAt'],
    [
      "another environment (env is not a field: a token is minted in its caller's)",
      { name: 'x', scopes: ['clients:read'], env: 'live' },
      'env',
    ],
  ])('refuses %s: 400 naming the field', async (_label, body, field) => {
    const { api } = await tenant();
    const { error, response } = await mintThroughApi(api, body as never);
    expect(response.status).toBe(400);
    expect(error!.error.code).toBe('validation_failed');
    expect(Object.keys(error!.error.fields!)).toEqual([field]);
  });

  it("cannot outlive the caller: a later expiry is 400, none asked for gets the caller's", async () => {
    const { api, token } = await tenant();
    const callerExpiry = new Date(Date.now() + 3_600_000);
    await server.database.db.updateTable('api_tokens').set({ expires_at: callerExpiry }).where('id', '=', token.tokenId).execute();

    const later = await mintThroughApi(api, {
      name: 'Later',
      scopes: ['clients:read'],
      expiresAt: new Date(callerExpiry.getTime() + 1000).toISOString(),
    });
    expect(later.response.status).toBe(400);
    expect(Object.keys(later.error!.error.fields!)).toEqual(['expiresAt']);

    const inherited = await mintThroughApi(api, { name: 'Inherits', scopes: ['clients:read'] });
    expect(inherited.data!.data.expiresAt).toBe(callerExpiry.toISOString());
    const explicitNull = await mintThroughApi(api, { name: 'Null', scopes: ['clients:read'], expiresAt: null });
    expect(explicitNull.data!.data.expiresAt).toBe(callerExpiry.toISOString());

    const sooner = new Date(Date.now() + 60_000).toISOString();
    const earlier = await mintThroughApi(api, { name: 'Sooner', scopes: ['clients:read'], expiresAt: sooner });
    expect(earlier.response.status).toBe(201);
    expect(earlier.data!.data.expiresAt).toBe(sooner);
  });
});

describe('without tokens:manage', () => {
  it.each([
    ['GET /tokens', (api: ClientsApi) => api.GET('/tokens')],
    ['POST /tokens', (api: ClientsApi) => api.POST('/tokens', { body: { name: 'x', scopes: ['clients:read'] } })],
    [
      'DELETE /tokens/{id}',
      (api: ClientsApi) => api.DELETE('/tokens/{id}', { params: { path: { id: '00000000-0000-4000-8000-000000000000' } } }),
    ],
  ])('%s is 403 forbidden naming tokens:manage', async (_label, call) => {
    const { api, token } = await tenant({ scopes: ['clients:read', 'clients:write'] });
    const { error, response } = await call(api);
    expect(response.status).toBe(403);
    expect(error!.error.code).toBe('forbidden');
    expect(error!.error.message).toContain('tokens:manage');
    const rows = await server.database.db.selectFrom('api_tokens').select('revoked_at').where('org_id', '=', token.orgId).execute();
    expect(rows).toEqual([{ revoked_at: null }]);
  });
});

describe('GET /tokens', () => {
  it("lists the organisation's tokens of the caller's environment only, newest first, without secrets", async () => {
    const { api, token } = await tenant();
    const orgName = (
      await server.database.db.selectFrom('organisations').select('name').where('id', '=', token.orgId).executeTakeFirstOrThrow()
    ).name;
    const live = await server.mint({ orgName, env: 'live' });
    secrets.push(live.token);
    const other = await tenant();
    const second = await mintThroughApi(api, { name: 'Second', scopes: ['clients:read'] });

    const { data, response } = await api.GET('/tokens');
    expect(response.status).toBe(200);
    expect(data!.data.map((t) => t.id)).toEqual([second.data!.data.id, token.tokenId]);
    for (const listed of data!.data) expect(Object.keys(listed).sort()).toEqual(TOKEN_FIELDS);
    expect(data!.data.map((t) => t.id)).not.toContain(live.tokenId);
    expect(data!.data.map((t) => t.id)).not.toContain(other.token.tokenId);
  });
});

describe('GET /tokens, page by page', () => {
  it('walks every token once, newest first, while tokens are minted between pages', async () => {
    const { api, token } = await tenant();
    // Rows of one statement share their created_at: their ids order them.
    const inserted = await insertTokens(token, 12);
    const newest: string[] = [];
    for (let i = 0; i < 3; i++) newest.unshift((await mintThroughApi(api, { name: `Newer ${i}`, scopes: ['clients:read'] })).data!.data.id);
    const expected = [...newest, ...inserted.sort().reverse(), token.tokenId];

    const seen: string[] = [];
    const mintedMeanwhile: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await api.GET('/tokens', { params: { query: { limit: 5, cursor } } });
      expect(page.response.status).toBe(200);
      expect(page.data!.data.length).toBeLessThanOrEqual(5);
      seen.push(...page.data!.data.map((t) => t.id));
      cursor = page.data!.nextCursor ?? undefined;
      mintedMeanwhile.push((await mintThroughApi(api, { name: 'Meanwhile', scopes: ['clients:read'] })).data!.data.id);
    } while (cursor);
    // 16 tokens, 5 a page: 4 pages. The walk began before the ones minted meanwhile, so it sees
    // none of them, and every other exactly once, in order.
    expect(mintedMeanwhile).toHaveLength(4);
    expect(seen).toEqual(expected);
  });

  it('holds 25 by default and up to 100; the last page says so with a null nextCursor', async () => {
    const { api, token } = await tenant();
    await insertTokens(token, 105, { revokedAt: new Date() });
    const first = await api.GET('/tokens');
    expect(first.data!.data).toHaveLength(25);
    expect(first.data!.nextCursor).toEqual(expect.any(String));
    const most = await api.GET('/tokens', { params: { query: { limit: 100 } } });
    expect(most.data!.data).toHaveLength(100);
    const rest = await api.GET('/tokens', { params: { query: { limit: 100, cursor: most.data!.nextCursor! } } });
    expect(rest.data!.data).toHaveLength(6);
    expect(rest.data!.nextCursor).toBeNull();
  });

  it.each([
    ['limit 0', { limit: 0 }, 'limit'],
    ['limit 101', { limit: 101 }, 'limit'],
    ['a limit that is not a number', { limit: 'ten' }, 'limit'],
    ['a cursor this API did not give out', { cursor: 'bm90LWEtY3Vyc29y' }, 'cursor'],
    [
      'a cursor of a time that does not exist',
      { cursor: Buffer.from('["2026-02-30T00:00:00.000000Z","00000000-0000-4000-8000-000000000000"]').toString('base64url') },
      'cursor',
    ],
  ])('refuses %s: 400 naming it', async (_label, query, field) => {
    const { api } = await tenant();
    const { error, response } = await api.GET('/tokens', { params: { query: query as never } });
    expect(response.status).toBe(400);
    expect(error!.error.code).toBe('validation_failed');
    expect(Object.keys(error!.error.fields!)).toEqual([field]);
  });
});

describe(`at most ${MAX_ACTIVE_TOKENS} active tokens per organisation and environment`, () => {
  it('the 101st is 409 token_limit_reached, stored with its Idempotency-Key; revoked and expired ones do not count', async () => {
    const { api, token } = await tenant();
    const inAnHour = new Date(Date.now() + 3_600_000);
    // The caller, 98 more, one that expires in an hour (still active): 100. Revoked and expired ones besides.
    const fillers = await insertTokens(token, 98);
    await insertTokens(token, 1, { expiresAt: inAnHour });
    await insertTokens(token, 5, { revokedAt: new Date() });
    await insertTokens(token, 5, { expiresAt: new Date(Date.now() - 1000) });
    const count = async () =>
      (await server.database.db.selectFrom('api_tokens').select('id').where('org_id', '=', token.orgId).execute()).length;
    expect(await count()).toBe(110);

    const key = crypto.randomUUID();
    const body = { name: 'One too many', scopes: ['clients:read' as const] };
    const refused = await api.POST('/tokens', { body, headers: { 'Idempotency-Key': key } });
    expect(refused.response.status).toBe(409);
    expect(refused.error!.error.code).toBe('token_limit_reached');
    expect(refused.error!.error.message).toContain(`${MAX_ACTIVE_TOKENS} active tokens in its test environment`);
    expect(refused.response.headers.get('Retry-After')).toBeNull();
    expect(await count()).toBe(110);
    // Stored with the key like the operation's other refusals: a replay answers the same 409.
    const replay = await api.POST('/tokens', { body, headers: { 'Idempotency-Key': key } });
    expect(replay.response.status).toBe(409);
    expect(replay.response.headers.get('Idempotent-Replayed')).toBe('true');
    expect(replay.error).toEqual(refused.error);

    // The other environment has a hundred places of its own.
    const live = clientFor((await server.mint({ orgName: await orgNameOf(token.orgId), env: 'live' })).token);
    expect((await mintThroughApi(live, { name: 'Live', scopes: ['clients:read'] })).response.status).toBe(201);

    // A revoked token frees its place.
    expect((await api.DELETE('/tokens/{id}', { params: { path: { id: fillers[0]! } } })).response.status).toBe(200);
    const minted = await mintThroughApi(api, body);
    expect(minted.response.status).toBe(201);
    expect((await mintThroughApi(api, body)).error!.error.code).toBe('token_limit_reached');
  });

  it('mints racing for the last place: exactly one wins', async () => {
    const { api, token } = await tenant();
    await insertTokens(token, MAX_ACTIVE_TOKENS - 2);
    const answers = await Promise.all(
      Array.from({ length: 4 }, (_, i) => mintThroughApi(api, { name: `Racer ${i}`, scopes: ['clients:read'] })),
    );
    expect(answers.map((a) => a.response.status).sort()).toEqual([201, 409, 409, 409]);
    const active = await server.database.db
      .selectFrom('api_tokens')
      .select('id')
      .where('org_id', '=', token.orgId)
      .where('revoked_at', 'is', null)
      .execute();
    expect(active).toHaveLength(MAX_ACTIVE_TOKENS);
  });

  it('the CLI and the first token of an organisation obey it too', async () => {
    const { token } = await tenant();
    await insertTokens(token, MAX_ACTIVE_TOKENS - 1);
    const orgName = await orgNameOf(token.orgId);
    await expect(server.mint({ orgName })).rejects.toMatchObject({ code: 'token_limit_reached' });
    // The other environment is not full.
    secrets.push((await server.mint({ orgName, env: 'live' })).token);
  });
});

describe('DELETE /tokens/{id}', () => {
  it('revokes: the next request with the token is 401 at once', async () => {
    const { api } = await tenant();
    const minted = await mintThroughApi(api, { name: 'Doomed', scopes: ['clients:write'] });
    const doomed = clientFor(minted.data!.token!);
    expect((await doomed.POST('/clients', { body: { name: 'Before' } })).response.status).toBe(201);

    const { data, response } = await api.DELETE('/tokens/{id}', { params: { path: { id: minted.data!.data.id } } });
    expect(response.status).toBe(200);
    expect(data!.data.revokedAt).not.toBeNull();

    const after = await doomed.POST('/clients', { body: { name: 'After' } });
    expect(after.response.status).toBe(401);
    expect(after.error!.error.message).toMatch(/revoked/);
  });

  it('a token can revoke itself', async () => {
    const { api, token } = await tenant();
    expect((await api.DELETE('/tokens/{id}', { params: { path: { id: token.tokenId } } })).response.status).toBe(200);
    expect((await api.GET('/tokens')).response.status).toBe(401);
  });

  it('revoking twice keeps the first revokedAt', async () => {
    const { api } = await tenant();
    const minted = await mintThroughApi(api, { name: 'Twice', scopes: ['clients:read'] });
    const path = { params: { path: { id: minted.data!.data.id } } };
    const first = await api.DELETE('/tokens/{id}', path);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const second = await api.DELETE('/tokens/{id}', path);
    expect(second.response.status).toBe(200);
    expect(second.data!.data.revokedAt).toBe(first.data!.data.revokedAt);
  });

  it("another organisation's or environment's token, or an unknown id: 404 not_found, and nothing revoked", async () => {
    const { api, token } = await tenant();
    const orgName = (
      await server.database.db.selectFrom('organisations').select('name').where('id', '=', token.orgId).executeTakeFirstOrThrow()
    ).name;
    const sameOrgLive = await server.mint({ orgName, env: 'live' });
    const otherOrg = (await tenant()).token;
    secrets.push(sameOrgLive.token);
    for (const id of [sameOrgLive.tokenId, otherOrg.tokenId, '00000000-0000-4000-8000-000000000000']) {
      const { error, response } = await api.DELETE('/tokens/{id}', { params: { path: { id } } });
      expect(response.status).toBe(404);
      expect(error!.error.code).toBe('not_found');
    }
    expect((await storedToken(sameOrgLive.tokenId))!.revoked_at).toBeNull();
    expect((await storedToken(otherOrg.tokenId))!.revoked_at).toBeNull();
  });

  it('an id that is not a UUID, or its own id spelt otherwise (upper case, urn:uuid:), is 404 like an unknown one, and revokes nothing', async () => {
    const { api, token } = await tenant();
    for (const id of ['not-a-uuid', token.tokenId.toUpperCase(), `urn:uuid:${token.tokenId}`]) {
      const { error, response } = await api.DELETE('/tokens/{id}', { params: { path: { id } } });
      expect(response.status).toBe(404);
      expect(error!.error.code).toBe('not_found');
    }
    expect((await storedToken(token.tokenId))!.revoked_at).toBeNull();
  });
});

describe('lastUsedAt', () => {
  it('is recorded just after a request, and at most once a minute', async () => {
    const { api, token } = await tenant();
    expect((await storedToken(token.tokenId))!.last_used_at).toBeNull();
    await api.GET('/tokens');
    await expect.poll(async () => (await storedToken(token.tokenId))!.last_used_at, { timeout: 5000 }).not.toBeNull();
    const first = (await storedToken(token.tokenId))!.last_used_at!.toISOString();

    await api.GET('/tokens');
    await api.GET('/tokens');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await storedToken(token.tokenId))!.last_used_at!.toISOString()).toBe(first);
    const { data } = await api.GET('/tokens');
    expect(data!.data.find((t) => t.id === token.tokenId)!.lastUsedAt).toBe(first);
  });

  it.runIf(usingPostgres)('is never awaited by the request: a blocked write does not delay the answer', async () => {
    const { api, token } = await tenant();
    const locker = new pg.Client({ connectionString: server.database.url });
    // Watches from outside the locker's transaction: inside one, PostgreSQL answers pg_stat_activity
    // from the snapshot its first read took, so a write that began waiting later was never seen.
    const watcher = new pg.Client({ connectionString: server.database.url });
    await Promise.all([locker.connect(), watcher.connect()]);
    try {
      await locker.query('begin');
      await locker.query('select id from api_tokens where id = $1 for update', [token.tokenId]);
      const { response } = await api.GET('/tokens');
      expect(response.status).toBe(200);
      // The write was sent and is waiting for the lock, while the answer is already here.
      await expect
        .poll(
          async () =>
            (
              await watcher.query(
                `select count(*)::int as n from pg_stat_activity
                  where datname = current_database() and wait_event_type = 'Lock' and query ilike 'update "api_tokens"%'`,
              )
            ).rows[0].n,
          { timeout: 5000 },
        )
        .toBe(1);
      await locker.query('commit');
    } finally {
      await Promise.all([locker.end(), watcher.end()]);
    }
    await expect.poll(async () => (await storedToken(token.tokenId))!.last_used_at, { timeout: 5000 }).not.toBeNull();
  });
});

describe('secrets', () => {
  it("no response carries a token's secret or its hash, except the one that minted it", async () => {
    // Answers of every kind, so that the scan below sees them too.
    const { api } = await tenant();
    await clientFor('hsk_test_AAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB').GET('/tokens');
    await api.POST('/clients', { body: { name: 'x', nmae: 'typo' } as never });
    await api.GET('/tokens');

    expect(secrets.length).toBeGreaterThan(10);
    expect(responses.length).toBeGreaterThan(40);
    for (const token of secrets) {
      const secret = token.split('_')[3]!;
      const hash = createHash('sha256').update(secret).digest();
      const forms = [secret, hash.toString('hex'), hash.toString('base64'), hash.toString('base64url')];
      const carriers = responses.filter(({ text }) => forms.some((form) => text.includes(form)));
      const minting = responses.filter(({ text }) => text.includes(`"token":"${token}"`));
      expect(minting.every(({ label }) => label === 'POST /tokens 201')).toBe(true);
      // Minted through the API: exactly its own answer carries it. Minted in the database: none.
      expect(carriers).toEqual(minting);
      expect(minting.length).toBeLessThanOrEqual(1);
      expect(
        responses.some(({ text }) =>
          [hash.toString('hex'), hash.toString('base64'), hash.toString('base64url')].some((f) => text.includes(f)),
        ),
      ).toBe(false);
    }
  });
});
