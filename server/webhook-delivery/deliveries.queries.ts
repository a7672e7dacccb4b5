/**
 * The one module that writes `webhook_deliveries` and `webhook_attempts`: the delivery worker's
 * statements (server/webhook-delivery/worker.ts). A delivery is one event owed to one endpoint, and is
 * also the worker's job: it is claimed with a lease (FOR UPDATE SKIP LOCKED, no queue library,
 * so it runs on the embedded database too) and every attempt at it is recorded beside it.
 */
import { randomUUID } from 'node:crypto';
import { type Kysely, type RawBuilder, sql } from 'kysely';
import type { Database, Env } from '../db/schema.js';
import { TEST_EVENT_TYPE } from '../events/events.queries.js';
import { organisationOnPlan } from './endpoint-state.queries.js';

type Db = Kysely<Database>;

// ---------------------------------------------------------------------------------------------
// Fan-out: events → deliveries, one endpoint at a time, in feed order.
// ---------------------------------------------------------------------------------------------

/**
 * The feed's horizon: the oldest transaction still running. Every transaction with a smaller id
 * has ended, so no event below it can appear later. It must be the transaction's first statement,
 * before it has an id of its own (which would hold the horizon back to itself).
 */
export async function readFeedHorizon(trx: Db): Promise<string> {
  const { rows } = await sql<{ horizon: string }>`select pg_snapshot_xmin(pg_current_snapshot())::text as horizon`.execute(trx);
  return rows[0]!.horizon;
}

/** An endpoint's tenant, events and place in the feed, as the fan-out needs them. */
export interface EndpointInFeed {
  orgId: string;
  env: Env;
  endpointId: string;
  enabledEvents: string[];
  feedTxid: string;
  feedSeq: string;
}

export interface FanOutResult {
  orgId: string;
  endpointId: string;
  /** Events scanned (at most the limit: fewer when the endpoint has caught up). */
  scanned: number;
  /** The last event scanned, matching or not: the endpoint's new place in the feed. */
  last: { txid: string; seq: string };
}

/**
 * For each of `endpoints`, in one statement: creates a pending delivery, due at `now`, for each of
 * the endpoint's tenant's events after its place in the feed and below the horizon whose type it
 * wants, scanning at most `limit` events per endpoint in feed order. A delivery that exists
 * already is left alone (`on conflict do nothing`). Nothing is scanned for an endpoint unless its
 * organisation is on one of `plans` (those that include webhooks) now: it keeps its place, and the
 * events of the meantime are fanned out after an upgrade. Returns the endpoints that scanned
 * anything, with their new place (the caller moves them there: advanceEndpointFeeds).
 */
export async function fanOutEvents(
  trx: Db,
  endpoints: readonly EndpointInFeed[],
  horizon: string,
  now: Date,
  limit: number,
  plans: readonly string[],
): Promise<FanOutResult[]> {
  if (endpoints.length === 0) return [];
  const places = JSON.stringify(
    endpoints.map((p) => ({
      org_id: p.orgId,
      env: p.env,
      endpoint_id: p.endpointId,
      enabled_events: p.enabledEvents,
      feed_txid: p.feedTxid,
      feed_seq: p.feedSeq,
    })),
  );
  const { rows } = await sql<{ org_id: string; endpoint_id: string; scanned: number; last_txid: string; last_seq: string }>`
    with place as (
      select * from jsonb_to_recordset(${places}::jsonb)
        as p (org_id uuid, env text, endpoint_id uuid, enabled_events text[], feed_txid text, feed_seq text)
    ), scanned as (
      select p.org_id, p.endpoint_id, p.enabled_events, e.id, e.type, e.txid, e.seq
      from place p cross join lateral (
        select e.id, e.type, e.txid, e.seq
        from events e
        where e.org_id = p.org_id and e.env = p.env
          and (e.txid, e.seq) > (p.feed_txid::xid8, p.feed_seq::bigint)
          and e.txid < ${horizon}::xid8
          and ${organisationOnPlan(sql`p.org_id`, plans)}
        order by e.txid, e.seq
        limit ${limit}
      ) e
    ), created as (
      insert into webhook_deliveries (org_id, id, endpoint_id, event_id, status, attempts, next_attempt_at, created_at)
      select s.org_id, gen_random_uuid(), s.endpoint_id, s.id, 'pending', 0, ${now}, ${now}
      from scanned s
      where (s.type = any(s.enabled_events) or '*' = any(s.enabled_events))
        and s.type <> ${TEST_EVENT_TYPE}
      order by s.endpoint_id, s.txid, s.seq
      on conflict do nothing
    ), last as (
      select distinct on (s.org_id, s.endpoint_id) s.org_id, s.endpoint_id, s.txid, s.seq
      from scanned s
      order by s.org_id, s.endpoint_id, s.txid desc, s.seq desc
    )
    select l.org_id, l.endpoint_id, l.txid::text as last_txid, l.seq::text as last_seq,
           (select count(*) from scanned s where s.org_id = l.org_id and s.endpoint_id = l.endpoint_id)::int as scanned
    from last l
  `.execute(trx);
  return rows.map((row) => ({
    orgId: row.org_id,
    endpointId: row.endpoint_id,
    scanned: row.scanned,
    last: { txid: row.last_txid, seq: row.last_seq },
  }));
}

