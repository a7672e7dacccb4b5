/**
 * How many attempts each endpoint may have in flight, learnt from its answers (additive increase,
 * multiplicative decrease, as TCP's congestion window): an endpoint starts at START_LIMIT; each
 * quick success while it was using at least half its limit adds one, up to the ceiling
 * (WEBHOOK_ENDPOINT_CONCURRENCY); a timeout, a connection failure, a 429 or a 5xx halves it, down
 * to 1. A halving counts once per round of attempts: the failures of attempts that started before
 * the last halving (the rest of the same round) do not halve it again, so one bad moment costs a
 * half, and an endpoint that keeps timing out reaches 1 after a few rounds. Other answers (a 4xx,
 * a slow success) leave it as it is.
 *
 * The limit is this worker's view (each worker learns its own); the claim bounds the endpoint's
 * leases across all workers by it (server/webhook-delivery/deliveries.queries.ts), and the
 * organisation's share and the worker's slots bound it further: a hanging tenant never takes
 * more than its share, however its limits move. Each batch of recorded attempts also keeps the
 * recording worker's view with the endpoint (`webhook_endpoints.concurrency_limit`), and a worker
 * that has not attempted an endpoint starts from that view rather than from START_LIMIT: a worker
 * joining a busy endpoint (another already holding more leases than 4 on it) would otherwise find
 * no room there, and so never learn more; and one joining a failing endpoint starts as low as the
 * others have brought it.
 */
import type { AttemptOutcome } from './sender.js';

/** Where every endpoint starts: what the fixed cap was before the limits adapted. */
export const START_LIMIT = 4;
/** Failures with no answer that say nothing of the receiver's load. */
const NOT_THE_RECEIVERS = new Set(['signing failed', 'address not allowed', 'invalid url', 'host not found']);
/** An endpoint not attempted for this long is forgotten (it starts again at START_LIMIT). */
const FORGET_AFTER_MS = 10 * 60_000;

interface EndpointLimit {
  limit: number;
  inFlight: number;
  /** When the limit was last halved (performance.now()). */
  halvedAt: number;
  usedAt: number;
}

export interface LimitsSummary {
  endpoints: number;
  min: number;
  max: number;
  mean: number;
}

export interface EndpointLimits {
  /**
   * The endpoint's limit now. For an endpoint this worker has not attempted lately, `learnt` (the
   * limit last recorded with the endpoint, if any) is where its view starts, and is adopted.
   */
  limitOf(endpointId: string, learnt?: number | null): number;
  /** An attempt starts; what `finished` needs back. */
  started(endpointId: string): { at: number; inFlight: number };
  /** The attempt ended with `outcome`. */
  finished(endpointId: string, start: { at: number; inFlight: number }, outcome: AttemptOutcome): void;
  /** Over the endpoints known: their number and their limits' least, greatest and mean. */
  summary(): LimitsSummary;
}

/**
 * `ceiling`: the most an endpoint may reach; `quickMs`: a success faster than this is quick (it
 * may raise the limit).
 */
export function endpointLimits(options: { ceiling: number; quickMs: number; now?: () => number }): EndpointLimits {
  const ceiling = Math.max(1, options.ceiling);
  const start = Math.min(START_LIMIT, ceiling);
  const now = options.now ?? (() => performance.now());
  const known = new Map<string, EndpointLimit>();

  /** The endpoint's entry; a new one starts at `from` (within 1 and the ceiling), else at `start`. */
  function entry(endpointId: string, from?: number | null): EndpointLimit {
    let found = known.get(endpointId);
    if (!found) {
      const limit = from === undefined || from === null ? start : Math.min(ceiling, Math.max(1, Math.floor(from)));
      found = { limit, inFlight: 0, halvedAt: Number.NEGATIVE_INFINITY, usedAt: now() };
      known.set(endpointId, found);
    }
    return found;
  }

  function forgetIdle(at: number) {
    for (const [id, e] of known) if (e.inFlight === 0 && at - e.usedAt > FORGET_AFTER_MS) known.delete(id);
  }

  return {
    limitOf(endpointId, learnt) {
      const found = known.get(endpointId);
      if (found) return found.limit;
      return learnt === undefined || learnt === null ? start : entry(endpointId, learnt).limit;
    },
    started(endpointId) {
      const e = entry(endpointId);
      e.inFlight++;
      e.usedAt = now();
      return { at: e.usedAt, inFlight: e.inFlight };
    },
    finished(endpointId, begun, outcome) {
      const e = entry(endpointId);
      e.inFlight = Math.max(0, e.inFlight - 1);
      const at = now();
      e.usedAt = at;
      const overloaded =
        outcome.statusCode === null ? !NOT_THE_RECEIVERS.has(outcome.error ?? '') : outcome.statusCode === 429 || outcome.statusCode >= 500;
      if (overloaded) {
        if (begun.at >= e.halvedAt) {
          e.limit = Math.max(1, Math.floor(e.limit / 2));
          e.halvedAt = at;
        }
      } else if (outcome.succeeded && outcome.durationMs < options.quickMs && 2 * begun.inFlight >= e.limit) {
        e.limit = Math.min(ceiling, e.limit + 1);
      }
      if (known.size > 1000) forgetIdle(at);
    },
    summary() {
      const limits = [...known.values()].map((e) => e.limit);
      if (limits.length === 0) return { endpoints: 0, min: 0, max: 0, mean: 0 };
      return {
        endpoints: limits.length,
        min: Math.min(...limits),
        max: Math.max(...limits),
        mean: limits.reduce((a, b) => a + b, 0) / limits.length,
      };
    },
  };
}
