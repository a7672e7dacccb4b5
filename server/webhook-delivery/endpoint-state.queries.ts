/**
 * The delivery worker's writes to `webhook_endpoints` (server/webhook-delivery/worker.ts): the
 * endpoint's place in the feed, what its deliveries' outcomes do to it (failingSince, the
 * circuit, disabled after five days, the adaptive limit learnt), and the time an organisation's
 * plan holds its endpoints.
 * The endpoint's configuration (URL, events, secret) is the API's
 * (server/webhook-endpoints/endpoints.queries.ts); these columns are the worker's alone.
 */
import { type Kysely, type RawBuilder, sql } from 'kysely';
import type { Database } from '../db/schema.js';

type EndpointsDb = Kysely<Database>;

/** An endpoint as the worker's statements name it. */
export interface WorkerEndpoint {
  orgId: string;
  endpointId: string;
}

/**
 * Whether the endpoint's organisation is on one of `plans`, read by key (a subquery the planner
 * keeps per row): joined instead, the planner may scan every organisation for the few on those
 * plans, most organisations being on free.
 */
export function organisationOnPlan(orgId: RawBuilder<unknown>, plans: readonly string[]) {
  return sql<boolean>`(select o.plan from organisations o where o.id = ${orgId}) = any(${plans}::text[])`;
}

/**
 * Locks up to `limit` enabled endpoints that have events to fan out (after their place in the
 * feed, below the horizon), skipping those another worker holds: two processes never fan out one
 * endpoint at once. Endpoints with nothing new are not taken, and the furthest behind go first,
 * so a batch never starves the rest. Nor are those the worker has seen held by their
 * organisation's plan (`plan_paused_at`): they stay furthest behind, and would fill every batch.
 * (The fan-out checks each one's plan again, as it is now: fanOutEvents.)
 */
export async function lockEndpointsBehindFeed(trx: EndpointsDb, horizon: string, limit: number) {
  const rows = await trx
    .selectFrom('webhook_endpoints as w')
    .select((eb) => [
      'w.org_id',
      'w.env',
      'w.id',
      'w.enabled_events',
      eb.cast<string>('w.feed_txid', 'text').as('feed_txid'),
      eb.cast<string>('w.feed_seq', 'text').as('feed_seq'),
    ])
    .where('w.disabled', '=', false)
    .where('w.plan_paused_at', 'is', null)
    .where(({ exists, selectFrom }) =>
      exists(
        selectFrom('events as e')
          .select('e.id')
          .whereRef('e.org_id', '=', 'w.org_id')
          .whereRef('e.env', '=', 'w.env')
          .where((eb) => eb(eb.refTuple('e.txid', 'e.seq'), '>', eb.refTuple('w.feed_txid', 'w.feed_seq')))
          .where('e.txid', '<', horizon),
      ),
    )
    .orderBy('w.feed_txid')
    .orderBy('w.feed_seq')
    .limit(limit)
    .forUpdate('w')
    .skipLocked()
    .execute();
  return rows.map((row) => ({
    orgId: row.org_id,
    env: row.env,
    endpointId: row.id,
    enabledEvents: row.enabled_events,
    feedTxid: row.feed_txid,
    feedSeq: row.feed_seq,
  }));
}

/** Moves each endpoint's place in the feed to the last event the fan-out scanned for it, in one statement. */
export async function advanceEndpointFeeds(
  trx: EndpointsDb,
  places: readonly (WorkerEndpoint & { last: { txid: string; seq: string } })[],
): Promise<void> {
  if (places.length === 0) return;
  await sql`
    update webhook_endpoints w
    set feed_txid = p.txid::xid8, feed_seq = p.seq
    from unnest(${places.map((p) => p.orgId)}::uuid[], ${places.map((p) => p.endpointId)}::uuid[],
                ${places.map((p) => p.last.txid)}::text[], ${places.map((p) => p.last.seq)}::bigint[]) as p (org_id, id, txid, seq)
    where w.org_id = p.org_id and w.id = p.id
  `.execute(trx);
}

/**
 * Deliveries succeeded: each endpoint is no longer failing, and its circuit is closed. Only the
 * endpoints that were failing are written, their rows locked in key order first, as the batch's
 * other endpoint statements lock theirs, so that two workers' batches cannot deadlock. One statement.
 */
