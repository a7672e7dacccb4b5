/** Which budget a client address spends, how the environment sets the budgets and the concurrency limit, and that limit's count. */
import { createRequire } from 'node:module';
import { describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../server/config.js';
import { createConcurrencyLimit } from '../../server/rate-limit/concurrency.js';
import { addressKey } from '../../server/rate-limit/rate-limits.js';
import { openRedisCounters, redisOptionsFromUrl } from '../../server/rate-limit/redis.js';
import { createLogger } from '../../server/logger.js';

describe('addressKey', () => {
  it('keys an IPv4 address as itself, also when it arrives IPv4-mapped', () => {
    expect(addressKey('203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
  });

  it('keys an IPv6 address by its /64, which one subscriber commonly holds whole', () => {
    expect(addressKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8:1:2:ffff:ffff:ffff:ffff')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8:1:3::1')).not.toBe(addressKey('2001:db8:1:2::1'));
  });

  it('keeps what is not an address apart from every address', () => {
    expect(addressKey(undefined)).toBe('unknown:');
    expect(addressKey('203.0.113.7')).not.toBe(addressKey('unknown:203.0.113.7'));
  });
});

describe('rate-limit configuration', () => {
  it('defaults to 600 per tenant and 60 per address, per 60 seconds', () => {
    expect(loadConfig({}).rateLimits).toEqual({ perTenant: 600, perAddress: 60, windowSeconds: 60 });
  });

  it('reads RATE_LIMIT, RATE_LIMIT_WINDOW and RATE_LIMIT_UNAUTHENTICATED', () => {
    const env = { RATE_LIMIT: '100', RATE_LIMIT_WINDOW: '10', RATE_LIMIT_UNAUTHENTICATED: '5' };
    expect(loadConfig(env).rateLimits).toEqual({ perTenant: 100, perAddress: 5, windowSeconds: 10 });
  });

  it('RATE_LIMIT=0 switches limiting off', () => {
    expect(loadConfig({ RATE_LIMIT: '0' }).rateLimits).toBe(false);
  });

  it.each([
    [{ RATE_LIMIT: '-1' }, /RATE_LIMIT must be a whole number/],
    [{ RATE_LIMIT: 'lots' }, /RATE_LIMIT must be a whole number/],
    [{ RATE_LIMIT_WINDOW: '0' }, /RATE_LIMIT_WINDOW must be at least 1/],
    [{ RATE_LIMIT_UNAUTHENTICATED: '0' }, /RATE_LIMIT_UNAUTHENTICATED must be at least 1/],
    [{ CONCURRENCY_LIMIT: '-1' }, /CONCURRENCY_LIMIT must be a whole number/],
    [{ CONCURRENCY_LIMIT: 'many' }, /CONCURRENCY_LIMIT must be a whole number/],
  ])('refuses %j at start-up', (env, message) => {
    expect(() => loadConfig(env)).toThrow(message);
  });

  it('CONCURRENCY_LIMIT: 5 by default, half the pool of 10 connections; 0 switches it off', () => {
    expect(loadConfig({}).concurrencyLimit).toBe(5);
    expect(loadConfig({ CONCURRENCY_LIMIT: '12' }).concurrencyLimit).toBe(12);
    expect(loadConfig({ CONCURRENCY_LIMIT: '0' }).concurrencyLimit).toBe(false);
  });

  it('TRUST_PROXY: off by default; true, a hop count, or addresses as Express takes them', () => {
    expect(loadConfig({}).trustProxy).toBe(false);
    expect(loadConfig({ TRUST_PROXY: 'true' }).trustProxy).toBe(true);
    expect(loadConfig({ TRUST_PROXY: '1' }).trustProxy).toBe(1);
    expect(loadConfig({ TRUST_PROXY: 'loopback, 10.0.0.0/8' }).trustProxy).toBe('loopback, 10.0.0.0/8');
  });
});

describe('the concurrency limit', () => {
  it('counts per organisation, refuses the one over with Retry-After, and gives a slot back once however often it is released', () => {
    const limit = createConcurrencyLimit(2);
    const [a1, a2] = [limit.enter('a'), limit.enter('a')];
    const b = limit.enter('b');
    let refusal: unknown;
    try {
      limit.enter('a');
    } catch (error) {
      refusal = error;
    }
    expect(refusal).toMatchObject({ status: 429, code: 'rate_limited', details: { headers: { 'Retry-After': '1' } } });
    expect(limit.inFlight('a')).toBe(2);
    a1();
    a1();
    expect(limit.inFlight('a')).toBe(1);
    expect(() => limit.enter('a')).not.toThrow();
    a2();
    b();
    expect(limit.inFlight('b')).toBe(0);
  });
});

describe('REDIS_URL', () => {
  it('is read with the WHATWG URL parser into ioredis options: host, port, user, password, database, TLS', () => {
    expect(redisOptionsFromUrl('redis://127.0.0.1:6379')).toEqual({ host: '127.0.0.1', port: 6379, db: 0 });
    expect(redisOptionsFromUrl('redis://cache')).toEqual({ host: 'cache', port: 6379, db: 0 });
    expect(redisOptionsFromUrl('rediss://app:p%40ss%2Fword@[::1]:6380/2')).toEqual({
      host: '::1',
      port: 6380,
      username: 'app',
      password: 'p@ss/word',
      db: 2,
      tls: { servername: '[::1]' },
    });
    expect(redisOptionsFromUrl('redis://:secret@cache:7000/15')).toEqual({ host: 'cache', port: 7000, password: 'secret', db: 15 });
  });

  it('refuses at start-up what is not a Redis URL', () => {
    expect(() => loadConfig({ REDIS_URL: 'http://cache:6379' })).toThrow('REDIS_URL must be a redis:// or rediss:// URL');
    expect(() => loadConfig({ REDIS_URL: 'redis://cache:6379/zero' })).toThrow('database number');
    expect(() => loadConfig({ REDIS_URL: 'not a url' })).toThrow();
    expect(loadConfig({ REDIS_URL: 'redis://cache:6379/1' }).redisUrl).toBe('redis://cache:6379/1');
  });

  it('opens its client without url.parse (deprecated on Node 24, DEP0169)', async () => {
    // The module object ioredis calls `parse` on (CommonJS `require('url')`).
    const parse = vi.spyOn(createRequire(import.meta.url)('url') as typeof import('node:url'), 'parse');
    try {
      const counters = openRedisCounters('redis://127.0.0.1:1/0', createLogger('silent'));
      await counters.close();
      expect(parse).not.toHaveBeenCalled();
      expect(counters.client.options).toMatchObject({ host: '127.0.0.1', port: 1, db: 0 });
    } finally {
      parse.mockRestore();
    }
  });
});
