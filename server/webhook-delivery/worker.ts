/**
 * The webhook delivery worker: runs inside `npm start` (unless WEBHOOK_WORKER=false) and alone as
 * `npm run worker`; any number of them share one database.
 *
 * Each pass:
 *  1. Fan-out (the feed is the outbox). In one short transaction of three statements: read the
 *     feed's horizon first, lock a batch of enabled endpoints that are behind the feed (SKIP
 *     LOCKED), then, in one statement for the whole batch, create a pending delivery for each of
 *     their tenant's events below the horizon that they want (of organisations whose plan includes
 *     webhooks), and in one more move each endpoint's place in the feed past every event scanned.
 *     An event becomes visible only once every transaction with a smaller id has ended, so none can
 *     later appear behind an endpoint's place: nothing committed is ever skipped. An endpoint whose
 *     organisation's plan has no webhooks keeps its place: the events of the meantime are fanned out
 *     after an upgrade.
 *  2. Claim, fairly (docs/webhooks.md, "Fairness"), in one short transaction: mark this worker's
 *     attempts answered since its last claim (their leases wait only to be recorded), walk the
 *     endpoints with pending deliveries from just after the last one served, hold those that may
 *     be attempted now (a lock per endpoint, SKIP LOCKED), then lease their oldest due deliveries:
 *     no endpoint more than its limit of attempts being sent across all workers (the leases in the
 *     database not marked answered are the count; the limit adapts to the endpoint's answers,
 *     ./endpoint-limits.ts), no organisation more than half of this worker's slots, the slots dealt
 *     round the organisations and their endpoints. A claim that finds deliveries pending but leases
 *     none looks again within 20 ms, then less often, up to the poll interval. No transaction is
 *     open while a receiver is being called (the embedded database has one connection; a
 *     transaction-mode pooler hands connections out per transaction).
 *  3. Send each (server/webhook-delivery/sender.ts), over a kept-alive connection to its origin
 *     (./agents.ts). Outcomes are recorded in batches: every attempt that ends while a batch is
 *     being recorded waits for the next, and a batch is one transaction of four statements
 *     whatever its size (the deliveries settled and their attempts inserted, only where the lease is
 *     still ours; the endpoints that succeeded; the endpoints' failures, which may open a circuit or
 *     disable an endpoint, server/webhook-delivery/schedule.ts; the endpoints' adaptive limits as
 *     this worker has learnt them, where its view moved since it last kept it, so that a worker
 *     joining an endpoint starts from there, ./endpoint-limits.ts). A worker that dies between a
 *     send and its record records nothing; the lease runs out and another worker sends the same
 *     event again, with the same `webhook-id`: at least once.
 * Every few seconds it also notes which endpoints their organisation's plan holds (that time does
 * not count toward the five-day disable) and reports what is held back to the metrics.
 *
 * Every time comes from `clock()`, so tests move time to check retries, the circuit and the
 * five-day disable. A pass that fails (the database away) is logged and the loop goes on.
 */
import { randomUUID } from 'node:crypto';
import type { Span } from '@opentelemetry/api';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Database } from '../db/schema.js';
import { toEvent } from '../events/events.mapper.js';
import { PLAN_ORDER, PLANS } from '../plans/plans.js';
import { originAgents } from './agents.js';
import {
  type AttemptRecord,
  type ClaimedDelivery,
  claimDueDeliveries,
  commitWithoutWaiting,
  countHeldBack,
  type EndpointPlace,
  type EndpointWalk,
  FIRST_PLACE,
  fanOutEvents,
  type HeldBack,
  type LeasedDelivery,
  type LeaseTerms,
  markLeasesAnswered,
  readFeedHorizon,
  recordAttempts,
  type WalkedEndpoint,
  walkClaimableEndpoints,
} from './deliveries.queries.js';
import { endpointLimits, type LimitsSummary, START_LIMIT } from './endpoint-limits.js';
import {
  advanceEndpointFeeds,
  type EndpointFailures,
  type EndpointLimit,
  lockEndpointsBehindFeed,
  markEndpointsFailed,
  markEndpointsSucceeded,
  recordEndpointLimits,
  trackPlanPauses,
  type WorkerEndpoint,
} from './endpoint-state.queries.js';
import {
  CIRCUIT_FIRST_COOL_DOWN_MS,
  CIRCUIT_MAX_COOL_DOWN_MS,
  CIRCUIT_OPENS_AFTER,
  DISABLE_AFTER_FAILING_MS,
  nextRetryAt,
} from './schedule.js';
import { describeAttempt, inDeliverySpan } from './delivery-span.js';
import { type AttemptOutcome, sendDelivery } from './sender.js';
import { signingSecrets } from './secrets.js';
import type { WebhookSettings } from './settings.js';

