/**
 * Deliveries stop when the organisation's plan no longer includes webhooks, and resume after an
 * upgrade (docs/webhooks.md, "Fairness"): nothing is attempted, failed or lost meanwhile, the
 * endpoints say why they are idle, and the time on the lower plan does not count toward the
 * five-day disable. The plan is changed as an operator does: `npm run cli -- org set-plan` on
 * PostgreSQL (a process of its own needs a database it can reach), and the function that command
 * runs on the in-memory PGlite.
 */
import { describe, expect, it } from 'vitest';
import type { PlanName } from '../../server/db/schema.js';
import { setOrganisationPlan } from '../../server/orgs/orgs.queries.js';
import { DISABLE_AFTER_FAILING_MS } from '../../server/webhook-delivery/schedule.js';
import type { WebhookWorker } from '../../server/webhook-delivery/worker.js';
import { usingPostgres } from '../support/database.js';
import { runCli } from '../support/processes.js';
import { webhookHarness } from '../support/webhook-harness.js';
import { insertEndpoint, insertEvent, movableClock, waitFor } from '../support/webhook-worker-fixtures.js';

const DAY = 24 * 60 * 60 * 1000;
const harness = webhookHarness();
const { settings, server } = harness;

/** A worker stepped by the test (`tick()`), on the test's clock. */
function worker(clock: ReturnType<typeof movableClock>): WebhookWorker {
  return harness.worker({ clock: clock.now, loop: false });
}

/** `npm run cli -- org set-plan` on PostgreSQL; on PGlite, what it runs. */
async function setPlan(orgName: string, plan: PlanName): Promise<void> {
  if (usingPostgres) {
    const run = await runCli(['org', 'set-plan', '--org', orgName, '--plan', plan], { DATABASE_URL: server().database.url });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(`is on plan ${plan}`);
  } else {
    expect(await setOrganisationPlan(server().database.db, orgName, plan)).toBeDefined();
  }
}

const deliveriesOf = (endpointId: string) =>
  server()
    .database.db.selectFrom('webhook_deliveries')
    .select(['event_id', 'status', 'attempts'])
    .where('endpoint_id', '=', endpointId)
    .orderBy('created_at')
    .execute();