// ---------------------------------------------------------------------------------------------
// Claim: due deliveries, leased to one worker.
// ---------------------------------------------------------------------------------------------

/** A claimed delivery with everything its attempt needs. */
export interface ClaimedDelivery {
  orgId: string;
  id: string;
  endpointId: string;
  /** Attempts recorded so far (this one is `attempts + 1`). */
  attempts: number;
  url: string;
  /** Sealed (server/webhook-delivery/secrets.ts). */
  secret: string;
  previousSecret: string | null;
  previousSecretExpiresAt: Date | null;
  event: { id: string; type: string; env: Env; created_at: Date; data: unknown };
  /** The `traceparent` of the request that wrote the event (events.trace_context), or null. */
  eventTraceContext: string | null;
}

/** A place among the endpoints that have pending deliveries, in the claim's walk order. */
export interface EndpointPlace {
  orgId: string;
  endpointId: string;
}

/** The lowest place: a walk after it starts at the first endpoint. */
export const FIRST_PLACE: EndpointPlace = {
  orgId: '00000000-0000-0000-0000-000000000000',
  endpointId: '00000000-0000-0000-0000-000000000000',
};

/** An endpoint this worker may claim from now, and at most how many attempts it may have in flight. */
export interface ClaimableEndpoint extends EndpointPlace {
  cap: number;
}

/**
 * An endpoint the walk holds: `probe` when its circuit is open and its cool-down over (one attempt,
 * the probe); `learntLimit`, its adaptive limit as last recorded with it (null: none yet), where a
 * worker that has not attempted it starts (./endpoint-limits.ts).
 */
export interface WalkedEndpoint extends EndpointPlace {
  probe: boolean;
  learntLimit: number | null;
}

export interface EndpointWalk {
  /** The endpoints this transaction now holds for its claim, in walk order. */
  claimable: WalkedEndpoint[];
  /** The last endpoint walked, and whether the walk stopped at its limit (more endpoints follow). */
  last: EndpointPlace | null;
  truncated: boolean;
}

/**
 * The first step of a claim, in the claim's transaction: walks the endpoints that have pending
 * deliveries, in (org_id, endpoint_id) order from just after `after` round to it again, at most
 * `limit` of them. Each step is one probe of the pending deliveries' index for the next endpoint
 * (a skip scan), so the walk costs the number of endpoints, never the number of deliveries. Of
 * those, it keeps the endpoints that may be attempted now: enabled, of an organisation on one of
 * `plans`, and with a closed circuit (the worker's limit for it) or one whose cool-down is over (one
 * probe); and takes for each a lock held until the transaction ends, skipping those another
 * worker holds. The count of an endpoint's leases that the claim then reads is therefore exact
 * across workers: no other claim on it runs until this one has committed its leases.
 */