/** What the worker tells the metrics (server/metrics/metrics.ts). */
export interface WebhookWorkerObserver {
  /** Each attempt's outcome and duration, once sent. */
  attempt(succeeded: boolean, seconds: number): void;
  /** An attempt's failure opened its endpoint's circuit (or opened it again, after a failed probe). */
  circuitOpened(): void;
  /** This worker's attempts in flight, as the number changes. */
  inFlight(count: number): void;
  /** What is held back and why, every few seconds. */
  heldBack(held: HeldBack): void;
  /** The endpoints' adaptive limits in this worker (./endpoint-limits.ts), at most every second. */
  endpointLimits?(summary: LimitsSummary): void;
}

export interface WebhookWorkerOptions {
  db: Kysely<Database>;
  settings: WebhookSettings;
  logger: Logger;
  /** The time (tests move it); `new Date()` by default. */
  clock?: () => Date;
  /** How long the worker waits, when idle, before it looks for new events and due deliveries. */
  pollIntervalMs: number;
  /** One attempt's deadline (WEBHOOK_TIMEOUT_MS, 10 s). */
  timeoutMs: number;
  /** Attempts in flight at once in this worker (WEBHOOK_CONCURRENCY, 128); an organisation gets at most half. */
  concurrency?: number;
  /**
   * The most attempts one endpoint may have in flight at once, across all workers
   * (WEBHOOK_ENDPOINT_CONCURRENCY, 64): its limit starts at 4 (or this, when lower) and adapts
   * between 1 and this to its answers.
   */
  endpointConcurrency?: number;
  /** False: no loop, only `tick()` runs (tests that move the clock step by step). */
  loop?: boolean;
  observer?: WebhookWorkerObserver | undefined;
}

export interface WebhookWorker {
  /** Stops claiming, and waits (at most about the attempt timeout) for attempts in flight to be recorded. */
  stop(): Promise<void>;
  /** One pass, awaited to its end: fan out, claim what is due, send and record it all. */
  tick(): Promise<void>;
}

export const DEFAULT_CONCURRENCY = 128;
export const DEFAULT_ENDPOINT_CONCURRENCY = 64;
/** Where an endpoint's adaptive limit starts (./endpoint-limits.ts). */
export const ENDPOINT_START_LIMIT = START_LIMIT;

/** Endpoints fanned out per transaction, and events scanned per endpoint. */
const ENDPOINTS_PER_FAN_OUT = 50;
const EVENTS_PER_ENDPOINT = 500;
/** The most outcomes recorded by one statement. */
const RECORD_BATCH = 500;
/** How long a batch waits, at most, for the attempts still being sent, and for the next answer (gather). */
const GATHER_MS = 50;
const GATHER_IDLE_MS = 5;
const MIN_LEASE_MARGIN_MS = 5000;
/** How often the plans' holds are brought up to date and what is held back is counted. */
const TRACK_INTERVAL_MS = 10_000;
/**
 * After a claim that found deliveries pending but leased none (their endpoints' room taken by
 * other workers' attempts, or their claim lock held by another worker's claim), the worker looks
 * again this soon, then twice as late each time it finds none again, up to the poll interval.
 */