describe('a downgrade to free, then an upgrade', () => {
  it('stops every attempt, keeps the endpoint saying why, loses nothing, and delivers it all after the upgrade', {
    timeout: 120_000,
  }, async () => {
    const receiver = await harness.receiver();
    receiver.answer = (_, index) => ({ status: index === 0 ? 500 : 200 });
    const orgName = `downgraded-${Date.now()}`;
    const minted = await server().mint({ orgName, plan: 'pro' });
    const api = server().client(minted.token);
    const clock = movableClock();
    const w = worker(clock);
    const registered = await api.POST('/webhook-endpoints', { body: { url: receiver.url, enabledEvents: ['*'] } });
    const endpointId = registered.data!.data.id;
    const read = async () => (await api.GET('/webhook-endpoints/{id}', { params: { path: { id: endpointId } } })).data!.data;

    // On pro: a change, its first attempt failed, its retry due in 5 s.
    const before = (await api.POST('/clients', { body: { name: 'Before' } })).data!.data;
    await waitFor(async () => {
      await w.tick();
      return receiver.requests.length >= 1;
    }, 'the first attempt');
    expect(await deliveriesOf(endpointId)).toMatchObject([{ status: 'pending', attempts: 1 }]);

    await setPlan(orgName, 'free');
    // Changes on free write their events as always (the feed is on every plan).
    const during = (await api.POST('/clients', { body: { name: 'During' } })).data!.data;
    await api.PATCH('/clients/{id}', { params: { path: { id: during.id } }, body: { notes: 'changed on free' } });
    const { data: feed } = await api.GET('/events');
    const duringEvents = feed!.data.slice(1).map((e) => e.id);
    expect(duringEvents).toHaveLength(2);

    // An hour, then days: the retry is long due, and nothing goes out.
    for (const step of [60 * 60 * 1000, 3 * DAY]) {
      clock.advance(step);
      await w.tick();
      await w.tick();
    }
    expect(receiver.requests).toHaveLength(1);
    // Nothing failed, nothing fanned out: the retry waits, unspent; the new events wait in the feed.
    expect(await deliveriesOf(endpointId)).toMatchObject([{ status: 'pending', attempts: 1 }]);

    // The endpoint is kept and says why it is idle; turning it on again needs the plan, as every write does.
    await waitFor(async () => (await read()).deliveryPause?.reason === 'plan', 'the endpoint to show the plan');
    expect(await read()).toMatchObject({ disabled: false, deliveryPause: { reason: 'plan', probeAt: null } });
    const { data: listed } = await api.GET('/webhook-endpoints');
    expect(listed!.data.map((e) => e.deliveryPause)).toEqual([{ reason: 'plan', probeAt: null }]);
    const enable = await api.PATCH('/webhook-endpoints/{id}', { params: { path: { id: endpointId } }, body: { disabled: false } });
    expect(enable.response.status).toBe(402);
    expect(enable.error!.error).toMatchObject({ code: 'plan_required', requiredPlan: 'pro', feature: 'webhooks' });
    const attempts = (await api.GET('/webhook-endpoints/{id}/deliveries', { params: { path: { id: endpointId } } })).data!.data;
    expect(attempts.map((a) => [a.attempt, a.statusCode, a.succeeded])).toEqual([[1, 500, false]]);

    // Back on pro: the retry and the events of the meantime are delivered, each once.
    await setPlan(orgName, 'pro');
    await waitFor(async () => {
      await w.tick();
      return receiver.requests.length >= 4;
    }, 'the deliveries after the upgrade');
    await w.tick();
    const ids = receiver.requests.map((r) => r.headers['webhook-id']);
    const beforeEvent = ids[0]!;
    expect(ids).toHaveLength(4);
    expect(new Set(ids.slice(1))).toEqual(new Set([beforeEvent, ...duringEvents]));
    expect(JSON.parse(receiver.requests[0]!.body).data.object.id).toBe(before.id);
    expect((await deliveriesOf(endpointId)).map((d) => d.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    await waitFor(async () => (await read()).deliveryPause === null, 'the endpoint to show no pause');
    expect((await read()).failingSince).toBeNull();
  });

  it('the time on free does not count toward the five-day disable', { timeout: 120_000 }, async () => {
    const receiver = await harness.receiver();
    receiver.answer = () => ({ status: 500 });
    const orgName = `failing-downgraded-${Date.now()}`;
    const { orgId } = await server().mint({ orgName, plan: 'pro' });
    const start = Date.now();
    const clock = movableClock(new Date(start));
    const endpoint = await insertEndpoint(server().database.db, settings, { orgId, url: receiver.url });
    const w = worker(clock);
    const row = () =>
      server().database.db.selectFrom('webhook_endpoints').selectAll().where('id', '=', endpoint.id).executeTakeFirstOrThrow();
    /** A new event at `at`, and its first attempt (failed). */
    const failAt = async (at: number) => {
      clock.set(new Date(at));
      const seen = receiver.requests.length;
      await insertEvent(server().database.db, { orgId });
      await waitFor(async () => {
        await w.tick();
        return receiver.requests.length > seen;
      }, 'the attempt');
    };

    await failAt(start);
    await failAt(start + 4 * DAY);
    expect((await row()).failing_since?.getTime()).toBe(start);

    // Ten days on free: the worker notes when the plan began to hold the endpoint, and when it stopped.
    await setPlan(orgName, 'free');
    await w.tick();
    clock.set(new Date(start + 14 * DAY));
    await w.tick();
    await setPlan(orgName, 'pro');
    await w.tick();
    const resumed = await row();
    expect([resumed.plan_paused_at, resumed.failing_since?.getTime()]).toEqual([null, start + 10 * DAY]);

    // Failing for four days and a half of pro time: still enabled. Past five: disabled.
    await failAt(start + 14.5 * DAY);
    expect((await row()).disabled).toBe(false);
    await failAt(start + 10 * DAY + DISABLE_AFTER_FAILING_MS);
    expect(await row()).toMatchObject({ disabled: true, disabled_reason: 'failing' });
  });
});
