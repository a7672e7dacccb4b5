/**
 * Two server processes on one PostgreSQL database spend the same budgets: the counters live in
 * the database (rate-limiter-flexible's PostgreSQL store), not in either process.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintTokenForOrganisation, type MintedToken } from '../../server/tokens/tokens.service.js';
import { createTestDatabase, usingPostgres, type TestDatabase } from '../support/database.js';
import { startServerProcess, type RunningServer } from '../support/processes.js';

describe.runIf(usingPostgres)('two server processes on one PostgreSQL', { timeout: 120_000 }, () => {
  let database: TestDatabase;
  let servers: RunningServer[] = [];
  let token: MintedToken;

  beforeAll(async () => {
    database = await createTestDatabase();
    token = await mintTokenForOrganisation(database.db, { orgName: 'Shared budget' });
    const env = { DATABASE_URL: database.url, RATE_LIMIT: '4', RATE_LIMIT_WINDOW: '60', RATE_LIMIT_UNAUTHENTICATED: '2' };
    servers = await Promise.all([startServerProcess(env), startServerProcess(env)]);
  }, 120_000);
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    await database?.close();
  });

  const get = (server: RunningServer, authorization?: string) =>
    fetch(`${server.url}/tokens`, { headers: authorization ? { Authorization: authorization } : {} });

  it("share one token's budget: what one process counted, the other sees", async () => {
    const [a, b] = servers as [RunningServer, RunningServer];
    const left: string[] = [];
    for (const server of [a, b, a, b]) {
      const response = await get(server, `Bearer ${token.token}`);
      expect(response.status).toBe(200);
      left.push(response.headers.get('RateLimit')!.replace(/;t=\d+$/, ''));
    }
    expect(left).toEqual(['"token";r=3', '"token";r=2', '"token";r=1', '"token";r=0']);
    for (const server of [a, b]) {
      const response = await get(server, `Bearer ${token.token}`);
      expect(response.status).toBe(429);
      expect(Number(response.headers.get('Retry-After'))).toBeGreaterThanOrEqual(1);
    }
    const rows = await database.db.selectFrom('rate_limits').select(['key', 'points']).execute();
    expect(rows).toContainEqual({ key: `token:${token.orgId}:${token.env}:${token.tokenId}`, points: 6 });
  });

  it('share the budget of requests without a valid token', async () => {
    const [a, b] = servers as [RunningServer, RunningServer];
    expect((await get(a)).status).toBe(401);
    expect((await get(b, 'Bearer nonsense')).status).toBe(401);
    expect((await get(a)).status).toBe(429);
    expect((await get(b)).status).toBe(429);
  });
});
