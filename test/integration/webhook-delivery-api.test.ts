/**
 * Webhooks end to end, through the API only: clients changed with the typed client, the endpoint
 * registered and rotated through /webhook-endpoints, its attempts read back from
 * /webhook-endpoints/{id}/deliveries, and the worker delivering to a real receiver. Every delivery
 * is verified by the `standardwebhooks` library itself, and its body is the Event the feed serves
 * (GET /events/{id}). The worker's own rules, with rows written straight into the database, are
 * in webhook-worker.test.ts.
 *
 * These need the events (written with each client change, GET /events) and the endpoint
 * operations, built beside the worker: they pass once all three are merged.
 */
import { describe, expect, it } from 'vitest';
import type { ClientsApi } from '../../client/index.js';
import { RETRY_DELAYS_MS } from '../../server/webhook-delivery/schedule.js';
import { webhookHarness } from '../support/webhook-harness.js';
import { movableClock, verifyAtItsTime, waitFor } from '../support/webhook-worker-fixtures.js';

const DAY = 24 * 60 * 60 * 1000;
const { server, receiver: startReceiver, worker } = webhookHarness();

async function register(api: ClientsApi, url: string) {
  const { data, error } = await api.POST('/webhook-endpoints', { body: { url, enabledEvents: ['*'] } });
  if (!data) throw new Error(`endpoint not registered: ${JSON.stringify(error)}`);
  return { id: data.data.id, secret: data.secret! };
}