const CONTENDED_RETRY_MS = 20;

/** The plans whose organisations get deliveries: the one table of plans says which include webhooks. */
const WEBHOOK_PLANS: readonly string[] = PLAN_ORDER.filter((plan) => PLANS[plan].features.has('webhooks'));

const CIRCUIT = { opensAfter: CIRCUIT_OPENS_AFTER, firstCoolDownMs: CIRCUIT_FIRST_COOL_DOWN_MS, maxCoolDownMs: CIRCUIT_MAX_COOL_DOWN_MS };

/**
 * How long a claim holds a delivery: the attempt's timeout and as much again (at least 5 s) to
 * record it. Only a worker that died, or lost the database for that long, lets a lease run out.
 */
export function leaseMs(timeoutMs: number): number {
  return timeoutMs + Math.max(MIN_LEASE_MARGIN_MS, timeoutMs);
}

/** Half the worker's slots, at least one: however busy one organisation is, the other half is free for the rest. */
export function organisationShare(concurrency: number): number {
  return Math.max(1, Math.floor(concurrency / 2));
}

/**
 * One claim, in one short transaction: walk the endpoints with pending deliveries after `after`
 * and hold those that may be attempted now (walkClaimableEndpoints), then lease their due
 * deliveries within the caps and shares (claimDueDeliveries). `endpointCap`: an endpoint's limit
 * (a number for all, or each one's); an endpoint whose circuit is open for a probe gets one.
 */
export async function claimFairly(
  db: Kysely<Database>,
  claim: LeaseTerms & {
    after: EndpointPlace;
    walkLimit: number;
    endpointCap: number | ((endpoint: WalkedEndpoint) => number);
    answered?: readonly LeasedDelivery[];
  },
): Promise<{ walk: EndpointWalk; claimed: ClaimedDelivery[] }> {
  const capOf = claim.endpointCap;
  return db.transaction().execute(async (trx) => {
    await commitWithoutWaiting(trx);
    await markLeasesAnswered(trx, claim.answered ?? []);
    const walk = await walkClaimableEndpoints(trx, { after: claim.after, limit: claim.walkLimit, now: claim.now, plans: WEBHOOK_PLANS });
    const endpoints = walk.claimable.map((endpoint) => ({
      ...endpoint,
      cap: endpoint.probe ? 1 : typeof capOf === 'number' ? capOf : capOf(endpoint),
    }));
    const claimed = await claimDueDeliveries(trx, { ...claim, endpoints });
    return { walk, claimed };
  });
}

/** An attempt sent, waiting for its batch to be recorded. */
interface Sent {
  delivery: ClaimedDelivery;
  leaseId: string;
  at: Date;
  outcome: AttemptOutcome;
  retryAt: Date | null;
  /** Recorded (true), or no longer ours (false). */
  settle(recorded: boolean): void;
  fail(error: unknown): void;
}

const endpointKey = (endpoint: WorkerEndpoint) => `${endpoint.orgId}/${endpoint.endpointId}`;

