/** The server purges expired keys (and events past 30 days) on its own schedule, in bounded batches. */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { insertEvent } from '../../server/events/events.service.js';
import { mintTokenForOrganisation } from '../../server/tokens/tokens.service.js';
import { purgeExpiredKeys } from '../../server/idempotency/idempotency.js';
import { scheduleHousekeeping } from '../../server/lifecycle/housekeeping.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

let database: TestDatabase;
let orgId: string;
beforeAll(async () => {
  database = await createTestDatabase();
  orgId = (await mintTokenForOrganisation(database.db, { orgName: 'Purge' })).orgId;
});
afterAll(() => database?.close());

async function insertKeys(count: number, expiresAt: Date, prefix: string) {
  const rows = Array.from({ length: count }, (_, i) => ({
    org_id: orgId,
    env: 'test' as const,
    key: `${prefix}-${i}`,
    fingerprint: 'f',
    response_status: 201,
    response_body: '{}',
    response_headers: '{}',
    expires_at: expiresAt,
  }));
  await database.db.insertInto('idempotency_keys').values(rows).execute();
}
const remaining = async () => (await database.db.selectFrom('idempotency_keys').select('key').execute()).length;

it('purges in batches until none is left, and never a live key', async () => {
  const now = new Date('2026-11-27T12:00:00Z');
  await insertKeys(25, new Date(now.getTime() - 1), 'expired');
  await insertKeys(5, new Date(now.getTime() + 1), 'live');
  expect(await purgeExpiredKeys(database.db, now, { batchSize: 10, maxBatches: 2 })).toBe(20);
  expect(await remaining()).toBe(10);
  expect(await purgeExpiredKeys(database.db, now, { batchSize: 10 })).toBe(5);
  expect(await remaining()).toBe(5);
});

const event = (createdAt: Date) => ({
  eventOrgId: orgId,
  eventEnv: 'test' as const,
  eventId: randomUUID(),
  eventType: 'client.created',
  eventCreatedAt: createdAt,
  eventData: '{"object":{}}',
});
const events = async () => (await database.db.selectFrom('events').select('created_at').execute()).map((r) => r.created_at);

it('runs on a schedule inside the server, for keys and events alike', async () => {
  await database.db.deleteFrom('idempotency_keys').execute();
  const now = new Date('2026-11-28T12:00:00Z');
  await insertKeys(3, new Date(now.getTime() - 1), 'scheduled');
  const kept = new Date(now.getTime() - 29 * 86_400_000);
  await insertEvent(database.db, event(new Date(now.getTime() - 31 * 86_400_000)));
  await insertEvent(database.db, event(kept));
  const errors: unknown[] = [];
  const stop = scheduleHousekeeping(
    database.db,
    () => now,
    (e) => errors.push(e),
    20,
  );
  try {
    await expect.poll(remaining, { timeout: 5_000, interval: 20 }).toBe(0);
    await expect.poll(events, { timeout: 5_000, interval: 20 }).toEqual([kept]);
  } finally {
    stop();
  }
  expect(errors).toEqual([]);
});