export async function markEndpointsSucceeded(trx: EndpointsDb, endpoints: readonly WorkerEndpoint[]): Promise<void> {
  if (endpoints.length === 0) return;
  await sql`
    with failing as (
      select x.org_id, x.id
      from webhook_endpoints x
      join unnest(${endpoints.map((e) => e.orgId)}::uuid[], ${endpoints.map((e) => e.endpointId)}::uuid[]) as s (org_id, id)
        on s.org_id = x.org_id and s.id = x.id
      where x.failing_since is not null or x.consecutive_failures > 0 or x.circuit_open_until is not null
      order by x.org_id, x.id
      for update of x
    )
    update webhook_endpoints w
    set failing_since = null, consecutive_failures = 0, circuit_opened_at = null, circuit_open_until = null
    from failing f
    where w.org_id = f.org_id and w.id = f.id
  `.execute(trx);
}

/** An endpoint's adaptive limit as a worker has learnt it (./endpoint-limits.ts). */
export interface EndpointLimit extends WorkerEndpoint {
  limit: number;
}

/**
 * Keeps each endpoint's adaptive limit as this worker has learnt it, where a worker that has not
 * attempted the endpoint starts (./endpoint-limits.ts); the last batch recorded wins. The worker
 * passes only the endpoints whose view moved since it last kept it, and a row is written only where
 * the value differs, so at a steady limit a batch writes nothing here. The rows are locked in key
 * order first, as markEndpointsFailed's are, so that two workers' batches cannot deadlock. One
 * statement.
 */
export async function recordEndpointLimits(trx: EndpointsDb, endpoints: readonly EndpointLimit[]): Promise<void> {
  if (endpoints.length === 0) return;
  await sql`
    with s as (
      select * from unnest(${endpoints.map((e) => e.orgId)}::uuid[], ${endpoints.map((e) => e.endpointId)}::uuid[],
                           ${endpoints.map((e) => e.limit)}::int[]) as s (org_id, id, concurrency_limit)
    ), changed as (
      select x.org_id, x.id, s.concurrency_limit
      from webhook_endpoints x join s on s.org_id = x.org_id and s.id = x.id
      where x.concurrency_limit is distinct from s.concurrency_limit
      order by x.org_id, x.id
      for update of x
    )
    update webhook_endpoints w
    set concurrency_limit = c.concurrency_limit
    from changed c
    where w.org_id = c.org_id and w.id = c.id
  `.execute(trx);
}

/** What the circuit does after failures (server/webhook-delivery/schedule.ts). */
export interface CircuitRule {
  opensAfter: number;
  firstCoolDownMs: number;
  maxCoolDownMs: number;
}

/** An endpoint's failures in a row, from one batch of recorded attempts. */
export interface EndpointFailures extends WorkerEndpoint {
  failures: number;
  /** When the first and the last of them started. */
  firstAt: Date;
  lastAt: Date;
}

const milliseconds = (ms: number) => sql<string>`(${ms} * interval '1 millisecond')`;

/**
 * Attempts failed, `failures` in a row per endpoint (after any success of the same batch, which
 * markEndpointsSucceeded has recorded first). One statement for every endpoint. Each endpoint is
 * failing since its first failure after its last success, and the failures are counted in a row.
 * The circuit opens when that count reaches `opensAfter` (for the first cool-down), or again when
 * the last failure is the probe's (the circuit was open and its time is over: twice the last
 * cool-down, at most the longest); failures of attempts that began before the circuit opened
 * change nothing more. Once the endpoint has been failing for `disableAfterMs`, not counting the
 * time its organisation's plan has held it, it is disabled (`disabledReason: failing`), which stops
 * its deliveries until someone enables it again. The rows are locked first, so the update decides
 * on what it read. The endpoints whose circuit these failures opened.
 */
