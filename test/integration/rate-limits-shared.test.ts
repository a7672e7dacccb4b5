/**
 * Two server processes on one PostgreSQL database spend the same budgets: the counters live in
 * the database (rate-limiter-flexible's PostgreSQL store), not in either process. A tenant's
 * budget is one, whichever of its tokens spends it and through whichever process.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintTokenForOrganisation, type MintedToken } from '../../server/tokens/tokens.service.js';
import { createTestDatabase, usingPostgres, type TestDatabase } from '../support/database.js';
import { startServerProcess, type RunningServer } from '../support/processes.js';

describe.runIf(usingPostgres)('two server processes on one PostgreSQL', { timeout: 120_000 }, () => {
  let database: TestDatabase;
  let servers: RunningServer[] = [];
  let token: MintedToken;
  let sibling: MintedToken;

  beforeAll(async () => {
    database = await createTestDatabase();
    token = await mintTokenForOrganisation(database.db, { orgName: 'Shared budget' });
    sibling = await mintTokenForOrganisation(database.db, { orgName: 'Shared budget', tokenName: 'sibling' });
    const env = { DATABASE_URL: database.url, RATE_LIMIT: '4', RATE_LIMIT_WINDOW: '60', RATE_LIMIT_UNAUTHENTICATED: '2' };
    servers = await Promise.all([startServerProcess(env), startServerProcess(env)]);
  }, 120_000);
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    await database?.close();
  });

  const get = (server: RunningServer, authorization?: string) =>
    fetch(`${server.url}/tokens`, { headers: authorization ? { Authorization: authorization } : {} });

  it("share one tenant's budget, whichever of its tokens spends it: what one process counted, the other sees", async () => {
    const [a, b] = servers as [RunningServer, RunningServer];
    const left: string[] = [];
    for (const [server, spender] of [
      [a, token],
      [b, sibling],
      [a, sibling],
      [b, token],
    ] as const) {
      const response = await get(server, `Bearer ${spender.token}`);
      expect(response.status).toBe(200);
      left.push(response.headers.get('RateLimit')!.replace(/;t=\d+$/, ''));
    }
    expect(left).toEqual(['"tenant";r=3', '"tenant";r=2', '"tenant";r=1', '"tenant";r=0']);
    for (const [server, spender] of [
      [a, sibling],
      [b, token],
    ] as const) {
      const response = await get(server, `Bearer ${spender.token}`);
      expect(response.status).toBe(429);
      expect(Number(response.headers.get('Retry-After'))).toBeGreaterThanOrEqual(1);
    }
    const rows = await database.db.selectFrom('rate_limits').select(['key', 'points']).execute();
    expect(rows).toContainEqual({ key: `tenant:${token.orgId}:${token.env}`, points: 6 });

    // Another organisation, and the same organisation's other environment, have budgets of their own.
    const other = await mintTokenForOrganisation(database.db, { orgName: 'Another budget' });
    const live = await mintTokenForOrganisation(database.db, { orgName: 'Shared budget', env: 'live' });
    for (const [server, spender] of [
      [a, other],
      [b, live],
    ] as const) {
      const response = await get(server, `Bearer ${spender.token}`);
      expect(response.status).toBe(200);
      expect(response.headers.get('RateLimit')).toMatch(/^"tenant";r=3;/);
    }
  });

  it('share the budget of requests without a valid token', async () => {
    const [a, b] = servers as [RunningServer, RunningServer];
    expect((await get(a)).status).toBe(401);
    expect((await get(b, 'Bearer nonsense')).status).toBe(401);
    expect((await get(a)).status).toBe(429);
    expect((await get(b)).status).toBe(429);
  });
});