export async function walkClaimableEndpoints(
  trx: Db,
  walk: { after: EndpointPlace; limit: number; now: Date; plans: readonly string[] },
): Promise<EndpointWalk> {
  const next = (wrapped: RawBuilder<unknown>, after: RawBuilder<unknown>) => sql`(
    select * from (
      (select ${wrapped} as wrapped, d.org_id, d.endpoint_id from webhook_deliveries d
       where d.status = 'pending' and (d.org_id, d.endpoint_id) > ${after}
       order by d.org_id, d.endpoint_id limit 1)
      union all
      (select true, d.org_id, d.endpoint_id from webhook_deliveries d
       where d.status = 'pending' and not ${wrapped}
       order by d.org_id, d.endpoint_id limit 1)
    ) candidate limit 1)`;
  const after = sql`(${walk.after.orgId}::uuid, ${walk.after.endpointId}::uuid)`;
  const { rows } = await sql<{
    n: number;
    org_id: string;
    endpoint_id: string;
    probe: boolean | null;
    learnt_limit: number | null;
    walked: number;
  }>`
    with recursive walk (n, wrapped, org_id, endpoint_id) as (
      select 1, s.wrapped, s.org_id, s.endpoint_id from ${next(sql`false`, after)} s
      union all
      select w.n + 1, s.wrapped, s.org_id, s.endpoint_id
      from walk w cross join lateral ${next(sql`w.wrapped`, sql`(w.org_id, w.endpoint_id)`)} s
      where w.n < ${walk.limit} and not (s.wrapped and (s.org_id, s.endpoint_id) > ${after})
    ), claimable as materialized (
      select walk.n, walk.org_id, walk.endpoint_id,
             e.circuit_open_until is not null as probe, e.concurrency_limit as learnt_limit
      from walk
      join webhook_endpoints e on e.org_id = walk.org_id and e.id = walk.endpoint_id
      where not e.disabled and ${organisationOnPlan(sql.ref('e.org_id'), walk.plans)}
        and (e.circuit_open_until is null or e.circuit_open_until <= ${walk.now})
    ), held as materialized (
      select n, org_id, endpoint_id, probe, learnt_limit from claimable
      where pg_try_advisory_xact_lock(hashtextextended('webhook_claim:' || endpoint_id::text, 0))
    )
    select walk.n, walk.org_id, walk.endpoint_id, held.probe, held.learnt_limit, (select count(*) from walk)::int as walked
    from walk left join held on held.n = walk.n
    order by walk.n
  `.execute(trx);
  const last = rows.at(-1);
  return {
    claimable: rows
      .filter((row) => row.probe !== null)
      .map((row) => ({ orgId: row.org_id, endpointId: row.endpoint_id, probe: row.probe!, learntLimit: row.learnt_limit })),
    last: last ? { orgId: last.org_id, endpointId: last.endpoint_id } : null,
    truncated: last !== undefined && last.walked >= walk.limit,
  };
}

/** What a claim may take, and how it leases it. */
export interface LeaseTerms {
  /** Attempts in flight in this worker, per organisation. */
  busy: ReadonlyMap<string, number>;
  /** Attempts in flight one organisation may have in this worker. */
  share: number;
  /** Deliveries to lease at most (the worker's free slots). */
  slots: number;
  now: Date;
  leaseId: string;
  leasedUntil: Date;
}

/**
 * The second step of a claim, after walkClaimableEndpoints in the same transaction (so that its
 * snapshot sees every lease committed before the endpoints' locks were taken): leases to
 * `leaseId` until `leasedUntil` at most `slots` due deliveries of `endpoints`, and returns them.
 *
 * - Each endpoint gets at most its cap minus its live leases still being sent (all workers' alike;
 *   a lease whose attempt is answered and only waits to be recorded, marked by markLeasesAnswered,
 *   loads no receiver and does not count), its oldest due deliveries first. A delivery is due when
 *   it is pending, its time has come and no live lease holds it (a lease that ran out, its worker
 *   dead, is simply taken again: the same event, the same `webhook-id`).
 * - Each organisation gets at most `share` attempts in flight in this worker, counting `busy`
 *   (its attempts already in flight here).
 * - The slots go round: each organisation's first delivery before anyone's second, the least busy
 *   organisation first, and within an organisation one per endpoint before a second; ties by walk
 *   order, which starts after the last endpoint served.
 * - FOR UPDATE SKIP LOCKED on the deliveries too: a row another statement is settling is left.
 */
