/**
 * The one module that writes `webhook_deliveries` and `webhook_attempts`: the delivery worker's
 * statements (server/webhooks/worker.ts). A delivery is one event owed to one endpoint, and is
 * also the worker's job: it is claimed with a lease (FOR UPDATE SKIP LOCKED, no queue library,
 * so it runs on the embedded database too) and every attempt at it is recorded beside it.
 */
import { randomUUID } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import type { Database, Env } from '../db/schema.js';

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
export interface FeedPosition {
  orgId: string;
  env: Env;
  endpointId: string;
  enabledEvents: string[];
  feedTxid: string;
  feedSeq: string;
}

export interface FanOutResult {
  /** Events scanned (at most the limit: fewer when the endpoint has caught up). */
  scanned: number;
  /** Deliveries created. */
  created: number;
  /** The last event scanned, matching or not: the endpoint's new place in the feed (null: none). */
  last: { txid: string; seq: string } | null;
}

/**
 * Creates a pending delivery, due at `now`, for each of the endpoint's tenant's events after its
 * place in the feed and below the horizon whose type it wants, scanning at most `limit` events in
 * feed order. A delivery that exists already is left alone (`on conflict do nothing`).
 */
export async function fanOutEvents(trx: Db, position: FeedPosition, horizon: string, now: Date, limit: number): Promise<FanOutResult> {
  const { rows } = await sql<{ scanned: number; created: number; last_txid: string | null; last_seq: string | null }>`
    with scanned as (
      select e.id, e.type, e.txid, e.seq
      from events e
      where e.org_id = ${position.orgId} and e.env = ${position.env}
        and (e.txid, e.seq) > (${position.feedTxid}::xid8, ${position.feedSeq}::bigint)
        and e.txid < ${horizon}::xid8
      order by e.txid, e.seq
      limit ${limit}
    ), created as (
      insert into webhook_deliveries (org_id, id, endpoint_id, event_id, status, attempts, next_attempt_at, created_at)
      select ${position.orgId}, gen_random_uuid(), ${position.endpointId}, s.id, 'pending', 0, ${now}, ${now}
      from scanned s
      where s.type = any(${position.enabledEvents}::text[]) or '*' = any(${position.enabledEvents}::text[])
      order by s.txid, s.seq
      on conflict do nothing
      returning 1
    ), last as (
      select txid, seq from scanned order by txid desc, seq desc limit 1
    )
    select (select count(*) from scanned)::int as scanned,
           (select count(*) from created)::int as created,
           (select txid::text from last) as last_txid,
           (select seq::text from last) as last_seq
  `.execute(trx);
  const row = rows[0]!;
  return { scanned: row.scanned, created: row.created, last: row.last_txid === null ? null : { txid: row.last_txid, seq: row.last_seq! } };
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
  /** Sealed (server/webhooks/secrets.ts). */
  secret: string;
  previousSecret: string | null;
  previousSecretExpiresAt: Date | null;
  event: { id: string; type: string; env: Env; created_at: Date; data: unknown };
}

/**
 * Leases up to `limit` due deliveries to `leaseId` until `leasedUntil`, in one statement (no
 * transaction stays open while the attempts are made). A delivery is due when it is pending, its
 * time has come, no live lease holds it and its endpoint is enabled. SKIP LOCKED: two workers
 * claiming at once take different deliveries. A lease that ran out (its worker died) is simply
 * claimed again: the same event, the same `webhook-id`.
 */
export async function claimDueDeliveries(
  db: Db,
  claim: { leaseId: string; now: Date; leasedUntil: Date; limit: number },
): Promise<ClaimedDelivery[]> {
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
  }>`
    update webhook_deliveries d
    set lease_id = ${claim.leaseId}, leased_until = ${claim.leasedUntil}
    from (
      select due.org_id, due.id
      from webhook_deliveries due
      join webhook_endpoints w on w.org_id = due.org_id and w.id = due.endpoint_id
      where due.status = 'pending' and due.next_attempt_at <= ${claim.now}
        and (due.leased_until is null or due.leased_until <= ${claim.now})
        and not w.disabled
      order by due.next_attempt_at
      limit ${claim.limit}
      for update of due skip locked
    ) claimed, webhook_endpoints w, events e
    where d.org_id = claimed.org_id and d.id = claimed.id
      and w.org_id = d.org_id and w.id = d.endpoint_id
      and e.org_id = d.org_id and e.id = d.event_id
    returning d.org_id, d.id, d.endpoint_id, d.attempts, w.url, w.secret, w.previous_secret, w.previous_secret_expires_at,
              e.id as event_id, e.type as event_type, e.env as event_env, e.created_at as event_created_at, e.data as event_data
  `.execute(db);
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
  }));
}

// ---------------------------------------------------------------------------------------------
// Record: an attempt's outcome, only while the lease is still ours.
// ---------------------------------------------------------------------------------------------

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
}

/**
 * Settles the delivery (succeeded; pending again at `nextRetryAt`; or failed after the last
 * attempt), releases its lease and inserts the attempt, in one statement. False, with nothing
 * written, when the lease is no longer ours: it ran out and another worker has the delivery now
 * (its attempt will be the one recorded), or the endpoint was deleted meanwhile.
 */
export async function recordAttempt(trx: Db, record: AttemptRecord): Promise<boolean> {
  const status = record.succeeded ? 'succeeded' : record.nextRetryAt === null ? 'failed' : 'pending';
  const { rows } = await sql<{ id: string }>`
    with settled as (
      update webhook_deliveries
      set status = ${status}, attempts = ${record.attempt}, next_attempt_at = ${record.nextRetryAt ?? record.attemptedAt},
          lease_id = null, leased_until = null
      where org_id = ${record.orgId} and id = ${record.deliveryId} and lease_id = ${record.leaseId}
      returning org_id, id
    )
    insert into webhook_attempts (org_id, id, delivery_id, endpoint_id, event_id, event_type, attempt, attempted_at, duration_ms,
                                  status_code, error, succeeded, next_retry_at)
    select org_id, ${randomUUID()}, id, ${record.endpointId}, ${record.eventId}, ${record.eventType}, ${record.attempt},
           ${record.attemptedAt}, ${record.durationMs}, ${record.statusCode}, ${record.error}, ${record.succeeded}, ${record.nextRetryAt}
    from settled
    returning id
  `.execute(trx);
  return rows.length > 0;
}
