/**
 * The webhook URL policy at registration and on change (server/webhook-endpoints/url-policy.ts): https in
 * live, no user name or password, and a host whose every address is public. DNS is staged: the
 * server resolves names through a resolver this file controls, so no test depends on the
 * network. A second server on the same database allows private networks, as
 * WEBHOOK_ALLOW_PRIVATE_NETWORKS=true does: it resolves nothing and refuses only by scheme and
 * credentials. Every refusal is 400 validation_failed naming `url`, and writes nothing.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ClientsApi } from '../../client/index.js';
import { ephemeralWebhookSettings } from '../../server/webhook-delivery/settings.js';
import { startTestServer, type TestServer } from '../support/server.js';

/** What the staged name server answers; a name not here does not resolve. */
const DNS: Record<string, string[]> = {
  'hooks.public.test': ['93.184.216.34', '2606:2800:220:1:248:1893:25c8:1946'],
  'other.public.test': ['8.8.4.4'],
  'intranet.private.test': ['10.1.2.3'],
  'split.private.test': ['93.184.216.34', '192.168.1.20'],
  'loopback6.private.test': ['::1'],
  'mapped.private.test': ['::ffff:169.254.169.254'],
  // IPv4-compatible IPv6 (::/96) of 127.0.0.1 and of the cloud metadata address.
  'compat.private.test': ['::7f00:1'],
  'metadata6.private.test': ['2606:2800:220:1:248:1893:25c8:1946', '::a9fe:a9fe'],
  'empty.private.test': [],
};
/** Every name the servers asked for, in order. */
const asked: string[] = [];
async function stagedResolve(host: string): Promise<string[]> {
  asked.push(host);
  // A name server that never answers.
  if (host === 'silent.private.test') return new Promise<string[]>(() => {});
  const addresses = DNS[host];
  if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
  return addresses;
}

let strict: TestServer;
let lenient: TestServer;
let orgName: string;
/** The same organisation on both servers, in each environment. */
let api: { strict: Record<'test' | 'live', ClientsApi>; lenient: Record<'test' | 'live', ClientsApi> };

beforeAll(async () => {
  strict = await startTestServer({ webhooks: ephemeralWebhookSettings({ allowPrivateNetworks: false, resolve: stagedResolve }) });
  lenient = await startTestServer(
    { webhooks: ephemeralWebhookSettings({ allowPrivateNetworks: true, resolve: stagedResolve }) },
    { database: strict.database },
  );
});
afterAll(async () => {
  await lenient?.close();
  await strict?.close();
});

// A new organisation for each test, so that the cap of 16 endpoints never interferes.
beforeEach(async () => {
  orgName = `url-policy-${randomUUID()}`;
  const test = (await strict.mint({ orgName, plan: 'pro', env: 'test' })).token;
  const live = (await strict.mint({ orgName, env: 'live' })).token;
  api = {
    strict: { test: strict.client(test), live: strict.client(live) },
    lenient: { test: lenient.client(test), live: lenient.client(live) },
  };
  asked.length = 0;
});

const register = (on: ClientsApi, url: string) => on.POST('/webhook-endpoints', { body: { url, enabledEvents: ['*'] } });

async function endpointCount(): Promise<number> {
  const rows = await strict.database.db
    .selectFrom('webhook_endpoints')
    .innerJoin('organisations', 'organisations.id', 'webhook_endpoints.org_id')
    .select('webhook_endpoints.id')
    .where('organisations.name', '=', orgName)
    .execute();
  return rows.length;
}

/** A 400 validation_failed naming `url` alone, saying `reason`; nothing was stored. */
async function expectRefused(answer: Awaited<ReturnType<typeof register>>, reason: RegExp, label: string): Promise<void> {
  expect(answer.response.status, label).toBe(400);
  expect(answer.error!.error.code, label).toBe('validation_failed');
  expect(Object.keys(answer.error!.error.fields!), label).toEqual(['url']);
  expect(answer.error!.error.fields!.url, label).toMatch(reason);
  expect(await endpointCount(), label).toBe(0);
}

