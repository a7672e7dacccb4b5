/**
 * The webhook backlog's age (`webhook_deliveries_oldest_due_seconds`, what the alert
 * ClientsApiWebhookBacklogOld in ops/prometheus/alerts.yml watches): how long the oldest due
 * delivery has waited among the endpoints the worker may send to. A delivery that is not due yet,
 * one held by an open circuit or by the plan, and a disabled endpoint's do not count.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createMetrics } from '../../server/metrics/metrics.js';
import { mintTokenForOrganisation } from '../../server/tokens/tokens.service.js';
import { countHeldBack } from '../../server/webhook-delivery/deliveries.queries.js';
import { ephemeralWebhookSettings } from '../../server/webhook-delivery/settings.js';
import { startWebhookWorker } from '../../server/webhook-delivery/worker.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { insertEndpoint, insertEvent, movableClock, type Receiver, startReceiver, waitFor } from '../support/webhook-worker-fixtures.js';

const settings = ephemeralWebhookSettings({ allowPrivateNetworks: true });
let database: TestDatabase;
let receiver: Receiver;

beforeAll(async () => {
  database = await createTestDatabase();
  receiver = await startReceiver();
});
afterAll(async () => {
  await receiver?.close();
  await database?.close();
});

const nextAttemptOf = async (endpointId: string) =>
  (
    await database.db
      .selectFrom('webhook_deliveries')
      .select('next_attempt_at')
      .where('endpoint_id', '=', endpointId)
      .executeTakeFirstOrThrow()
  ).next_attempt_at;

it('grows with the oldest due delivery of a deliverable endpoint, and reaches the metric', async () => {
  receiver.answer = () => ({ status: 500 });
  const clock = movableClock();
  const { orgId } = await mintTokenForOrganisation(database.db, { orgName: `backlog-${Date.now()}`, plan: 'pro' });
  const endpoint = await insertEndpoint(database.db, settings, { orgId, url: `${receiver.url}/behind`, now: clock.now() });
  await insertEvent(database.db, { orgId, createdAt: clock.now() });

  const metrics = createMetrics();
  const worker = startWebhookWorker({
    db: database.db,
    settings,
    logger: pino({ level: 'silent' }),
    pollIntervalMs: 10,
    timeoutMs: 5000,
    loop: false,
    clock: clock.now,
    observer: metrics.webhooks,
  });
  try {
    // One failed attempt: the delivery waits for its retry, not due yet, so nothing is late.
    await waitFor(async () => {
      await worker.tick();
      return receiver.requests.some((r) => r.path === '/hooks/behind');
    }, 'the first attempt');
    const retryAt = await nextAttemptOf(endpoint.id);
    expect(retryAt.getTime()).toBeGreaterThan(clock.now().getTime());
    expect((await countHeldBack(database.db, clock.now())).oldestDueSeconds).toBe(0);

    // Ten minutes past its retry time and not attempted (no worker ran): 600 s late.
    const late = new Date(retryAt.getTime() + 600_000);
    expect((await countHeldBack(database.db, late)).oldestDueSeconds).toBeCloseTo(600, 3);

    // What the worker counts reaches the gauge.
    metrics.webhooks.heldBack(await countHeldBack(database.db, late));
    expect(await metrics.registry.metrics()).toMatch(/^webhook_deliveries_oldest_due_seconds 600(\.\d+)?$/m);

    // Held by an open circuit, or a disabled endpoint: not the workers' backlog to catch up.
    await database.db
      .updateTable('webhook_endpoints')
      .set({ circuit_open_until: new Date(late.getTime() + 60_000) })
      .where('id', '=', endpoint.id)
      .execute();
    expect((await countHeldBack(database.db, late)).oldestDueSeconds).toBe(0);
    await database.db.updateTable('webhook_endpoints').set({ circuit_open_until: null }).where('id', '=', endpoint.id).execute();
    expect((await countHeldBack(database.db, late)).oldestDueSeconds).toBeCloseTo(600, 3);
    // A disabled endpoint's backlog is not the workers' to catch up.
    await database.db
      .updateTable('webhook_endpoints')
      .set({ disabled: true, disabled_reason: 'manual' })
      .where('id', '=', endpoint.id)
      .execute();
    expect((await countHeldBack(database.db, late)).oldestDueSeconds).toBe(0);
  } finally {
    await worker.stop();
  }
});
