/**
 * The one module that writes `webhook_endpoints`.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';

// ---------------------------------------------------------------------------------------------
// The operations' statements (POST/GET/PATCH/DELETE /webhook-endpoints, rotate-secret).
// ---------------------------------------------------------------------------------------------

export type EndpointsDb = Kysely<Database>;

// ---------------------------------------------------------------------------------------------
//
//
//
//
//
// ---------------------------------------------------------------------------------------------
// The delivery worker's statements (server/webhooks/worker.ts): its place in the feed, and what
// its deliveries' outcomes do to the endpoint (failingSince, disabled after five days).
// ---------------------------------------------------------------------------------------------

/**
 * Locks up to `limit` enabled endpoints that have events to fan out (after their place in the
 * feed, below the horizon), skipping those another worker holds: two processes never fan out one
 * endpoint at once. Endpoints with nothing new are not taken, and the furthest behind go first, so
 * a batch never starves the rest.
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
export async function advanceEndpointFeed(
  trx: EndpointsDb,
  endpoint: { orgId: string; endpointId: string },
  to: { txid: string; seq: string },
) {
  await trx
    .updateTable('webhook_endpoints')
    .set({ feed_txid: to.txid, feed_seq: to.seq })
    .where('org_id', '=', endpoint.orgId)
    .where('id', '=', endpoint.endpointId)
    .execute();
}

/** A delivery succeeded: the endpoint is no longer failing. */
export async function markEndpointSucceeded(trx: EndpointsDb, endpoint: { orgId: string; endpointId: string }) {
  await trx
    .updateTable('webhook_endpoints')
    .set({ failing_since: null })
    .where('org_id', '=', endpoint.orgId)
    .where('id', '=', endpoint.endpointId)
    .where('failing_since', 'is not', null)
    .execute();
}

/**
 * An attempt failed at `at`: the endpoint is failing since its first failure after its last
 * success, and once that is `disableAfterMs` ago it is disabled (`disabledReason: failing`), which
 * stops its deliveries until someone enables it again. The first statement locks the row, so the
 * second decides on what it read.
 */
export async function markEndpointFailed(
  trx: EndpointsDb,
  endpoint: { orgId: string; endpointId: string },
  at: Date,
  disableAfterMs: number,
) {
  const failing = await trx
    .updateTable('webhook_endpoints')
    .set((eb) => ({ failing_since: eb.fn.coalesce('failing_since', eb.val(at)) }))
    .where('org_id', '=', endpoint.orgId)
    .where('id', '=', endpoint.endpointId)
    .returning(['failing_since', 'disabled'])
    .executeTakeFirst();
  if (!failing || failing.disabled || failing.failing_since === null) return;
  if (new Date(failing.failing_since).getTime() > at.getTime() - disableAfterMs) return;
  await trx
    .updateTable('webhook_endpoints')
    .set({ disabled: true, disabled_reason: 'failing', updated_at: at })
    .where('org_id', '=', endpoint.orgId)
    .where('id', '=', endpoint.endpointId)
    .execute();
}