export async function claimDueDeliveries(trx: Db, claim: LeaseTerms & { endpoints: ClaimableEndpoint[] }): Promise<ClaimedDelivery[]> {
  if (claim.endpoints.length === 0 || claim.slots <= 0) return [];
  return lease(
    trx,
    sql`
      with endpoint as (
        select e.org_id, e.endpoint_id, e.cap, e.pos
        from unnest(${claim.endpoints.map((e) => e.orgId)}::uuid[], ${claim.endpoints.map((e) => e.endpointId)}::uuid[],
                    ${claim.endpoints.map((e) => e.cap)}::int[]) with ordinality as e (org_id, endpoint_id, cap, pos)
      ), busy as (
        select b.org_id, b.n
        from unnest(${[...claim.busy.keys()]}::uuid[], ${[...claim.busy.values()]}::int[]) as b (org_id, n)
      ), room as (
        select endpoint.*, greatest(0, endpoint.cap - (
          select count(*)::int from webhook_deliveries l
          where l.org_id = endpoint.org_id and l.endpoint_id = endpoint.endpoint_id
            and l.lease_id is not null and l.leased_until > ${claim.now} and not l.lease_answered
        )) as room
        from endpoint
      ), due as (
        select room.org_id, room.pos, c.id, row_number() over (partition by room.pos order by c.next_attempt_at, c.id) as k
        from room cross join lateral (
          select d.id, d.next_attempt_at from webhook_deliveries d
          where d.org_id = room.org_id and d.endpoint_id = room.endpoint_id and ${dueAt(sql.ref('d'), claim.now)}
          order by d.next_attempt_at
          limit room.room
          for update skip locked
        ) c
      ), ranked as (
        select due.org_id, due.id, due.pos, due.k,
               coalesce(busy.n, 0) + row_number() over (partition by due.org_id order by due.k, due.pos) as turn
        from due left join busy on busy.org_id = due.org_id
      )
      select org_id, id from ranked
      where turn <= ${claim.share}
      order by turn, pos, k
      limit ${claim.slots}`,
    claim,
  );
}

/** A leased delivery, as its lease names it. */
export interface LeasedDelivery {
  orgId: string;
  id: string;
  leaseId: string;
}

/**
 * Marks the attempts of these leases answered (waiting only to be recorded), where the lease is
 * still the one given: they no longer count toward their endpoints' room, for any worker's claim.
 * One statement, in the claim's transaction before its walk.
 */
export async function markLeasesAnswered(trx: Db, leases: readonly LeasedDelivery[]): Promise<void> {
  if (leases.length === 0) return;
  await sql`
    update webhook_deliveries d
    set lease_answered = true
    from unnest(${leases.map((l) => l.orgId)}::uuid[], ${leases.map((l) => l.id)}::uuid[],
                ${leases.map((l) => l.leaseId)}::uuid[]) as a (org_id, id, lease_id)
    where d.org_id = a.org_id and d.id = a.id and d.lease_id = a.lease_id and not d.lease_answered
  `.execute(trx);
}

/** A delivery that may be attempted at `now`: pending, its time come, and no live lease on it. */
function dueAt(d: RawBuilder<unknown>, now: Date) {
  return sql<boolean>`${d}.status = 'pending' and ${d}.next_attempt_at <= ${now} and (${d}.leased_until is null or ${d}.leased_until <= ${now})`;
}

