/**
 * The webhook delivery worker: runs inside `npm start` (unless WEBHOOK_WORKER=false) and alone as
 * `npm run worker`; any number of them share one database.
 *
 * Each pass:
 *  1. Fan-out (the feed is the outbox). In one short transaction: read the feed's horizon first,
 *     lock a batch of enabled endpoints that are behind the feed (SKIP LOCKED), create a pending
 *     delivery for each of their tenant's events below the horizon that they want, and move each
 *     endpoint's place in the feed past every event scanned. An event becomes visible only once
 *     every transaction with a smaller id has ended, so none can later appear behind an
 *     endpoint's place: nothing committed is ever skipped.
 *  2. Claim due deliveries with a lease (one statement, SKIP LOCKED), so two workers never send one
 *     attempt at the same time, and no transaction is open while a receiver is being called (the
 *     embedded database has one connection; a transaction-mode pooler hands connections out per
 *     transaction).
 *  3. Send each (server/webhooks/sender.ts) and record its outcome in one transaction, only if the
 *     lease is still ours. A worker that dies mid-attempt records nothing; its lease runs out and
 *     another worker sends the same event again, with the same `webhook-id`: at least once.
 *
 * Every time comes from `clock()`, so tests move time to check retries and the five-day disable.
 * A pass that fails (the database away) is logged and the loop goes on.
 */
import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Database } from '../db/schema.js';
import { toEvent } from '../events/events.mapper.js';
import { type ClaimedDelivery, claimDueDeliveries, fanOutEvents, readFeedHorizon, recordAttempt } from './deliveries.queries.js';
import { advanceEndpointFeed, lockEndpointsBehindFeed, markEndpointFailed, markEndpointSucceeded } from './endpoints.queries.js';
import { DISABLE_AFTER_FAILING_MS, nextRetryAt } from './schedule.js';
import { type AttemptOutcome, sendDelivery } from './sender.js';
import type { WebhookSettings } from './settings.js';

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
  /** Attempts in flight at once (16 by default). */
  concurrency?: number;
  /** False: no loop, only `tick()` runs (tests that move the clock step by step). */
  loop?: boolean;
  /** Told of each attempt's outcome and duration, once sent (metrics). */
  observeAttempt?: ((succeeded: boolean, seconds: number) => void) | undefined;
}

export interface WebhookWorker {
  /** Stops claiming, and waits (at most about the attempt timeout) for attempts in flight to be recorded. */
  stop(): Promise<void>;
  /** One pass, awaited to its end: fan out, claim what is due, send and record it all. */
  tick(): Promise<void>;
}

/** Endpoints fanned out per transaction, and events scanned per endpoint. */
const ENDPOINTS_PER_FAN_OUT = 50;
const EVENTS_PER_ENDPOINT = 500;
const MIN_LEASE_MARGIN_MS = 5000;

/**
 * How long a claim holds a delivery: the attempt's timeout and as much again (at least 5 s) to
 * record it. Only a worker that died, or lost the database for that long, lets a lease run out.
 */
export function leaseMs(timeoutMs: number): number {
  return timeoutMs + Math.max(MIN_LEASE_MARGIN_MS, timeoutMs);
}

