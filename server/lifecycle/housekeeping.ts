/**
 * What the server removes on a schedule: Idempotency-Keys past their 24 hours, and events past
 * their 30 days (their deliveries and attempts go with them). Each cycle removes everything expired
 * at its start, in bounded batches (server/shared/batches.ts), however much has piled up: a
 * retention keeps holding at any write rate the server can take.
 *
 * One cycle at a time in a process: a cycle still working through a backlog when the next one is
 * due is not joined by a second one. Several processes (servers on one PostgreSQL) may purge at
 * once: each batch takes the rows it deletes with SKIP LOCKED, so their batches take disjoint rows,
 * never wait for one another and never deadlock, and removing an expired row twice cannot happen.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { purgeExpiredEvents } from '../events/events.service.js';
import { purgeExpiredKeys } from '../idempotency/idempotency.js';

export interface Purged {
  keys: number;
  events: number;
}

export interface HousekeepingOptions {
  clock: () => Date;
  onError: (error: unknown) => void;
  /** Told what each cycle removed. */
  onPurged?: (purged: Purged) => void;
  intervalMs?: number;
}

const TEN_MINUTES = 10 * 60 * 1000;
/**
 * The first cycle comes this soon after start (or after one interval, if shorter), so that a
 * service restarted more often than every interval still purges.
 */
const FIRST_CYCLE_MS = 60 * 1000;

/**
 * Starts the schedule; its timers never keep the process alive. Returns what stops it: no batch
 * starts after, and the promise settles once the batch in flight has ended (before the database
 * closes).
 */
export function scheduleHousekeeping(
  db: Kysely<Database>,
  { clock, onError, onPurged, intervalMs = TEN_MINUTES }: HousekeepingOptions,
): () => Promise<void> {
  const stopping = new AbortController();
  const { signal } = stopping;
  let cycle: Promise<void> | undefined;

  // A failure of one purge is reported, and leaves the other to run.
  const failed = (error: unknown) => {
    onError(error);
    return 0;
  };
  async function purge(): Promise<void> {
    const now = clock();
    const keys = await purgeExpiredKeys(db, now, { signal }).catch(failed);
    const events = await purgeExpiredEvents(db, now, { signal }).catch(failed);
    onPurged?.({ keys, events });
  }
  const run = () => {
    if (cycle || signal.aborted) return;
    cycle = purge().finally(() => {
      cycle = undefined;
    });
  };

  const first = setTimeout(run, Math.min(intervalMs, FIRST_CYCLE_MS));
  const timer = setInterval(run, intervalMs);
  first.unref();
  timer.unref();
  return async () => {
    clearTimeout(first);
    clearInterval(timer);
    stopping.abort();
    await cycle;
  };
}