/** Leases the deliveries `chosen` selects (org_id, id) and returns them with what their attempts need. */
async function lease(trx: Db, chosen: RawBuilder<unknown>, terms: { leaseId: string; leasedUntil: Date }): Promise<ClaimedDelivery[]> {
  const { rows } = await sql<{
    org_id: string;
    id: string;
    endpoint_id: string;
    attempts: number;
    url: string;
    secret: string;
    previous_secret: string | null;
    previous_secret_expires_at: Date | null;
    event_id: string;
    event_type: string;
    event_env: Env;
    event_created_at: Date;
    event_data: unknown;
    event_trace_context: string | null;
  }>`
    update webhook_deliveries d
    set lease_id = ${terms.leaseId}, leased_until = ${terms.leasedUntil}, lease_answered = false
    from (${chosen}) chosen, webhook_endpoints w, events e
    where d.org_id = chosen.org_id and d.id = chosen.id
      and w.org_id = d.org_id and w.id = d.endpoint_id
      and e.org_id = d.org_id and e.id = d.event_id
    returning d.org_id, d.id, d.endpoint_id, d.attempts, w.url, w.secret, w.previous_secret, w.previous_secret_expires_at,
              e.id as event_id, e.type as event_type, e.env as event_env, e.created_at as event_created_at, e.data as event_data,
              e.trace_context as event_trace_context
  `.execute(trx);
  return rows.map((row) => ({
    orgId: row.org_id,
    id: row.id,
    endpointId: row.endpoint_id,
    attempts: row.attempts,
    url: row.url,
    secret: row.secret,
    previousSecret: row.previous_secret,
    previousSecretExpiresAt: row.previous_secret_expires_at,
    event: { id: row.event_id, type: row.event_type, env: row.event_env, created_at: row.event_created_at, data: row.event_data },
    eventTraceContext: row.event_trace_context,
  }));
}

// ---------------------------------------------------------------------------------------------
// Record: an attempt's outcome, only while the lease is still ours.
// ---------------------------------------------------------------------------------------------

/**
 * Every transaction of the worker (a fan-out, a claim, an attempt's record, the plans' holds)
 * commits without waiting for the disk, nor for a synchronous standby. A crash of the database
 * server, or a failover to a standby that had not yet received them, can lose the last moments of
 * them, which costs at worst work done again: a fan-out lost with the endpoint's place in the feed
 * is made again from the same place (`on conflict do nothing`), a lost lease or success means an
 * attempt sent again with the same `webhook-id`: at least once, as promised. Waiting for the disk
 * made every attempt's slot wait too, and a busy endpoint's few slots with it; waiting for a
 * standby, which `statement_timeout` does not cut, held them for as long as the cluster had none.
 */
export async function commitWithoutWaiting(trx: Db): Promise<void> {
  await sql`set local synchronous_commit = off`.execute(trx);
}

export interface AttemptRecord {
  orgId: string;
  deliveryId: string;
  leaseId: string;
  endpointId: string;
  eventId: string;
  eventType: string;
  /** 1-based. */
  attempt: number;
  attemptedAt: Date;
  durationMs: number;
  statusCode: number | null;
  error: string | null;
  succeeded: boolean;
  /** When the next attempt is due; null after a success or the last attempt. */
  nextRetryAt: Date | null;
  /** The attempt's id, when the caller answers with it (a test delivery); a new one otherwise. */
  attemptId?: string;
}

/**
 * Settles the delivery (succeeded; pending again at `nextRetryAt`; or failed after the last
 * attempt), releases its lease and inserts the attempt, in one statement. False, with nothing
 * written, when the lease is no longer ours: it ran out and another worker has the delivery now
 * (its attempt will be the one recorded), or the endpoint was deleted meanwhile.
 */
export async function recordAttempt(trx: Db, record: AttemptRecord): Promise<boolean> {
  return (await recordAttempts(trx, [record])).size > 0;
}

/**
 * recordAttempt for a whole batch, in one statement whatever its size: each delivery settled and
 * its attempt inserted only where its lease is still the one given. The deliveries recorded (by
 * id); those missing were no longer leased to the worker.
 */
