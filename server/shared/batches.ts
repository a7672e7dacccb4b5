/**
 * Removing what has expired, in bounded batches, for as long as there is some: each batch is its
 * own short statement (no lock is held for long, and a statement timeout never cuts a purge), a
 * batch that comes back full is followed by another (so a purge keeps up with any rate of writes),
 * and the event loop gets a turn between two (on the embedded database, requests run in between).
 */
import { setImmediate } from 'node:timers/promises';

export interface BatchOptions {
  /** Rows per statement. */
  batchSize?: number;
  /** Aborted: no further batch starts (shutdown). */
  signal?: AbortSignal | undefined;
}

/** Runs `removeBatch` while it removes a full batch; returns how many rows went in all. */
export async function removeInBatches(
  removeBatch: (batchSize: number) => Promise<number>,
  { batchSize = 1000, signal }: BatchOptions = {},
): Promise<number> {
  let total = 0;
  while (!signal?.aborted) {
    const removed = await removeBatch(batchSize);
    total += removed;
    if (removed < batchSize) break;
    await setImmediate();
  }
  return total;
}
