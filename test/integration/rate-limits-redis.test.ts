/**
 * REDIS_URL: rate-limit counters in Redis, shared by every server (two apps here, each with its
 * own limiters, as two processes would have). When Redis goes away (a TCP proxy in front of it,
 * cut) the service fails open: requests are still answered, counted in each process's memory,
 * with a logged warning and `rate_limit_store_failures_total`; once Redis is back, counting
 * returns to it.
 *
 * Runs with TEST_REDIS_URL, or with TEST_DATABASE_URL (CI, which always has Redis next to PostgreSQL).
 */
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMetrics } from '../../server/metrics/metrics.js';
import { openRedisCounters, type RedisCounters } from '../../server/rate-limit/redis.js';
import { usingPostgres } from '../support/database.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { startTestServer, type TestServer } from '../support/server.js';

const redisUrl = process.env.TEST_REDIS_URL ?? (usingPostgres ? 'redis://127.0.0.1:6379' : undefined);

describe.runIf(redisUrl)('rate-limit counters in Redis', { timeout: 60_000 }, () => {
  const keyPrefix = `clients-api-test-${randomBytes(4).toString('hex')}:`;
  const warnings: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
  const metrics = createMetrics();
  let proxy: TcpProxy;
  let counters: RedisCounters[] = [];
  let servers: TestServer[] = [];
  const budgets = { perTenant: 3, perAddress: 50, windowSeconds: 60 };

  beforeAll(async () => {
    const target = new URL(redisUrl!);
    proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 6379) });
    const through = new URL(redisUrl!);
    through.hostname = '127.0.0.1';
    through.port = String(proxy.port);
    counters = [0, 1].map(() =>
      openRedisCounters(through.toString(), logger, { keyPrefix, countFailure: () => metrics.countCounterStoreFailure() }),
    );
    const first = await startTestServer({ redis: counters[0], rateLimits: budgets });
    const second = await startTestServer({ redis: counters[1], rateLimits: budgets }, { database: first.database });
    servers = [first, second];
    await Promise.all(
      counters.map((c) => new Promise((ready) => (c.client.status === 'ready' ? ready(null) : c.client.once('ready', ready)))),
    );
  });
  afterAll(async () => {
    const keys = await counters[0]?.client.keys(`${keyPrefix}*`).catch(() => []);
    if (keys?.length) await counters[0]!.client.del(...keys);
    await Promise.all(counters.map((c) => c.close()));
    await servers[1]?.close();
    await servers[0]?.close();
    await proxy?.close();
  });

  /** GET /tokens through each server in turn, with each token in turn; the statuses. */
  async function statuses(tokens: string | string[], count: number): Promise<number[]> {
    const answers: number[] = [];
    for (let i = 0; i < count; i++) {
      const token = [tokens].flat()[i % [tokens].flat().length];
      const response = await fetch(`${servers[i % 2]!.serverUrl}/tokens`, { headers: { Authorization: `Bearer ${token}` } });
      await response.arrayBuffer();
      answers.push(response.status);
    }
    return answers;
  }

  /** Two tokens of one new organisation, and one of another. */
  async function tenants(name: string) {
    const orgName = `${name}-${Date.now()}`;
    const token = await servers[0]!.mint({ orgName });
    const sibling = await servers[0]!.mint({ orgName });
    const other = await servers[0]!.mint({ orgName: `${orgName}-other` });
    return { token, tokens: [token.token, sibling.token, sibling.token, token.token], other };
  }

  it('are shared by every server and every token of the tenant: spent across two, refused at the same total; the count is in Redis', async () => {
    const { token, tokens, other } = await tenants('redis-shared');
    expect(await statuses(tokens, 5)).toEqual([200, 200, 200, 429, 429]);
    expect(await counters[0]!.client.get(`${keyPrefix}tenant:${token.orgId}:${token.env}`)).toBe('5');
    expect(await statuses(other.token, 3)).toEqual([200, 200, 200]);
  });

  it('fail open when Redis goes away: answered, counted per process, warned of and measured; back to Redis when it returns', async () => {
    const { tokens, other } = await tenants('redis-away');
    await proxy.cut();
    warnings.length = 0;
    // Each server now counts alone, still per tenant: three each before refusing, where Redis would have refused the fourth.
    expect(await statuses(tokens, 6)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(await statuses(tokens, 2)).toEqual([429, 429]);
    expect(await statuses(other.token, 2)).toEqual([200, 200]);
    expect(warnings.some((line) => JSON.parse(line).msg.startsWith('Redis is unreachable'))).toBe(true);
    expect(await metrics.registry.getSingleMetricAsString('rate_limit_store_failures_total')).toMatch(
      /^rate_limit_store_failures_total 10$/m,
    );

    await proxy.restore();
    await Promise.all(
      counters.map((c) => new Promise((ready) => (c.client.status === 'ready' ? ready(null) : c.client.once('ready', ready)))),
    );
    const after = await tenants('redis-back');
    expect(await statuses(after.tokens, 4)).toEqual([200, 200, 200, 429]);
    expect(await counters[1]!.client.get(`${keyPrefix}tenant:${after.token.orgId}:${after.token.env}`)).toBe('4');
  });
});
