/**
 * When a failed delivery is tried again. docs/webhooks.md quotes this table; the worker
 * (server/webhook-delivery/worker.ts) follows it.
 *
 * Attempt 1 goes out as soon as the event is fanned out; after the n-th failure the next attempt
 * waits RETRY_DELAYS_MS[n - 1]. Ten attempts in all, over about 3 days and 3.5 hours
 * (5 s + 5 min + 30 min + 2 h + 5 h + 10 h + 14 h + 20 h + 24 h); after the tenth failure the
 * delivery is `failed` and is not tried again.
 */
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

export const RETRY_DELAYS_MS: readonly number[] = [
  5 * SECOND,
  5 * MINUTE,
  30 * MINUTE,
  2 * HOUR,
  5 * HOUR,
  10 * HOUR,
  14 * HOUR,
  20 * HOUR,
  24 * HOUR,
];

/** Attempts per delivery, the first included. */
export const MAX_ATTEMPTS = RETRY_DELAYS_MS.length + 1;

/** An endpoint whose every attempt has failed for this long is disabled (`disabledReason: failing`). */
export const DISABLE_AFTER_FAILING_MS = 5 * 24 * HOUR;

/** When to try again after attempt number `attempt` (1-based) failed at `at`; null after the last. */
export function nextRetryAt(attempt: number, at: Date): Date | null {
  const delay = RETRY_DELAYS_MS[attempt - 1];
  return delay === undefined ? null : new Date(at.getTime() + delay);
}

/**
 * The circuit of an endpoint that keeps failing (server/webhook-delivery/worker.ts, docs/webhooks.md
 * "Fairness"). After CIRCUIT_OPENS_AFTER failed attempts in a row, whatever their deliveries, the
 * endpoint gets no attempt for a cool-down; then one delivery is tried as a probe. A success closes
 * the circuit (and ends `failingSince`); a failed probe opens it again for twice as long, up to
 * CIRCUIT_MAX_COOL_DOWN_MS. Deliveries held meanwhile stay pending with their attempts unspent:
 * the retry schedule above counts attempts made, not time, and the five-day disable (which does
 * count time) still ends an endpoint that never answers.
 *
 * Five: more than a receiver's brief hiccup (a deploy, a restart), and few enough that a dead one
 * costs five attempts' time, not a backlog's. The cool-downs start at a minute and stop at an
 * hour, so a receiver that comes back is found again within the hour.
 */
export const CIRCUIT_OPENS_AFTER = 5;
export const CIRCUIT_FIRST_COOL_DOWN_MS = MINUTE;
export const CIRCUIT_MAX_COOL_DOWN_MS = HOUR;