export function startWebhookWorker(options: WebhookWorkerOptions): WebhookWorker {
  const { db, settings, logger, pollIntervalMs, timeoutMs, observer } = options;
  const clock = options.clock ?? (() => new Date());
  const concurrency = Math.max(1, options.concurrency ?? DEFAULT_CONCURRENCY);
  const ceiling = Math.max(1, options.endpointConcurrency ?? DEFAULT_ENDPOINT_CONCURRENCY);
  const share = organisationShare(concurrency);
  /** Endpoints walked per claim: enough to fill every slot when most endpoints have nothing due. */
  const walkLimit = Math.max(64, 4 * concurrency);
  /** A success this quick may raise its endpoint's limit. */
  const limits = endpointLimits({ ceiling, quickMs: timeoutMs / 4 });
  /** Keep-alive connections per origin; as many as the worker's slots (several endpoints may share an origin). */
  const agents = originAgents({ maxSocketsPerOrigin: concurrency });
  const inFlight = new Set<Promise<void>>();
  /** Attempts being sent (not yet answered): what the worker's slots count. */
  let sendingSlots = 0;
  /**
   * The attempts answered and waiting for their batch to be recorded, not yet marked so in the
   * database: the next claim marks them first (markLeasesAnswered), and from then on they no longer
   * count toward their endpoints' room, in this worker's claims or any other's.
   */
  const answeredUnmarked = new Map<string, LeasedDelivery>();
  /**
   * A claim and a batch's record never overlap: they alternate. A claim made while a batch is being
   * recorded would find room that the batch is about to free still taken, and lease less, and a
   * worker would then claim after each answer rather than after each batch (measured: twice the
   * claims, a third of them empty, and fewer deliveries a second).
   */
  let exclusive: Promise<unknown> = Promise.resolve();
  function exclusively<T>(step: () => Promise<T>): Promise<T> {
    const run = exclusive.then(step);
    exclusive = run.catch(() => undefined);
    return run;
  }
  /** Attempts being sent per organisation: its share of the slots is counted against these. */
  const busy = new Map<string, number>();
  /** The walk of the next claim starts after the last endpoint served, so every endpoint gets its turn first. */
  let place: EndpointPlace = FIRST_PLACE;
  let trackedAt: number | undefined;
  let limitsReportedAt = Number.NEGATIVE_INFINITY;
  let stopping = false;
  /** Ends the loop's pause: on stop(), and when attempts are recorded (their slots and their endpoints' room are free). */
  let wake: (() => void) | undefined;
  /** A wake that came while no pause was waiting (a pass under way): the next pause does not wait. */
  let woken = false;
  function nudge(): void {
    if (wake) wake();
    else woken = true;
  }

  /** Fans out one batch; true when there may be more to fan out at once. */
  async function fanOut(): Promise<boolean> {
    return db.transaction().execute(async (trx) => {
      // The horizon first: the transaction must have no id of its own yet (`set local` gives it none).
      const horizon = await readFeedHorizon(trx);
      await commitWithoutWaiting(trx);
      const endpoints = await lockEndpointsBehindFeed(trx, horizon, ENDPOINTS_PER_FAN_OUT);
      const scanned = await fanOutEvents(trx, endpoints, horizon, clock(), EVENTS_PER_ENDPOINT, WEBHOOK_PLANS);
      await advanceEndpointFeeds(trx, scanned);
      return endpoints.length === ENDPOINTS_PER_FAN_OUT || scanned.some((result) => result.scanned === EVENTS_PER_ENDPOINT);
    });
  }

  /** Every TRACK_INTERVAL_MS of the clock (at once when `force`): the plans' holds, and what is held back, for the metrics. */
  async function track(force: boolean): Promise<void> {
    const now = clock();
    if (!force && trackedAt !== undefined && Math.abs(now.getTime() - trackedAt) < TRACK_INTERVAL_MS) return;
    trackedAt = now.getTime();
    await db.transaction().execute(async (trx) => {
      await commitWithoutWaiting(trx);
      await trackPlanPauses(trx, WEBHOOK_PLANS, now);
    });
    if (observer) observer.heldBack(await countHeldBack(db, now));
  }

  // -------------------------------------------------------------------------------------------
  // Recording, in batches.
  // -------------------------------------------------------------------------------------------

  const unrecorded: Sent[] = [];
  /** Per endpoint, the limit this worker last kept with it (recordEndpointLimits). */
  const limitsKept = new Map<string, number>();
  function keptLimits(kept: readonly EndpointLimit[]): void {
    // Bounded: forgetting costs one more write of an endpoint's limit, no more.
    if (limitsKept.size > 10_000) limitsKept.clear();
    for (const endpoint of kept) limitsKept.set(endpoint.endpointId, endpoint.limit);
  }
  let recordingBatches = false;
  /** Ends the recorder's short wait for the rest of a round (see gather), or prolongs it. */
  let allSent: (() => void) | undefined;
  let answeredMeanwhile: (() => void) | undefined;

  /** Waits for the attempt's batch to be recorded: true when it was, false when the lease was no longer ours. */
  function record(sent: Omit<Sent, 'settle' | 'fail'>): Promise<boolean> {
    return new Promise((settle, fail) => {
      unrecorded.push({ ...sent, settle, fail });
      if (sendingSlots === 0) allSent?.();
      else answeredMeanwhile?.();
      if (!recordingBatches) void recordAll();
    });
  }

  /**
   * Records what has been sent, a batch at a time, until nothing is left. Before a batch, while
   * other attempts are still being sent, it waits for them a little (gather, 50 ms at most): the
   * attempts of one claim end close together, and one statement then records them all rather
   * than the first alone and the rest after it.
   */
  async function recordAll(): Promise<void> {
    recordingBatches = true;
    try {
      while (unrecorded.length > 0) {
        if (sendingSlots > 0 && unrecorded.length < RECORD_BATCH) await gather();
        const batch = unrecorded.splice(0, RECORD_BATCH);
        try {
          const { ours, opened } = await exclusively(async () => {
            const recorded = await recordBatch(batch);
            keptLimits(recorded.moved);
            // Recorded, their leases are released: none is left to mark.
            for (const sent of batch) answeredUnmarked.delete(sent.delivery.id);
            return recorded;
          });
          for (const sent of batch) sent.settle(ours.has(sent.delivery.id));
          for (const endpoint of opened) {
            observer?.circuitOpened();
            logger.info(endpoint, 'webhook endpoint failing: its circuit is open, its deliveries wait for a probe');
          }
        } catch (error) {
          for (const sent of batch) sent.fail(error);
        }
        reportLimits();
      }
    } finally {
      recordingBatches = false;
    }
  }

  /**
   * Until every attempt under way has been sent, or no other has been answered for GATHER_IDLE_MS
   * (the round's answers are over; the rest are slow), or GATHER_MS in all.
   */
  function gather(): Promise<void> {
    return new Promise((resolve) => {
      let idle: NodeJS.Timeout | undefined;
      const cap = setTimeout(done, GATHER_MS);
      const restart = () => {
        clearTimeout(idle);
        idle = setTimeout(done, GATHER_IDLE_MS);
      };
      function done() {
        clearTimeout(cap);
        clearTimeout(idle);
        allSent = undefined;
        answeredMeanwhile = undefined;
        resolve();
      }
      allSent = done;
      answeredMeanwhile = restart;
      restart();
    });
  }

  /**
   * One transaction for the batch: the attempts (recordAttempts), then what they do to their
   * endpoints, taken in the order they ended: an endpoint with a success is no longer failing, and
   * its failures after its last success are counted in a row.
   */
  async function recordBatch(batch: Sent[]): Promise<{ ours: Set<string>; opened: WorkerEndpoint[]; moved: EndpointLimit[] }> {
    return db.transaction().execute(async (trx) => {
      await commitWithoutWaiting(trx);
      const ours = await recordAttempts(trx, batch.map(attemptRecord));
      const attempted = new Map<string, WorkerEndpoint>();
      const succeeded = new Map<string, WorkerEndpoint>();
      const failing = new Map<string, EndpointFailures>();
      for (const sent of batch) {
        if (!ours.has(sent.delivery.id)) continue;
        const endpoint = { orgId: sent.delivery.orgId, endpointId: sent.delivery.endpointId };
        const key = endpointKey(endpoint);
        attempted.set(key, endpoint);
        if (sent.outcome.succeeded) {
          succeeded.set(key, endpoint);
          failing.delete(key);
          continue;
        }
        const failures = failing.get(key);
        if (!failures) failing.set(key, { ...endpoint, failures: 1, firstAt: sent.at, lastAt: sent.at });
        else {
          failures.failures++;
          if (sent.at < failures.firstAt) failures.firstAt = sent.at;
          if (sent.at > failures.lastAt) failures.lastAt = sent.at;
        }
      }
      await markEndpointsSucceeded(trx, [...succeeded.values()]);
      const opened = await markEndpointsFailed(trx, [...failing.values()], { disableAfterMs: DISABLE_AFTER_FAILING_MS, circuit: CIRCUIT });
      // This worker's view of each endpoint's limit, where another worker joining it starts: only
      // where the view moved since this worker last kept it. Two workers' views of one endpoint
      // differ; were each batch to keep its own whenever the row held the other's, every batch of
      // both would write the row, and wait on the other's lock of it.
      const moved = [...attempted.values()]
        .map((endpoint) => ({ ...endpoint, limit: limits.limitOf(endpoint.endpointId) }))
        .filter((endpoint) => limitsKept.get(endpoint.endpointId) !== endpoint.limit);
      await recordEndpointLimits(trx, moved);
      return { ours, opened, moved };
    });
  }

  function attemptRecord(sent: Sent): AttemptRecord {
    const { delivery, outcome } = sent;
    return {
      orgId: delivery.orgId,
      deliveryId: delivery.id,
      leaseId: sent.leaseId,
      endpointId: delivery.endpointId,
      eventId: delivery.event.id,
      eventType: delivery.event.type,
      attempt: delivery.attempts + 1,
      attemptedAt: sent.at,
      durationMs: outcome.durationMs,
      statusCode: outcome.statusCode,
      error: outcome.error,
      succeeded: outcome.succeeded,
      nextRetryAt: sent.retryAt,
    };
  }

  function reportLimits(): void {
    if (!observer?.endpointLimits || performance.now() - limitsReportedAt < 1000) return;
    limitsReportedAt = performance.now();
    observer.endpointLimits(limits.summary());
  }

  // -------------------------------------------------------------------------------------------
  // Attempts.
  // -------------------------------------------------------------------------------------------

  /** Sends one attempt and waits for it to be recorded. With tracing on, in the attempt's span (./delivery-span.ts). */
  function attempt(delivery: ClaimedDelivery, leaseId: string, answered: () => void): Promise<void> {
    return inDeliverySpan(delivery, (span) => sendAndRecord(delivery, leaseId, span, answered));
  }

  async function sendAndRecord(delivery: ClaimedDelivery, leaseId: string, span: Span | undefined, answered: () => void): Promise<void> {
    const at = clock();
    const begun = limits.started(delivery.endpointId);
    let outcome: AttemptOutcome;
    try {
      const body = JSON.stringify(toEvent(delivery.event));
      outcome = await sendDelivery(
        { eventId: delivery.event.id, body, url: delivery.url, secrets: signingSecrets(settings.secrets, delivery, at) },
        at,
        { settings, timeoutMs, agents },
      );
    } catch (error) {
      // A secret that does not open (WEBHOOK_SECRET_KEY changed): the operator's to fix; retried meanwhile.
      logger.error({ err: error, endpointId: delivery.endpointId, deliveryId: delivery.id }, 'webhook delivery could not be signed');
      outcome = { statusCode: null, error: 'signing failed', succeeded: false, durationMs: 0 };
    }
    answered();
    limits.finished(delivery.endpointId, begun, outcome);
    if (span) describeAttempt(span, outcome);
    observer?.attempt(outcome.succeeded, outcome.durationMs / 1000);
    const retryAt = outcome.succeeded ? null : nextRetryAt(delivery.attempts + 1, at);
    const recorded = await record({ delivery, leaseId, at, outcome, retryAt });
    if (!recorded)
      logger.warn(
        { deliveryId: delivery.id, endpointId: delivery.endpointId },
        'webhook attempt not recorded: the delivery is no longer leased to this worker (its lease ran out, or the endpoint was deleted)',
      );
  }

  /**
   * Starts an attempt. It holds one of the worker's slots, and counts toward its organisation's
   * share and its endpoint's limit, while it is being sent: from its answer (or failure) on it only
   * waits for its batch to be recorded, which loads no receiver, so the next claim may give its
   * place to another attempt (the claim marks it answered first, so that its live lease no longer
   * holds its endpoint's room for any worker). It stays in flight until recorded.
   *
   * Its slot comes back whatever happens: an attempt not over when its lease has run out
   * (leaseMs: the send's own deadline and as long again to record it; every database call is
   * bounded too, server/db/connection.ts, so this is the last resort) is abandoned, logged, and
   * its slot freed. The delivery is due again, for a claim of this worker or another.
   */
  function launch(delivery: ClaimedDelivery, leaseId: string): void {
    let sent = false;
    let released = false;
    let deadline: NodeJS.Timeout | undefined;
    const answered = () => {
      if (sent || released) return;
      sent = true;
      answeredUnmarked.set(delivery.id, { orgId: delivery.orgId, id: delivery.id, leaseId });
      ended(delivery.orgId);
    };
    const release = () => {
      if (released) return;
      released = true;
      clearTimeout(deadline);
      inFlight.delete(running);
      if (sent) answeredUnmarked.delete(delivery.id);
      else ended(delivery.orgId);
      observer?.inFlight(inFlight.size);
      nudge();
    };
    const running = new Promise<void>((settle) => {
      deadline = setTimeout(() => {
        logger.error(
          { deliveryId: delivery.id, endpointId: delivery.endpointId, afterMs: leaseMs(timeoutMs) },
          'webhook attempt abandoned: not sent and recorded within its lease; its slot is freed and the delivery is due again',
        );
        release();
        settle();
      }, leaseMs(timeoutMs));
      attempt(delivery, leaseId, answered)
        .catch((error) => {
          logger.error({ err: error, deliveryId: delivery.id }, 'webhook attempt failed to be recorded');
        })
        .then(() => {
          release();
          settle();
        });
    });
    inFlight.add(running);
    started(delivery.orgId);
  }

  /** Until no attempt is in flight. */
  async function settled(): Promise<void> {
    while (inFlight.size > 0) await Promise.all([...inFlight]);
  }

  function started(orgId: string): void {
    sendingSlots++;
    busy.set(orgId, (busy.get(orgId) ?? 0) + 1);
    observer?.inFlight(inFlight.size);
  }

  /** An attempt no longer being sent: its slot and its organisation's share are free. */
  function ended(orgId: string): void {
    sendingSlots--;
    const left = (busy.get(orgId) ?? 1) - 1;
    if (left > 0) busy.set(orgId, left);
    else busy.delete(orgId);
    nudge();
  }

  /**
   * The slots free: the worker's slots less the attempts being sent; and no more, in all, than
   * twice its slots in flight (the rest wait to be recorded), so a slow database holds sends back.
   */
  function freeSlots(): number {
    return Math.max(0, Math.min(concurrency - sendingSlots, 2 * concurrency - inFlight.size));
  }

  /**
   * Claims up to `slots` due deliveries, fairly, and starts their attempts. `more`: the walk
   * stopped at its limit with slots left (other endpoints may have due work: look again at once).
   */
  async function claimAndSend(slots: number): Promise<{ claimed: number; more: boolean; contended: boolean }> {
    if (slots <= 0) return { claimed: 0, more: false, contended: false };
    const now = clock();
    const leaseId = randomUUID();
    const { walk, claimed } = await exclusively(async () => {
      const answered = [...answeredUnmarked.values()];
      answeredUnmarked.clear();
      try {
        return await claimFairly(db, {
          after: place,
          walkLimit,
          // An endpoint this worker has not attempted lately starts from the limit recorded with it.
          endpointCap: (endpoint) => limits.limitOf(endpoint.endpointId, endpoint.learntLimit),
          // Marked first, in the claim's transaction: the room it reads counts only the attempts still being sent.
          answered,
          busy,
          share,
          slots,
          now,
          leaseId,
          leasedUntil: new Date(now.getTime() + leaseMs(timeoutMs)),
        });
      } catch (error) {
        // Not marked: the next claim marks them (no batch has recorded them meanwhile: records wait for claims).
        for (const lease of answered) answeredUnmarked.set(lease.id, lease);
        throw error;
      }
    });
    // Next time, start after the furthest endpoint served (or walked, when the walk stopped short).
    const served = new Set(claimed.map((delivery) => delivery.endpointId));
    const lastServed = walk.claimable.findLast((endpoint) => served.has(endpoint.endpointId));
    if (lastServed) place = lastServed;
    else if (walk.truncated && walk.last) place = walk.last;
    for (const delivery of claimed) launch(delivery, leaseId);
    return {
      claimed: claimed.length,
      more: walk.truncated && claimed.length < slots,
      contended: claimed.length === 0 && walk.last !== null,
    };
  }

  /** When the loop last read the feed (by the loop's own pace, not the clock tests move), and whether it left more. */
  let fannedOutAt = Number.NEGATIVE_INFINITY;
  let moreToFanOut = true;

  /** One pass of the loop: `busy` when there is more to do at once; `contended` as claimAndSend says. */
  async function pass(): Promise<{ busy: boolean; contended: boolean }> {
    woken = false;
    // The feed is read when a poll interval has passed or the last read left more; a pass woken
    // by recorded attempts only claims (they freed slots, and room on their endpoints).
    let moreEvents = false;
    if (moreToFanOut || performance.now() - fannedOutAt >= pollIntervalMs) {
      fannedOutAt = performance.now();
      agents.closeIdle();
      await track(false);
      moreEvents = moreToFanOut = await fanOut();
    }
    const slots = freeSlots();
    const { claimed, more, contended } = await claimAndSend(slots);
    return { busy: moreEvents || more || (slots > 0 && claimed === slots), contended };
  }

  /** Until the poll interval is over, attempts are recorded, or stop() is called. */
  function pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (woken) {
        woken = false;
        return resolve();
      }
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      }
      wake = done;
    });
  }

  /**
   * Passes until stop(). Between them, the worker waits for the poll interval, or for its own
   * attempts to be recorded; after a contended claim (CONTENDED_RETRY_MS) not so long: a worker
   * with nothing in flight has no record to wake it, and would otherwise leave an endpoint shared
   * with a busy worker to that worker for a whole interval each time.
   */
  async function run(): Promise<void> {
    let contendedRetryMs = CONTENDED_RETRY_MS;
    while (!stopping) {
      let outcome = { busy: false, contended: false };
      try {
        outcome = await pass();
      } catch (error) {
        logger.error({ err: error }, 'webhook worker pass failed');
      }
      if (stopping) break;
      if (outcome.busy && freeSlots() > 0) continue;
      if (!outcome.contended) {
        contendedRetryMs = CONTENDED_RETRY_MS;
        await pause(pollIntervalMs);
        continue;
      }
      await pause(Math.min(contendedRetryMs, pollIntervalMs));
      contendedRetryMs = Math.min(2 * contendedRetryMs, pollIntervalMs);
    }
  }

  const loop = options.loop === false ? Promise.resolve() : run();

  return {
    async tick() {
      await track(true);
      await fanOut();
      await claimAndSend(freeSlots());
      await settled();
    },
    async stop() {
      stopping = true;
      nudge();
      // The pass under way ends, then the attempts in flight, each by its own deadline; recording
      // them may wait on the database, so not forever: an unrecorded attempt's lease runs out.
      const finished = loop.then(settled);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([finished, new Promise((resolve) => (timer = setTimeout(resolve, leaseMs(timeoutMs))))]);
      clearTimeout(timer);
      agents.close();
    },
  };
}