export async function markEndpointsFailed(
  trx: EndpointsDb,
  failed: readonly EndpointFailures[],
  rules: { disableAfterMs: number; circuit: CircuitRule },
): Promise<WorkerEndpoint[]> {
  if (failed.length === 0) return [];
  const { circuit } = rules;
  const iso = (date: Date) => date.toISOString();
  // Every expression reads the row as it was before this update (`x`, locked), with the batch's failures (`f`).
  const opens = sql<boolean>`((x.circuit_open_until is null and x.consecutive_failures + f.failures >= ${circuit.opensAfter})
    or x.circuit_open_until <= f.last_at)`;
  const coolDown = sql`(case when x.circuit_open_until is null then ${milliseconds(circuit.firstCoolDownMs)}
    else least(${milliseconds(circuit.maxCoolDownMs)}, 2 * (x.circuit_open_until - x.circuit_opened_at)) end)`;
  // Time held by the plan (the worker has not yet seen the upgrade that ended it) is not failing time.
  const disables = sql<boolean>`(not x.disabled and coalesce(x.failing_since, f.first_at)
    + (case when x.plan_paused_at is null then interval '0' else greatest(interval '0', f.last_at - x.plan_paused_at) end)
    <= f.last_at - ${milliseconds(rules.disableAfterMs)})`;
  // `opened` is each endpoint's own verdict, read with its row locked: failures recorded by two
  // workers at the same instant must not both count as opening it.
  const { rows } = await sql<{ org_id: string; id: string; opened: boolean }>`
    with f as (
      select * from unnest(${failed.map((e) => e.orgId)}::uuid[], ${failed.map((e) => e.endpointId)}::uuid[],
                           ${failed.map((e) => e.failures)}::int[], ${failed.map((e) => iso(e.firstAt))}::timestamptz[],
                           ${failed.map((e) => iso(e.lastAt))}::timestamptz[]) as f (org_id, id, failures, first_at, last_at)
    ), before as (
      select x.org_id, x.id, f.failures, f.first_at, f.last_at, x.disabled as was_disabled,
             ${opens} as opens, ${coolDown} as cool_down, ${disables} as disables
      from webhook_endpoints x join f on f.org_id = x.org_id and f.id = x.id
      order by x.org_id, x.id
      for update of x
    )
    update webhook_endpoints w
    set failing_since = coalesce(w.failing_since, b.first_at),
        consecutive_failures = w.consecutive_failures + b.failures,
        circuit_opened_at = case when b.opens then b.last_at else w.circuit_opened_at end,
        circuit_open_until = case when b.opens then b.last_at + b.cool_down else w.circuit_open_until end,
        disabled = w.disabled or b.disables,
        disabled_reason = case when b.disables then 'failing' else w.disabled_reason end,
        updated_at = case when b.disables then b.last_at else w.updated_at end
    from before b
    where w.org_id = b.org_id and w.id = b.id
    returning w.org_id, w.id, b.opens and not b.was_disabled as opened
  `.execute(trx);
  return rows.filter((row) => row.opened).map((row) => ({ orgId: row.org_id, endpointId: row.id }));
}

/**
 * One failed attempt that started at `at` (markEndpointsFailed for one). True when it opened the
 * circuit.
 */
export async function markEndpointFailed(
  trx: EndpointsDb,
  endpoint: WorkerEndpoint,
  at: Date,
  rules: { disableAfterMs: number; circuit: CircuitRule },
): Promise<boolean> {
  const opened = await markEndpointsFailed(trx, [{ ...endpoint, failures: 1, firstAt: at, lastAt: at }], rules);
  return opened.length > 0;
}

/**
 * Keeps `plan_paused_at` in step with the organisations' plans (`plans`: those that include
 * webhooks): set at `now` on the endpoints of an organisation whose plan does not; cleared on
 * those whose plan does again, moving `failing_since` on by the time held, so that time never
 * counts toward the five-day disable. Reads every endpoint not yet held (with its organisation's
 * row, by key): the worker runs it every few seconds, not every pass.
 */
export async function trackPlanPauses(trx: EndpointsDb, plans: readonly string[], now: Date): Promise<void> {
  await sql`
    update webhook_endpoints w
    set plan_paused_at = ${now}
    where w.plan_paused_at is null and not ${organisationOnPlan(sql.ref('w.org_id'), plans)}
  `.execute(trx);
  await sql`
    update webhook_endpoints w
    set failing_since = w.failing_since + greatest(interval '0', ${now}::timestamptz - w.plan_paused_at),
        plan_paused_at = null
    where w.plan_paused_at is not null and ${organisationOnPlan(sql.ref('w.org_id'), plans)}
  `.execute(trx);
}