describe('scheme and credentials', () => {
  it('live: http is refused, https accepted', async () => {
    await expectRefused(await register(api.strict.live, 'http://hooks.public.test/in'), /https in the live environment/, 'live http');
    expect((await register(api.strict.live, 'https://hooks.public.test/in')).response.status).toBe(201);
  });

  it('test: http and https are both accepted', async () => {
    expect((await register(api.strict.test, 'http://hooks.public.test/in')).response.status).toBe(201);
    expect((await register(api.strict.test, 'https://hooks.public.test/in')).response.status).toBe(201);
  });

  it('a user name or password is refused, with or without the address check', async () => {
    for (const on of [api.strict.test, api.lenient.test]) {
      for (const url of ['https://user:secret@hooks.public.test/in', 'https://user@hooks.public.test/in']) {
        await expectRefused(await register(on, url), /./, url);
      }
    }
    expect(asked).toEqual([]);
  });

  it('live stays https-only when private networks are allowed', async () => {
    await expectRefused(await register(api.lenient.live, 'http://127.0.0.1:9/x'), /https in the live environment/, 'lenient live http');
  });
});

describe('addresses: only public ones', () => {
  it('refuses IP literals of private, loopback, link-local and mapped addresses, without resolving anything', async () => {
    const literals = [
      'http://127.0.0.1/x',
      'http://10.0.0.1/x',
      'http://169.254.169.254/latest/meta-data/',
      'http://[::1]/x',
      'http://[::ffff:127.0.0.1]/x',
      'http://[fe80::1]/x',
      // The same loopback address written as a number, in hexadecimal, short: WHATWG URL reads each as 127.0.0.1.
      'http://2130706433/x',
      'http://0x7f.1/x',
      'http://127.1/x',
      // 10.0.0.1 inside a NAT64 address.
      'http://[64:ff9b::a00:1]/x',
      // IPv4-compatible IPv6 (::/96): outside global unicast (2000::/3), whatever it embeds.
      'http://[::7f00:1]:8080/',
      'http://[::a9fe:a9fe]/',
      // Inside 2000::/3, but documentation and Teredo.
      'http://[2001:db8::1]/x',
      'http://[2001::1]/x',
      'http://0.0.0.0:9/x',
    ];
    for (const url of literals) await expectRefused(await register(api.strict.test, url), /non-public address/, url);
    // A newcomer whose receiver listens on this machine learns which setting allows it.
    await expectRefused(await register(api.strict.test, 'http://127.0.0.1:4000/x'), /WEBHOOK_ALLOW_PRIVATE_NETWORKS=true/, 'loopback');
    // Percent-encoded, it is not a host name the spec's pattern allows: refused before any policy.
    await expectRefused(await register(api.strict.test, 'http://%31%32%37.0.0.1/x'), /absolute http or https URL/, 'percent-encoded');
    expect(asked).toEqual([]);
  });

  it('accepts a public IP literal', async () => {
    expect((await register(api.strict.test, 'http://93.184.216.34/in')).response.status).toBe(201);
    expect((await register(api.strict.test, 'https://[2606:2800:220:1:248:1893:25c8:1946]/in')).response.status).toBe(201);
    expect(asked).toEqual([]);
  });

  it('refuses a name that resolves to any non-public address, or to none', async () => {
    const cases: [string, RegExp][] = [
      ['https://intranet.private.test/in', /non-public address/],
      ['https://split.private.test/in', /non-public address/],
      ['https://loopback6.private.test/in', /non-public address/],
      ['https://mapped.private.test/in', /non-public address/],
      ['https://compat.private.test/in', /non-public address/],
      ['https://metadata6.private.test/in', /non-public address/],
      ['https://empty.private.test/in', /does not resolve/],
      ['https://nowhere.private.test/in', /does not resolve/],
    ];
    for (const [url, reason] of cases) await expectRefused(await register(api.strict.test, url), reason, url);
    expect(asked).toEqual(cases.map(([url]) => new URL(url).hostname));
  });

  it('a name whose resolving does not end in time counts as not resolving (the request does not hang)', async () => {
    await expectRefused(await register(api.strict.test, 'https://silent.private.test/in'), /does not resolve/, 'silent');
    expect(asked).toEqual(['silent.private.test']);
  });

  it('accepts a name that resolves only to public addresses, and stores the URL as sent', async () => {
    const { data, response } = await register(api.strict.test, 'https://hooks.public.test:8443/in?source=clients');
    expect(response.status).toBe(201);
    expect(data!.data.url).toBe('https://hooks.public.test:8443/in?source=clients');
    expect(asked).toEqual(['hooks.public.test']);
  });

  it('the plan comes first: on the free plan the answer is 402, and nothing is resolved', async () => {
    const { api: free } = await strict.tenant({ plan: 'free' });
    const { error, response } = await register(free, 'https://intranet.private.test/in');
    expect(response.status).toBe(402);
    expect(error!.error).toMatchObject({ code: 'plan_required', feature: 'webhooks', requiredPlan: 'pro' });
    expect(asked).toEqual([]);
  });
});

