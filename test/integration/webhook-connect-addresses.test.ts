/**
 * The address rule at connect time (server/webhook-delivery/sender.ts): a delivery to a name that now
 * resolves to an IPv4-compatible IPv6 address (::/96, outside global unicast), or to such a
 * literal, is refused before any connection, whatever the name resolved to when the endpoint was
 * registered (DNS rebinding). DNS is staged, as in test/contract/webhook-url-policy.test.ts.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { originAgents } from '../../server/webhook-delivery/agents.js';
import { type OutgoingDelivery, sendDelivery } from '../../server/webhook-delivery/sender.js';
import { ephemeralWebhookSettings } from '../../server/webhook-delivery/settings.js';
import { type Receiver, startReceiver } from '../support/webhook-worker-fixtures.js';

let receiver: Receiver;
beforeAll(async () => {
  receiver = await startReceiver();
});
afterAll(() => receiver?.close());

const delivery = (url: string): OutgoingDelivery => ({
  eventId: '0b7d5a1e-2c4f-4e8a-9b6d-3f1a2c5e7d90',
  body: '{"type":"client.created"}',
  url,
  secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'],
});
/** A sender whose resolver answers `addresses` for every name. */
const attempt = (url: string, addresses: string[], allowPrivateNetworks = false, agents?: ReturnType<typeof originAgents>) =>
  sendDelivery(delivery(url), new Date(), {
    settings: ephemeralWebhookSettings({ allowPrivateNetworks, resolve: async () => addresses }),
    timeoutMs: 5_000,
    agents,
  });

it('through the keep-alive agents (the worker sends so), every new connection is judged the same way', async () => {
  const agents = originAgents({ maxSocketsPerOrigin: 4 });
  try {
    const refused = await attempt(`http://hooks.public.test:${receiver.port}/hooks`, ['::7f00:1'], false, agents);
    expect(refused).toMatchObject({ succeeded: false, statusCode: null, error: 'address not allowed' });
    const literal = await attempt(`http://127.0.0.1:${receiver.port}/hooks`, [], false, agents);
    expect(literal.error).toBe('address not allowed');
    expect(receiver.requests).toEqual([]);
    expect(receiver.connections).toBe(0);
  } finally {
    agents.close();
  }
});

it.each([
  ['::7f00:1', '127.0.0.1'],
  ['::a9fe:a9fe', '169.254.169.254'],
])('a name resolving to %s (IPv4-compatible, of %s) is refused at connect time', async (address) => {
  const outcome = await attempt(`http://hooks.public.test:${receiver.port}/hooks`, [address]);
  expect(outcome).toMatchObject({ succeeded: false, statusCode: null, error: 'address not allowed' });
  // Among public addresses, it still refuses: the socket could pick it.
  const mixed = await attempt(`http://hooks.public.test:${receiver.port}/hooks`, ['2606:2800:220:1:248:1893:25c8:1946', address]);
  expect(mixed.error).toBe('address not allowed');
  expect(receiver.requests).toEqual([]);
});

it.each(['http://[::7f00:1]:8080/', 'http://[::a9fe:a9fe]/'])('the literal %s is refused without resolving or connecting', async (url) => {
  const outcome = await attempt(url, []);
  expect(outcome).toMatchObject({ succeeded: false, statusCode: null, error: 'address not allowed' });
});

it('the same staged name reaches the receiver when private networks are allowed: the refusal is the address rule', async () => {
  const outcome = await attempt(`http://hooks.public.test:${receiver.port}/hooks`, ['127.0.0.1'], true);
  expect(outcome).toMatchObject({ succeeded: true, statusCode: 200 });
  expect(receiver.requests).toHaveLength(1);
});
