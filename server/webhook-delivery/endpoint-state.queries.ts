/**
 * The delivery worker's writes to `webhook_endpoints` (server/webhook-delivery/worker.ts): the
 * endpoint's place in the feed, what its deliveries' outcomes do to it (failingSince, the
 * circuit, disabled after five days), and the time an organisation's plan holds its endpoints.
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

/** Moves the endpoint's place in the feed to the last event the fan-out scanned. */
export async function advanceEndpointFeed(trx: EndpointsDb, endpoint: WorkerEndpoint, to: { txid: string; seq: string }) {
  await trx
    .updateTable('webhook_endpoints')
    .set({ feed_txid: to.txid, feed_seq: to.seq })
    .where('org_id', '=', endpoint.orgId)
    .where('id', '=', endpoint.endpointId)
    .execute();
}

/** A delivery succeeded: the endpoint is no longer failing, and its circuit is closed. */
export async function markEndpointSucceeded(trx: EndpointsDb, endpoint: WorkerEndpoint) {
  await trx
    .updateTable('webhook_endpoints')
    .set({ failing_since: null, consecutive_failures: 0, circuit_opened_at: null, circuit_open_until: null })
    .where('org_id', '=', endpoint.orgId)
    .where('id', '=', endpoint.endpointId)
    .where((eb) =>
      eb.or([eb('failing_since', 'is not', null), eb('consecutive_failures', '>', 0), eb('circuit_open_until', 'is not', null)]),
    )
    .execute();
}

/** What the circuit does after failures (server/webhook-delivery/schedule.ts). */
export interface CircuitRule {
  opensAfter: number;
  firstCoolDownMs: number;
  maxCoolDownMs: number;
}

const milliseconds = (ms: number) => sql<string>`(${ms} * interval '1 millisecond')`;

/**
 * An attempt that started at `at` failed. The endpoint is failing since its first failure after
 * its last success, and one more failure is counted in a row. The circuit opens when that count
 * reaches `opensAfter` (for the first cool-down), or again when the failure is the probe's (the
 * circuit was open and its time is over: twice the last cool-down, at most the longest); a
 * failure of an attempt that began before the circuit opened changes nothing more. Once the
 * endpoint has been failing for `disableAfterMs`, not counting the time its organisation's plan
 * has held it, it is disabled (`disabledReason: failing`), which stops its deliveries until someone
 * enables it again. The first statement locks the row, so the second decides on what it read.
 * True when this failure opened the circuit.
 */
export async function markEndpointFailed(
  trx: EndpointsDb,
  endpoint: WorkerEndpoint,
  at: Date,
  rules: { disableAfterMs: number; circuit: CircuitRule },
): Promise<boolean> {
  const { circuit } = rules;
  // Every expression reads the row as it was before this update.
  const opens = sql<boolean>`((circuit_open_until is null and consecutive_failures + 1 >= ${circuit.opensAfter}) or circuit_open_until <= ${at})`;
  const coolDown = sql`(case when circuit_open_until is null then ${milliseconds(circuit.firstCoolDownMs)}
    else least(${milliseconds(circuit.maxCoolDownMs)}, 2 * (circuit_open_until - circuit_opened_at)) end)`;
  // `opened` is this failure's own verdict, read with the row locked: two failures recorded at the
  // same instant (attempts of one claim) must not both count as opening it.
  const { rows } = await sql<{ failing_since: Date; plan_paused_at: Date | null; disabled: boolean; opened: boolean }>`
    update webhook_endpoints w
    set failing_since = coalesce(w.failing_since, ${at}),
        consecutive_failures = w.consecutive_failures + 1,
        circuit_opened_at = case when before.opens then ${at} else w.circuit_opened_at end,
        circuit_open_until = case when before.opens then ${at}::timestamptz + before.cool_down else w.circuit_open_until end
    from (
      select org_id, id, ${opens} as opens, ${coolDown} as cool_down
      from webhook_endpoints
      where org_id = ${endpoint.orgId} and id = ${endpoint.endpointId}
      for update
    ) before
    where w.org_id = before.org_id and w.id = before.id
    returning w.failing_since, w.plan_paused_at, w.disabled, before.opens as opened
  `.execute(trx);
  const failing = rows[0];
  if (!failing || failing.disabled) return false;
  // Time held by the plan (the worker has not yet seen the upgrade that ended it) is not failing time.
  const held = failing.plan_paused_at ? Math.max(0, at.getTime() - new Date(failing.plan_paused_at).getTime()) : 0;
  if (new Date(failing.failing_since).getTime() + held <= at.getTime() - rules.disableAfterMs) {
    await trx
      .updateTable('webhook_endpoints')
      .set({ disabled: true, disabled_reason: 'failing', updated_at: at })
      .where('org_id', '=', endpoint.orgId)
      .where('id', '=', endpoint.endpointId)
      .execute();
  }
  return failing.opened;
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