export function startWebhookWorker(options: WebhookWorkerOptions): WebhookWorker {
  const { db, settings, logger, pollIntervalMs, timeoutMs } = options;
  const clock = options.clock ?? (() => new Date());
  const concurrency = Math.max(1, options.concurrency ?? 16);
  const inFlight = new Set<Promise<void>>();
  let stopping = false;
  /** Ends the loop's pause: on stop(), and when a slot frees while every slot was taken. */
  let wake: (() => void) | undefined;
  let saturated = false;

  /** Fans out one batch; true when there may be more to fan out at once. */
  async function fanOut(): Promise<boolean> {
    return db.transaction().execute(async (trx) => {
      const horizon = await readFeedHorizon(trx);
      const endpoints = await lockEndpointsBehindFeed(trx, horizon, ENDPOINTS_PER_FAN_OUT);
      let more = endpoints.length === ENDPOINTS_PER_FAN_OUT;
      const now = clock();
      for (const endpoint of endpoints) {
        const result = await fanOutEvents(trx, endpoint, horizon, now, EVENTS_PER_ENDPOINT);
        if (result.last) await advanceEndpointFeed(trx, endpoint, result.last);
        if (result.scanned === EVENTS_PER_ENDPOINT) more = true;
      }
      return more;
    });
  }

  /** The secrets that sign at `at`: the current one, and the previous one until it expires. */
  function signingSecrets(delivery: ClaimedDelivery, at: Date): string[] {
    const secrets = [settings.secrets.open(delivery.secret, delivery.endpointId)];
    if (delivery.previousSecret && delivery.previousSecretExpiresAt && new Date(delivery.previousSecretExpiresAt) > at) {
      secrets.push(settings.secrets.open(delivery.previousSecret, delivery.endpointId));
    }
    return secrets;
  }

  async function attempt(delivery: ClaimedDelivery, leaseId: string): Promise<void> {
    const at = clock();
    let outcome: AttemptOutcome;
    try {
      const body = JSON.stringify(toEvent(delivery.event));
      outcome = await sendDelivery({ eventId: delivery.event.id, body, url: delivery.url, secrets: signingSecrets(delivery, at) }, at, {
        settings,
        timeoutMs,
      });
    } catch (error) {
      // A secret that does not open (WEBHOOK_SECRET_KEY changed): the operator's to fix; retried meanwhile.
      logger.error({ err: error, endpointId: delivery.endpointId, deliveryId: delivery.id }, 'webhook delivery could not be signed');
      outcome = { statusCode: null, error: 'signing failed', succeeded: false, durationMs: 0 };
    }
    options.observeAttempt?.(outcome.succeeded, outcome.durationMs / 1000);
    const number = delivery.attempts + 1;
    const retryAt = outcome.succeeded ? null : nextRetryAt(number, at);
    const endpoint = { orgId: delivery.orgId, endpointId: delivery.endpointId };
    const recorded = await db.transaction().execute(async (trx) => {
      const ours = await recordAttempt(trx, {
        orgId: delivery.orgId,
        deliveryId: delivery.id,
        leaseId,
        endpointId: delivery.endpointId,
        eventId: delivery.event.id,
        eventType: delivery.event.type,
        attempt: number,
        attemptedAt: at,
        durationMs: outcome.durationMs,
        statusCode: outcome.statusCode,
        error: outcome.error,
        succeeded: outcome.succeeded,
        nextRetryAt: retryAt,
      });
      if (!ours) return false;
      if (outcome.succeeded) await markEndpointSucceeded(trx, endpoint);
      else await markEndpointFailed(trx, endpoint, at, DISABLE_AFTER_FAILING_MS);
      return true;
    });
    if (!recorded)
      logger.warn(
        { deliveryId: delivery.id, endpointId: delivery.endpointId },
        'webhook attempt not recorded: the delivery is no longer leased to this worker (its lease ran out, or the endpoint was deleted)',
      );
  }

  /** Claims up to `slots` due deliveries and starts their attempts; the number claimed. */
  async function claimAndSend(slots: number): Promise<number> {
    if (slots <= 0) return 0;
    const now = clock();
    const leaseId = randomUUID();
    const claimed = await claimDueDeliveries(db, { leaseId, now, leasedUntil: new Date(now.getTime() + leaseMs(timeoutMs)), limit: slots });
    for (const delivery of claimed) {
      const running: Promise<void> = attempt(delivery, leaseId)
        .catch((error) => logger.error({ err: error, deliveryId: delivery.id }, 'webhook attempt failed to be recorded'))
        .finally(() => {
          inFlight.delete(running);
          if (saturated) wake?.();
        });
      inFlight.add(running);
    }
    return claimed.length;
  }

  /** One pass of the loop; true when there is more to do at once. */
  async function pass(): Promise<boolean> {
    const moreEvents = await fanOut();
    const slots = concurrency - inFlight.size;
    const claimed = await claimAndSend(slots);
    return moreEvents || (slots > 0 && claimed === slots);
  }

  /** Until the poll interval is over, a slot frees (when all were taken) or stop() is called. */
  function pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      }
      wake = done;
    });
  }

  async function run(): Promise<void> {
    while (!stopping) {
      let busy = false;
      try {
        busy = await pass();
      } catch (error) {
        logger.error({ err: error }, 'webhook worker pass failed');
      }
      if (stopping) break;
      saturated = inFlight.size >= concurrency;
      if (busy && !saturated) continue;
      await pause(pollIntervalMs);
      saturated = false;
    }
  }

  const loop = options.loop === false ? Promise.resolve() : run();

  return {
    async tick() {
      await fanOut();
      await claimAndSend(concurrency - inFlight.size);
      await Promise.all([...inFlight]);
    },
    async stop() {
      stopping = true;
      wake?.();
      // The pass under way ends, then the attempts in flight, each by its own deadline; recording
      // them may wait on the database, so not forever: an unrecorded attempt's lease runs out.
      const finished = loop.then(() => Promise.all([...inFlight]));
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([finished, new Promise((resolve) => (timer = setTimeout(resolve, leaseMs(timeoutMs))))]);
      clearTimeout(timer);
    },
  };
}