describe('webhooks through the API', () => {
  it('every change (created, updated, deleted, restored) is delivered, verified, its body the feed’s Event', async () => {
    const receiver = await startReceiver();
    const { api } = await server().tenant({ plan: 'pro' });
    const endpoint = await register(api, receiver.url);
    worker();

    const created = await api.POST('/clients', { body: { name: 'Globex' } });
    const id = created.data!.data.id;
    await api.PATCH('/clients/{id}', { params: { path: { id } }, body: { name: 'Globex Corporation' } });
    await api.DELETE('/clients/{id}', { params: { path: { id } } });
    await api.POST('/clients/{id}/restore', { params: { path: { id } } });

    await waitFor(() => receiver.requests.length >= 4, 'four deliveries', 30_000);
    const types = [];
    for (const request of receiver.requests) {
      const payload = verifyAtItsTime(endpoint.secret, request) as { id: string; type: string };
      expect(request.headers['webhook-id']).toBe(payload.id);
      const { data: fromFeed } = await api.GET('/events/{id}', { params: { path: { id: payload.id } } });
      expect(JSON.parse(request.body)).toEqual(fromFeed!.data);
      types.push(payload.type);
    }
    expect(types.sort()).toEqual(['client.created', 'client.deleted', 'client.restored', 'client.updated']);
  });

  it("a client's contacts' changes reach the endpoints that enabled their types, and only those, verified and typed as the feed's", async () => {
    const everything = await startReceiver();
    const someTypes = await startReceiver();
    const { api } = await server().tenant({ plan: 'pro' });
    const all = await register(api, everything.url);
    const { data: picky } = await api.POST('/webhook-endpoints', {
      body: { url: someTypes.url, enabledEvents: ['contact.created', 'contact.deleted'] },
    });
    worker();

    const clientId = (await api.POST('/clients', { body: { name: 'Globex' } })).data!.data.id;
    const path = { id: clientId };
    const first = (await api.POST('/clients/{id}/contacts', { params: { path }, body: { name: 'Marge', isPrimary: true } })).data!.data;
    await api.POST('/clients/{id}/contacts', { params: { path }, body: { name: 'Homer', isPrimary: true } });
    await api.DELETE('/clients/{id}/contacts/{contactId}', { params: { path: { ...path, contactId: first.id } } });

    // client.created; contact.created (Marge); contact.updated (Marge demoted) and contact.created (Homer); contact.deleted.
    await waitFor(() => everything.requests.length >= 5 && someTypes.requests.length >= 3, 'the deliveries', 30_000);
    const types = [];
    for (const request of everything.requests) {
      const payload = verifyAtItsTime(all.secret, request) as { id: string; type: string };
      const { data: fromFeed } = await api.GET('/events/{id}', { params: { path: { id: payload.id } } });
      expect(JSON.parse(request.body)).toEqual(fromFeed!.data);
      types.push(payload.type);
    }
    expect(types.sort()).toEqual(['client.created', 'contact.created', 'contact.created', 'contact.deleted', 'contact.updated']);
    const picked = someTypes.requests.map(
      (r) => verifyAtItsTime(picky!.secret!, r) as { type: string; data: { object: { name: string } } },
    );
    expect(picked.map((e) => `${e.type} ${e.data.object.name}`).sort()).toEqual([
      'contact.created Homer',
      'contact.created Marge',
      'contact.deleted Marge',
    ]);
  });

  it('a receiver that fails twice then succeeds: three deliveries with one webhook-id, the attempts listed', async () => {
    const receiver = await startReceiver();
    receiver.answer = (_, index) => ({ status: index < 2 ? 500 : 200 });
    const { api } = await server().tenant({ plan: 'pro' });
    const endpoint = await register(api, receiver.url);
    const clock = movableClock();
    const w = worker({ clock: clock.now, loop: false });
    await api.POST('/clients', { body: { name: 'Initech' } });
    await waitFor(
      async () => {
        await w.tick();
        return receiver.requests.length >= 1;
      },
      'the first attempt',
      30_000,
    );
    for (const delay of RETRY_DELAYS_MS.slice(0, 2)) {
      const before = receiver.requests.length;
      clock.advance(delay);
      await w.tick();
      expect(receiver.requests).toHaveLength(before + 1);
    }
    const ids = receiver.requests.map((r) => r.headers['webhook-id']);
    expect(new Set(ids).size).toBe(1);

    const { data } = await api.GET('/webhook-endpoints/{id}/deliveries', { params: { path: { id: endpoint.id } } });
    const attempts = [...data!.data].reverse(); // newest first on the wire
    expect(attempts.map((a) => [a.attempt, a.statusCode, a.succeeded, a.eventId])).toEqual([
      [1, 500, false, ids[0]],
      [2, 500, false, ids[0]],
      [3, 200, true, ids[0]],
    ]);
    expect(Date.parse(attempts[0]!.nextRetryAt!) - Date.parse(attempts[0]!.attemptedAt)).toBe(RETRY_DELAYS_MS[0]);
    expect(Date.parse(attempts[1]!.nextRetryAt!) - Date.parse(attempts[1]!.attemptedAt)).toBe(RETRY_DELAYS_MS[1]);
    expect(attempts[2]!.nextRetryAt).toBeNull();
  });

  it('after rotate-secret both secrets sign for 24 hours (each verifies alone), then only the new one', async () => {
    const receiver = await startReceiver();
    const { api } = await server().tenant({ plan: 'pro' });
    const endpoint = await register(api, receiver.url);
    const rotated = await api.POST('/webhook-endpoints/{id}/rotate-secret', { params: { path: { id: endpoint.id } } });
    const newSecret = rotated.data!.secret!;
    const clock = movableClock();
    const w = worker({ clock: clock.now, loop: false });
    const tickUntil = (n: number) =>
      waitFor(
        async () => {
          await w.tick();
          return receiver.requests.length >= n;
        },
        `delivery ${n}`,
        30_000,
      );

    await api.POST('/clients', { body: { name: 'During' } });
    clock.advance(DAY - 60_000);
    await tickUntil(1);
    expect(verifyAtItsTime(newSecret, receiver.requests[0]!)).toBeTruthy();
    expect(verifyAtItsTime(endpoint.secret, receiver.requests[0]!)).toBeTruthy();

    await api.POST('/clients', { body: { name: 'After' } });
    clock.advance(2 * 60_000);
    await tickUntil(2);
    expect(verifyAtItsTime(newSecret, receiver.requests[1]!)).toBeTruthy();
    expect(() => verifyAtItsTime(endpoint.secret, receiver.requests[1]!)).toThrow();
  });
});