export async function recordAttempts(trx: Db, records: readonly AttemptRecord[]): Promise<Set<string>> {
  if (records.length === 0) return new Set();
  const column = <T>(pick: (record: AttemptRecord) => T) => records.map(pick);
  const iso = (date: Date | null) => (date === null ? null : date.toISOString());
  const { rows } = await sql<{ delivery_id: string }>`
    with input as (
      select * from unnest(
        ${column((r) => r.orgId)}::uuid[], ${column((r) => r.deliveryId)}::uuid[], ${column((r) => r.leaseId)}::uuid[],
        ${column((r) => (r.succeeded ? 'succeeded' : r.nextRetryAt === null ? 'failed' : 'pending'))}::text[],
        ${column((r) => r.attempt)}::int[], ${column((r) => iso(r.attemptedAt))}::timestamptz[],
        ${column((r) => iso(r.nextRetryAt))}::timestamptz[], ${column((r) => r.attemptId ?? randomUUID())}::uuid[],
        ${column((r) => r.endpointId)}::uuid[], ${column((r) => r.eventId)}::uuid[], ${column((r) => r.eventType)}::text[],
        ${column((r) => r.durationMs)}::int[], ${column((r) => r.statusCode)}::int[], ${column((r) => r.error)}::text[],
        ${column((r) => r.succeeded)}::boolean[]
      ) as i (org_id, delivery_id, lease_id, status, attempt, attempted_at, next_retry_at, attempt_id, endpoint_id, event_id,
              event_type, duration_ms, status_code, error, succeeded)
    ), settled as (
      update webhook_deliveries d
      set status = i.status, attempts = i.attempt, next_attempt_at = coalesce(i.next_retry_at, i.attempted_at),
          lease_id = null, leased_until = null, lease_answered = false
      from input i
      where d.org_id = i.org_id and d.id = i.delivery_id and d.lease_id = i.lease_id
      returning d.org_id, d.id
    )
    insert into webhook_attempts (org_id, id, delivery_id, endpoint_id, event_id, event_type, attempt, attempted_at, duration_ms,
                                  status_code, error, succeeded, next_retry_at)
    select i.org_id, i.attempt_id, i.delivery_id, i.endpoint_id, i.event_id, i.event_type, i.attempt, i.attempted_at, i.duration_ms,
           i.status_code, i.error, i.succeeded, i.next_retry_at
    from input i join settled s on s.org_id = i.org_id and s.id = i.delivery_id
    returning delivery_id
  `.execute(trx);
  return new Set(rows.map((row) => row.delivery_id));
}
// ---------------------------------------------------------------------------------------------
// What the worker reports to its metrics: what is held back, and why.
// ---------------------------------------------------------------------------------------------

export interface HeldBack {
  /** Endpoints whose organisation's plan does not include webhooks, and their pending deliveries. */
  planEndpoints: number;
  planDeliveries: number;
  /** Enabled endpoints with an open circuit (its cool-down not over), and their due deliveries. */
  circuitEndpoints: number;
  circuitDeliveries: number;
  /**
   * How long the oldest due delivery has waited (seconds) among the endpoints the worker may send
   * to (enabled, the plan allows webhooks, the circuit closed); 0 when none is due. What grows when
   * the workers fall behind, whatever the reason.
   */
  oldestDueSeconds: number;
}

/**
 * Counts what is held back, through the partial indexes on the endpoints (held by the plan; an
 * open circuit) and the pending deliveries of those endpoints only. `plan_paused_at` is as the
 * worker last set it (trackPlanPauses). The oldest due delivery is one index probe per deliverable
 * endpoint (webhook_deliveries_endpoint_due_idx).
 */
