/**
 * The concurrent-requests limit (docs/behaviour.md, "Rate limits"; Stripe's concurrent-requests limiter):
 * an organisation may have at most `limit` requests in flight at once in this process, both
 * environments together. The budget bounds how many requests an organisation makes per window;
 * this bounds how many it holds at one time, so that slow requests of one organisation (a large
 * page, a write waiting on a lock, a body sent slowly) cannot take every connection of the
 * process's database pool, nor every turn of its event loop, from the others.
 *
 * Counted per process, in memory: what it protects (the pool, the event loop) is the process's
 * own, and a count kept nowhere else cannot outlive a crashed process. N processes let an
 * organisation hold N times the limit in all, which their N pools can carry.
 */
import { ApiError } from '../shared/errors.js';

/** Gives back the slot a request took; calling it again does nothing. */
export type ReleaseSlot = () => void;

export interface ConcurrencyLimit {
  /**
   * Takes one of the organisation's slots, or throws 429 `rate_limited` with `Retry-After` when
   * all are taken. The caller must release the slot once the request is over, however it ends.
   */
  enter(orgId: string): ReleaseSlot;
  /** The organisation's requests in flight now (for tests and diagnostics). */
  inFlight(orgId: string): number;
}

/**
 * Half the database pool a server process opens (10 connections, server/db/database.ts): a request
 * holds at most one connection at a time, so however many requests one organisation sends at
 * once, at least half of the connections stay free for every other organisation.
 */
export const DEFAULT_CONCURRENCY_LIMIT = 5;

/** Requests take milliseconds: by the next second a slot is most likely free. */
const RETRY_AFTER_SECONDS = 1;

export function createConcurrencyLimit(limit: number): ConcurrencyLimit {
  if (!Number.isInteger(limit) || limit < 1) throw new Error(`The concurrency limit must be a whole number of at least 1, not ${limit}`);
  /** Organisation → requests in flight; an organisation with none has no entry, so the map holds only the busy ones. */
  const slots = new Map<string, number>();
  const refusal = () =>
    new ApiError(
      'rate_limited',
      `This organisation has ${limit} request${limit === 1 ? '' : 's'} in flight at once, its limit; ` +
        `wait for one to be answered, or retry in ${RETRY_AFTER_SECONDS} second.`,
      { headers: { 'Retry-After': String(RETRY_AFTER_SECONDS) } },
    );

  return {
    enter(orgId) {
      const taken = slots.get(orgId) ?? 0;
      if (taken >= limit) throw refusal();
      slots.set(orgId, taken + 1);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const left = slots.get(orgId)! - 1;
        if (left === 0) slots.delete(orgId);
        else slots.set(orgId, left);
      };
    },
    inFlight: (orgId) => slots.get(orgId) ?? 0,
  };
}
