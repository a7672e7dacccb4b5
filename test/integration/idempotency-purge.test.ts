/**
 * The server purges expired keys (and events past 30 days) on its own schedule, in bounded
 * batches, until none is left: one cycle empties whatever has piled up, so the 24-hour and 30-day
 * retentions hold at any write rate. Rows are made here by the hundred thousand in one statement
 * each (generate_series), as no owner's queries file offers a bulk insert; the table-owner rule
 * (test/unit/table-owners.test.ts) governs server/ only.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { EVENT_RETENTION_MS, insertEvent, purgeExpiredEvents } from '../../server/events/events.service.js';
import { mintTokenForOrganisation } from '../../server/tokens/tokens.service.js';
import { purgeExpiredKeys } from '../../server/idempotency/idempotency.js';
import { type Purged, scheduleHousekeeping } from '../../server/lifecycle/housekeeping.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

let database: TestDatabase;
let orgId: string;
beforeAll(async () => {
  database = await createTestDatabase();
  orgId = (await mintTokenForOrganisation(database.db, { orgName: 'Purge' })).orgId;
});
afterAll(() => database?.close());
beforeEach(async () => {
  await database.db.deleteFrom('idempotency_keys').execute();
  await database.db.deleteFrom('events').execute();
});

/** `count` keys expiring at `expiresAt`, in one statement. */
async function insertKeys(count: number, expiresAt: Date, prefix: string) {
  await sql`
    insert into idempotency_keys (org_id, env, key, fingerprint, response_status, response_body, response_headers, expires_at)
    select ${orgId}, 'test', ${prefix} || '-' || i, 'f', 201, '{}', '{}', ${expiresAt}::timestamptz
    from generate_series(1, ${count}::int) as i
  `.execute(database.db);
}
/** `count` events made at `createdAt`, in one statement. */
async function insertEvents(count: number, createdAt: Date) {
  await sql`
    insert into events (org_id, env, id, type, created_at, data)
    select ${orgId}, 'test', gen_random_uuid(), 'client.created', ${createdAt}::timestamptz, '{"object":{}}'
    from generate_series(1, ${count}::int)
  `.execute(database.db);
}
const keysLeft = async () => (await database.db.selectFrom('idempotency_keys').select('key').execute()).map((r) => r.key).sort();
const count = async (table: 'idempotency_keys' | 'events') =>
  Number((await database.db.selectFrom(table).select(sql<string>`count(*)`.as('n')).executeTakeFirstOrThrow()).n);

it('purges in batches until none is left, and never a live key', async () => {
  const now = new Date('2026-11-27T12:00:00Z');
  await insertKeys(25, new Date(now.getTime() - 1), 'expired');
  await insertKeys(5, new Date(now.getTime() + 1), 'live');
  expect(await purgeExpiredKeys(database.db, now, { batchSize: 10 })).toBe(25);
  expect(await keysLeft()).toEqual(['live-1', 'live-2', 'live-3', 'live-4', 'live-5']);
  expect(await purgeExpiredKeys(database.db, now, { batchSize: 10 })).toBe(0);
});

it('one cycle of the schedule empties 100,000 expired keys and 100,000 events past 30 days, and only them', {
  timeout: 240_000,
}, async () => {
  const now = new Date('2026-11-28T12:00:00Z');
  await insertKeys(100_000, new Date(now.getTime() - 1), 'expired');
  await insertKeys(3, new Date(now.getTime() + 60_000), 'live');
  await insertEvents(100_000, new Date(now.getTime() - EVENT_RETENTION_MS - 1000));
  const kept = new Date(now.getTime() - EVENT_RETENTION_MS + 60_000);
  await insertEvent(database.db, {
    eventOrgId: orgId,
    eventEnv: 'test',
    eventId: randomUUID(),
    eventType: 'client.created',
    eventCreatedAt: kept,
    eventData: '{"object":{}}',
    eventTraceContext: null,
    eventObjectId: null,
  });

  const cycles: Purged[] = [];
  const errors: unknown[] = [];
  // Due every few milliseconds: a cycle still at work when the next is due must not be joined by a second.
  const stop = scheduleHousekeeping(database.db, {
    clock: () => now,
    onError: (error) => errors.push(error),
    onPurged: (purged) => cycles.push(purged),
    intervalMs: 5,
  });
  try {
    await expect.poll(() => cycles.length, { timeout: 200_000, interval: 50 }).toBeGreaterThan(0);
  } finally {
    await stop();
  }
  expect(errors).toEqual([]);
  // The first cycle took everything: had a second run beside it, they would have shared the rows.
  expect(cycles[0]).toEqual({ keys: 100_000, events: 100_000 });
  expect(cycles.slice(1).every((c) => c.keys === 0 && c.events === 0)).toBe(true);
  expect(await keysLeft()).toEqual(['live-1', 'live-2', 'live-3']);
  expect((await database.db.selectFrom('events').select('created_at').execute()).map((r) => r.created_at)).toEqual([kept]);
});

it('a purge stopped by shutdown starts no further batch, and the stop waits for the batch in flight', async () => {
  const now = new Date('2026-11-29T12:00:00Z');
  await insertKeys(5_000, new Date(now.getTime() - 1), 'expired');
  const stopping = new AbortController();
  const purging = purgeExpiredKeys(database.db, now, { batchSize: 1_000, signal: stopping.signal });
  stopping.abort();
  // The first batch was under way; none followed it.
  expect(await purging).toBe(1_000);
  expect(await count('idempotency_keys')).toBe(4_000);

  const cycles: Purged[] = [];
  const stop = scheduleHousekeeping(database.db, { clock: () => now, onError: () => {}, onPurged: (p) => cycles.push(p), intervalMs: 1 });
  await expect.poll(() => cycles.length).toBeGreaterThan(0);
  await stop();
  const after = cycles.length;
  await new Promise((resolve) => setTimeout(resolve, 50));
  expect(cycles.length).toBe(after);
});

it('purges running at once (as in several processes on one PostgreSQL) take disjoint rows, and together take them all', async () => {
  const now = new Date('2026-11-30T12:00:00Z');
  await insertKeys(20_000, new Date(now.getTime() - 1), 'expired');
  await insertEvents(5_000, new Date(now.getTime() - EVENT_RETENTION_MS - 1000));
  const keys = await Promise.all([0, 1, 2].map(() => purgeExpiredKeys(database.db, now, { batchSize: 500 })));
  const events = await Promise.all([0, 1, 2].map(() => purgeExpiredEvents(database.db, now, { batchSize: 500 })));
  expect(keys.reduce((a, b) => a + b)).toBe(20_000);
  expect(events.reduce((a, b) => a + b)).toBe(5_000);
  expect(await count('idempotency_keys')).toBe(0);
  expect(await count('events')).toBe(0);
});
