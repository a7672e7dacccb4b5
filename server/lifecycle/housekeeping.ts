/**
 * What the server removes on a schedule, in bounded batches so that no purge holds locks for long:
 * Idempotency-Keys past their 24 hours, and events past their 30 days (their deliveries and
 * attempts go with them).
 */
import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { purgeExpiredEvents } from '../events/events.service.js';
import { purgeExpiredKeys } from '../idempotency/idempotency.js';

/** Starts the schedule; the timer never keeps the process alive. Returns what stops it. */
export function scheduleHousekeeping(
  db: Kysely<Database>,
  clock: () => Date,
  onError: (error: unknown) => void,
  intervalMs = 10 * 60 * 1000,
): () => void {
  const timer = setInterval(() => {
    const now = clock();
    purgeExpiredKeys(db, now, { batchSize: 1000, maxBatches: 10 }).catch(onError);
    purgeExpiredEvents(db, now, { batchSize: 1000, maxBatches: 10 }).catch(onError);
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