export async function countHeldBack(db: Db, now: Date): Promise<HeldBack> {
  const { rows } = await sql<{
    plan_endpoints: number;
    plan_deliveries: number;
    circuit_endpoints: number;
    circuit_deliveries: number;
    oldest_due_seconds: number;
  }>`
    with plan as (
      select org_id, id from webhook_endpoints where plan_paused_at is not null
    ), circuit as (
      select org_id, id from webhook_endpoints
      where circuit_open_until > ${now} and not disabled and plan_paused_at is null
    ), deliverable as (
      select org_id, id from webhook_endpoints
      where not disabled and plan_paused_at is null and (circuit_open_until is null or circuit_open_until <= ${now})
    )
    select (select count(*) from plan)::int as plan_endpoints,
           (select count(*) from plan p join webhook_deliveries d
              on d.org_id = p.org_id and d.endpoint_id = p.id and d.status = 'pending')::int as plan_deliveries,
           (select count(*) from circuit)::int as circuit_endpoints,
           (select count(*) from circuit c join webhook_deliveries d
              on d.org_id = c.org_id and d.endpoint_id = c.id and d.status = 'pending' and d.next_attempt_at <= ${now})::int as circuit_deliveries,
           coalesce((select extract(epoch from ${now}::timestamptz - min(due.next_attempt_at))
              from deliverable e cross join lateral (
                select d.next_attempt_at from webhook_deliveries d
                where d.org_id = e.org_id and d.endpoint_id = e.id and d.status = 'pending' and d.next_attempt_at <= ${now}
                order by d.next_attempt_at limit 1
              ) due), 0)::float8 as oldest_due_seconds
  `.execute(db);
  const row = rows[0]!;
  return {
    planEndpoints: row.plan_endpoints,
    planDeliveries: row.plan_deliveries,
    circuitEndpoints: row.circuit_endpoints,
    circuitDeliveries: row.circuit_deliveries,
    oldestDueSeconds: row.oldest_due_seconds,
  };
}

// ---------------------------------------------------------------------------------------------
// Sent again on request: a recovery, a redelivery, a test (server/webhook-endpoints/recovery.service.ts).
// ---------------------------------------------------------------------------------------------

/** An endpoint, as a recovery reads it. */
export interface RecoveringEndpoint {
  orgId: string;
  env: Env;
  endpointId: string;
  enabledEvents: string[];
  /** Events made before it was registered are not its to recover. */
  createdAt: Date;
}

/** The most events one recovery request queues (a statement and a lock of bounded length). */
export const RECOVERY_BATCH = 1000;

/**
 * Queues for the endpoint, in one statement, the first `RECOVERY_BATCH` events in the feed's order
 * of its tenant made in `[since, until]` (and not before the endpoint) of a type it takes, that it
 * has not acknowledged and that are not already waiting: a new pending delivery for an event it
 * never got (a time it was disabled), and a failed one made pending again with its attempts
 * counted from 0. Due from `now`, a microsecond apart in the feed's order, so that the claim
 * (oldest due first) takes them in that order; a later batch is due after an earlier one. A
 * delivery that another statement makes meanwhile (the fan-out) wins, and is not counted. How many
 * were queued, and whether the window holds more.
 */
export async function queueRecovery(
  trx: Db,
  endpoint: RecoveringEndpoint,
  window: { since: Date; until: Date },
  now: Date,
): Promise<{ queued: number; hasMore: boolean }> {
  const from = new Date(Math.max(window.since.getTime(), endpoint.createdAt.getTime()));
  const { rows } = await sql<{ queued: number; found: number }>`
    with found as (
      select e.id, e.txid, e.seq
      from events e
      -- Each event's delivery to the endpoint looked up by its key, one probe per event: \`offset 0\`
      -- keeps the lookup a subquery of its own, which the planner cannot turn into a join. As a
      -- \`not exists\`, on statistics older than the tenant's events (which made it expect one
      -- event), it was joined to every delivery of the endpoint for each event: 200 million rows
      -- compared for 20,000 events, past any statement's deadline.
      left join lateral (
        select true as waiting from webhook_deliveries d
        where d.endpoint_id = ${endpoint.endpointId} and d.event_id = e.id and d.org_id = e.org_id and d.status <> 'failed'
        offset 0
      ) delivery on true
      where e.org_id = ${endpoint.orgId} and e.env = ${endpoint.env}
        and e.created_at >= ${from} and e.created_at <= ${window.until}
        and e.type <> ${TEST_EVENT_TYPE}
        and (e.type = any(${endpoint.enabledEvents}::text[]) or '*' = any(${endpoint.enabledEvents}::text[]))
        and delivery.waiting is null
      order by e.txid, e.seq
      limit ${RECOVERY_BATCH + 1}
    ), wanted as (
      select f.id, row_number() over (order by f.txid, f.seq) as n from found f
    ), queued as (
      insert into webhook_deliveries (org_id, id, endpoint_id, event_id, status, attempts, next_attempt_at, created_at)
      select ${endpoint.orgId}, gen_random_uuid(), ${endpoint.endpointId}, w.id, 'pending', 0,
             ${now}::timestamptz + (w.n - 1) * interval '1 microsecond', ${now}
      from wanted w
      where w.n <= ${RECOVERY_BATCH}
      order by w.n
      on conflict (org_id, endpoint_id, event_id) do update
        set status = 'pending', attempts = 0, next_attempt_at = excluded.next_attempt_at, lease_id = null, leased_until = null,
          lease_answered = false
        where webhook_deliveries.status = 'failed'
      returning 1
    )
    select (select count(*) from queued)::int as queued, (select count(*) from found)::int as found
  `.execute(trx);
  const row = rows[0]!;
  return { queued: row.queued, hasMore: row.found > RECOVERY_BATCH };
}