describe('PATCH with a url', () => {
  it('is checked as on registration; a refused one changes nothing', async () => {
    const created = (await register(api.strict.test, 'https://hooks.public.test/in')).data!.data;
    for (const url of ['https://intranet.private.test/in', 'http://[::1]/x', 'https://nowhere.private.test/']) {
      const answer = await api.strict.test.PATCH('/webhook-endpoints/{id}', {
        params: { path: { id: created.id } },
        body: { url, description: 'Moved' },
      });
      expect(answer.response.status, url).toBe(400);
      expect(Object.keys(answer.error!.error.fields!)).toEqual(['url']);
      const now = await api.strict.test.GET('/webhook-endpoints/{id}', { params: { path: { id: created.id } } });
      expect(now.data!.data).toEqual(created);
    }
    const moved = await api.strict.test.PATCH('/webhook-endpoints/{id}', {
      params: { path: { id: created.id } },
      body: { url: 'https://other.public.test/in' },
    });
    expect(moved.response.status).toBe(200);
    expect(moved.data!.data.url).toBe('https://other.public.test/in');
  });
});

describe('with private networks allowed (WEBHOOK_ALLOW_PRIVATE_NETWORKS=true)', () => {
  it('accepts http://127.0.0.1:9/x in test, and any name without resolving it', async () => {
    const loopback = await register(api.lenient.test, 'http://127.0.0.1:9/x');
    expect(loopback.response.status).toBe(201);
    expect(loopback.data!.data.url).toBe('http://127.0.0.1:9/x');
    expect((await register(api.lenient.test, 'https://intranet.private.test/in')).response.status).toBe(201);
    expect((await register(api.lenient.test, 'https://nowhere.private.test/in')).response.status).toBe(201);
    expect(asked).toEqual([]);
    // The strict server refuses the same URL for the same organisation.
    const again = await register(api.strict.test, 'http://127.0.0.1:9/x');
    expect(again.response.status).toBe(400);
  });
});

describe('a refusal is not stored with the Idempotency-Key', () => {
  it('the same request with the same key succeeds once the name resolves to a public address', async () => {
    const key = { 'Idempotency-Key': randomUUID() };
    const body = { url: 'https://later.private.test/in', enabledEvents: ['*' as const] };
    const refused = await api.strict.test.POST('/webhook-endpoints', { body, headers: key });
    await expectRefused(refused, /does not resolve/, 'before the name exists');
    DNS['later.private.test'] = ['93.184.216.34'];
    try {
      const created = await api.strict.test.POST('/webhook-endpoints', { body, headers: key });
      expect(created.response.status).toBe(201);
      expect(created.response.headers.get('Idempotent-Replayed')).toBeNull();
      expect(await endpointCount()).toBe(1);
    } finally {
      delete DNS['later.private.test'];
    }
  });
});