/**
 * Queues one event again for each of `endpointIds`, due at `now`, acknowledged or not: a new
 * delivery, or the existing one made pending again with its attempts counted from 0. One already
 * pending (waiting, or in flight) is left as it is. The endpoints queued.
 */
export async function queueRedelivery(trx: Db, redelivery: { orgId: string; eventId: string; endpointIds: string[] }, now: Date) {
  if (redelivery.endpointIds.length === 0) return [];
  const { rows } = await sql<{ endpoint_id: string }>`
    insert into webhook_deliveries (org_id, id, endpoint_id, event_id, status, attempts, next_attempt_at, created_at)
    select ${redelivery.orgId}, gen_random_uuid(), target.id, ${redelivery.eventId}, 'pending', 0, ${now}, ${now}
    from unnest(${redelivery.endpointIds}::uuid[]) as target (id)
    on conflict (org_id, endpoint_id, event_id) do update
      set status = 'pending', attempts = 0, next_attempt_at = excluded.next_attempt_at, lease_id = null, leased_until = null,
          lease_answered = false
      where webhook_deliveries.status <> 'pending'
    returning endpoint_id
  `.execute(trx);
  const queued = new Set(rows.map((row) => row.endpoint_id));
  return redelivery.endpointIds.filter((id) => queued.has(id));
}

/**
 * A test delivery, leased to the request that sends it until `leasedUntil`, and not due before:
 * no worker touches it meanwhile. Should that request's process die before recording its attempt,
 * the lease runs out and a worker sends it, with the same `webhook-id` (at least once).
 */
export async function insertTestDelivery(
  trx: Db,
  delivery: { orgId: string; id: string; endpointId: string; eventId: string; leaseId: string; leasedUntil: Date; now: Date },
): Promise<void> {
  await sql`
    insert into webhook_deliveries (org_id, id, endpoint_id, event_id, status, attempts, next_attempt_at, lease_id, leased_until, created_at)
    values (${delivery.orgId}, ${delivery.id}, ${delivery.endpointId}, ${delivery.eventId}, 'pending', 0, ${delivery.leasedUntil},
            ${delivery.leaseId}, ${delivery.leasedUntil}, ${delivery.now})
  `.execute(trx);
}

/** The newest attempt at the endpoint's delivery of the event, if any (a test whose request died, sent by a worker since). */
export async function findLatestAttempt(db: Db, attempt: { orgId: string; endpointId: string; eventId: string }) {
  return db
    .selectFrom('webhook_attempts')
    .selectAll()
    .where('org_id', '=', attempt.orgId)
    .where('endpoint_id', '=', attempt.endpointId)
    .where('event_id', '=', attempt.eventId)
    .orderBy('attempted_at', 'desc')
    .limit(1)
    .executeTakeFirst();
}
