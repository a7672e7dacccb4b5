/**
 * PostgreSQL's foreign-key checks go through the key they reference, whatever the statistics say
 * (server/db/migrations/2026_12_05_0001_foreign_keys_by_primary_key.ts). The soak's tenant, grown
 * since the tables were last analysed, had each delivery's check on its event walk the tenant's
 * events in `events_feed_idx`, which started with `org_id` as the primary key does and tied with
 * it. Here: statistics taken while a tenant had nothing, then thousands of its events and
 * deliveries; the checks' own statement is planned through the primary keys (both databases), and
 * rows written through the foreign keys read no other index of the referenced tables (PostgreSQL,
 * where a new session's first checks are planned with their values). The rule the migration keeps
 * is checked on the catalog for every foreign key, and its down and up are run.
 */
import { randomUUID } from 'node:crypto';
import { CompiledQuery, sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as migration from '../../server/db/migrations/2026_12_05_0001_foreign_keys_by_primary_key.js';
import { queueRecovery, queueRedelivery } from '../../server/webhook-delivery/deliveries.queries.js';
import { createTestDatabase, type TestDatabase, usingPostgres } from '../support/database.js';
import { planNodes } from '../support/plans.js';

/** The statement PostgreSQL runs to check a row's foreign key to `table` by `(org_id, id)` (ri_triggers.c). */
function foreignKeyCheck(table: string): string {
  return `SELECT 1 FROM ONLY "public"."${table}" x WHERE "org_id" OPERATOR(pg_catalog.=) $1 AND "id" OPERATOR(pg_catalog.=) $2 FOR KEY SHARE OF x`;
}

/** The referenced tables and their keys. */
const REFERENCED = [
  { table: 'events', key: 'events_pkey' },
  { table: 'webhook_endpoints', key: 'webhook_endpoints_pkey' },
  { table: 'webhook_deliveries', key: 'webhook_deliveries_pkey' },
];

let database: TestDatabase;
let grown: { orgId: string; endpointIds: string[]; eventId: string };

async function insertOrganisation(name: string): Promise<string> {
  const { rows } = await sql<{ id: string }>`insert into organisations (name, plan) values (${name}, 'studio') returning id`.execute(
    database.db,
  );
  return rows[0]!.id;
}

async function insertEndpoints(orgId: string, count: number): Promise<string[]> {
  const { rows } = await sql<{ id: string }>`
    insert into webhook_endpoints (org_id, env, id, url, enabled_events, secret, feed_txid, created_at, updated_at)
    select ${orgId}::uuid, 'test', gen_random_uuid(), 'https://hooks.example.test/' || i, '{*}', 'sealed', pg_current_xact_id(), now(), now()
    from generate_series(1, ${count}::int) as i
    returning id`.execute(database.db);
  return rows.map((row) => row.id);
}

/** `count` events of the tenant, and a delivery of each to `endpointId`. */
async function insertEventsAndDeliveries(orgId: string, endpointId: string, count: number): Promise<void> {
  await sql`
    insert into events (org_id, env, id, type, created_at, data)
    select ${orgId}::uuid, 'test', gen_random_uuid(), 'client.created', now(), '{}' from generate_series(1, ${count}::int)`.execute(
    database.db,
  );
  await sql`
    insert into webhook_deliveries (org_id, id, endpoint_id, event_id, next_attempt_at, created_at)
    select e.org_id, gen_random_uuid(), ${endpointId}::uuid, e.id, now(), now() from events e where e.org_id = ${orgId}::uuid`.execute(
    database.db,
  );
}

beforeAll(async () => {
  database = await createTestDatabase();
  // As on the soak's machine: no table is analysed but when someone says so.
  for (const table of ['events', 'webhook_endpoints', 'webhook_deliveries', 'webhook_attempts']) {
    await sql`alter table ${sql.id(table)} set (autovacuum_enabled = false)`.execute(database.db);
  }
  // Established tenants, analysed: one with thousands of events and deliveries, 400 with a few
  // endpoints each (a table of a handful of rows is read whole, whatever its indexes). The new one
  // has only its organisation's row then.
  await sql`
    with tenant as (insert into organisations (name, plan) select 'Tenant ' || n, 'pro' from generate_series(1, 400) as n returning id)
    insert into webhook_endpoints (org_id, env, id, url, enabled_events, secret, feed_txid, created_at, updated_at)
    select t.id, 'test', gen_random_uuid(), 'https://hooks.example.test/' || i, '{*}', 'sealed', pg_current_xact_id(), now(), now()
    from tenant t cross join generate_series(1, 5) as i`.execute(database.db);
  const established = await insertOrganisation('Established');
  const [endpoint] = await insertEndpoints(established, 3);
  await insertEventsAndDeliveries(established, endpoint!, 3000);
  const grownId = await insertOrganisation('Grown since');
  for (const table of ['events', 'webhook_endpoints', 'webhook_deliveries', 'webhook_attempts']) {
    await sql`analyze ${sql.id(table)}`.execute(database.db);
  }
  // Then the new tenant's first minutes: its endpoints, thousands of events and deliveries.
  const endpointIds = await insertEndpoints(grownId, 16);
  await insertEventsAndDeliveries(grownId, endpointIds[0]!, 5000);
  const { rows } = await sql<{ id: string }>`select id from events where org_id = ${grownId} offset 2500 limit 1`.execute(database.db);
  grown = { orgId: grownId, endpointIds, eventId: rows[0]!.id };
});
afterAll(() => database?.close());

/**
 * For each foreign key by `(org_id, …)`: the key it references, and the other indexes of that table
 * (partial ones aside: they cannot answer the check) that start with `org_id` as the key does.
 */
async function foreignKeys(): Promise<{ foreignKey: string; key: string; competitors: string[] }[]> {
  const { rows } = await sql<{ foreign_key: string; key: string; competitors: string[] }>`
    select c.conname as foreign_key, k.relname as key,
           array(select i.relname::text from pg_index x join pg_class i on i.oid = x.indexrelid
                 where x.indrelid = c.confrelid and x.indexrelid <> c.conindid and x.indpred is null
                   and x.indkey[0] = c.confkey[1]
                 order by 1) as competitors
    from pg_constraint c
    join pg_class k on k.oid = c.conindid
    join pg_attribute a on a.attrelid = c.confrelid and a.attnum = c.confkey[1]
    where c.contype = 'f' and a.attname = 'org_id'
    order by 1`.execute(database.db);
  return rows.map((row) => ({ foreignKey: row.foreign_key, key: row.key, competitors: row.competitors }));
}

describe('the rule', () => {
  it('leaves the referenced key the only index that starts with org_id, for every foreign key by (org_id, …)', async () => {
    expect(await foreignKeys()).toEqual([
      { foreignKey: 'webhook_attempts_org_id_delivery_id_fkey', key: 'webhook_deliveries_pkey', competitors: [] },
      { foreignKey: 'webhook_deliveries_org_id_endpoint_id_fkey', key: 'webhook_endpoints_pkey', competitors: [] },
      { foreignKey: 'webhook_deliveries_org_id_event_id_fkey', key: 'events_pkey', competitors: [] },
    ]);
  });
});

describe('a tenant grown since the last ANALYZE', () => {
  it('has each foreign-key check planned through the primary key, both columns its conditions', async () => {
    const ids = {
      events: grown.eventId,
      webhook_endpoints: grown.endpointIds[7]!,
      webhook_deliveries: (
        await sql<{ id: string }>`select id from webhook_deliveries where org_id = ${grown.orgId} offset 2500 limit 1`.execute(database.db)
      ).rows[0]!.id,
    };
    const plans = [];
    for (const { table } of REFERENCED) {
      const { rows } = await database.db.executeQuery<Record<string, unknown>>(
        CompiledQuery.raw(`explain (format json) ${foreignKeyCheck(table)}`, [grown.orgId, ids[table as keyof typeof ids]]),
      );
      const reads = planNodes(rows).filter((node) => node['Relation Name'] === table);
      plans.push({
        table,
        reads: reads.map((node) => ({
          index: node['Index Name'] ?? node['Node Type'],
          bothColumnsSought: /\(org_id = .*\) AND \(id = /.test(node['Index Cond'] ?? ''),
          filter: node.Filter ?? null,
        })),
      });
    }
    // On the old indexes: events_feed_idx, `org_id` its only condition, `id` a filter over the tenant's events.
    expect(plans).toEqual(REFERENCED.map(({ table, key }) => ({ table, reads: [{ index: key, bothColumnsSought: true, filter: null }] })));
  });

  it.runIf(usingPostgres)('reads no other index of the referenced tables when deliveries and attempts are written', async () => {
    const events = await sql<{ id: string }>`
      select id from events where org_id = ${grown.orgId} order by id limit 200`.execute(database.db);
    const eventIds = events.rows.map((row) => row.id);
    const deliveryIds = eventIds.map(() => randomUUID());
    // A session of its own: the first checks of each foreign key in a session are planned with the
    // row's values (later ones may reuse a generic plan), as each new connection of the worker's pool.
    const session = new pg.Client({ connectionString: database.url });
    await session.connect();
    try {
      await session.query('begin');
      await session.query(
        `insert into webhook_deliveries (org_id, id, endpoint_id, event_id, next_attempt_at, created_at)
         select $1, d, $2, e, now(), now() from unnest($3::uuid[], $4::uuid[]) as t (d, e)`,
        [grown.orgId, grown.endpointIds[1], deliveryIds, eventIds],
      );
      await session.query(
        `insert into webhook_attempts (org_id, id, delivery_id, endpoint_id, event_id, event_type, attempt, attempted_at, duration_ms, succeeded)
         select $1, gen_random_uuid(), d, $2, e, 'client.created', 1, now(), 12, true from unnest($3::uuid[], $4::uuid[]) as t (d, e)`,
        [grown.orgId, grown.endpointIds[1], deliveryIds, eventIds],
      );
      // This transaction's index scans, not yet reported to the statistics views.
      const { rows } = await session.query<{ index: string; scans: number }>(
        `select i.relname as index, pg_stat_get_xact_numscans(i.oid)::int as scans
         from pg_index x join pg_class i on i.oid = x.indexrelid join pg_class t on t.oid = x.indrelid
         where t.relname = any ($1::text[])
         order by 1`,
        [REFERENCED.map((r) => r.table)],
      );
      await session.query('rollback');
      const scans = Object.fromEntries(rows.map((row) => [row.index, row.scans]));
      // One probe of the key per row checked; on the old indexes the first checks of each session
      // read events_feed_idx (and a competitor on webhook_deliveries) instead.
      const expected = Object.fromEntries(
        rows.map((row) => [row.index, REFERENCED.some((r) => r.key === row.index) ? eventIds.length : 0]),
      );
      expect(scans).toEqual(expected);
    } finally {
      await session.end();
    }
  });

  it.runIf(usingPostgres)(
    "has a recovery probe each event's delivery by its key, not walk the endpoint's deliveries per event",
    async () => {
      // Every one of the tenant's 5,000 events has a delivery to this endpoint waiting: nothing to queue.
      const endpoint = { orgId: grown.orgId, env: 'test' as const, endpointId: grown.endpointIds[0]!, enabledEvents: ['*'] };
      const window = { since: new Date(Date.now() - 3_600_000), until: new Date(Date.now() + 60_000) };
      const read = await database.db.transaction().execute(async (trx) => {
        // Index entries read on webhook_deliveries by this session, not yet reported to the views
        // (on PostgreSQL 15 they may include earlier transactions' not yet flushed: hence before and after).
        const entriesRead = async () =>
          (
            await sql<{ entries: number }>`
            select coalesce(sum(pg_stat_get_xact_tuples_returned(x.indexrelid)), 0)::int as entries
            from pg_index x where x.indrelid = 'webhook_deliveries'::regclass`.execute(trx)
          ).rows[0]!.entries;
        const before = await entriesRead();
        const queued = await queueRecovery(trx, { ...endpoint, createdAt: window.since }, window, new Date());
        expect(queued).toEqual({ queued: 0, hasMore: false });
        return (await entriesRead()) - before;
      });
      // One probe per event, each finding its one delivery. As a `not exists` on these statistics
      // (one event expected) it read every delivery of the endpoint again for each event: millions.
      expect(read).toBeLessThanOrEqual(5000);
    },
  );

  it('still finds a delivery by its tenant, endpoint and event: on conflict infers the reordered unique key', async () => {
    const { rows } = await sql<{ id: string }>`select id from events where org_id = ${grown.orgId} limit 1`.execute(database.db);
    const redelivery = { orgId: grown.orgId, eventId: rows[0]!.id, endpointIds: [grown.endpointIds[2]!] };
    expect(await queueRedelivery(database.db, redelivery, new Date())).toEqual(redelivery.endpointIds);
    // Pending already: left as it is.
    expect(await queueRedelivery(database.db, redelivery, new Date())).toEqual([]);
  });
});

describe('the migration', () => {
  it('down puts the old indexes back, up the new ones again, and up once more changes nothing', async () => {
    const uniqueKeys = async () =>
      (
        await sql<{ name: string }>`
          select conname as name from pg_constraint where conrelid = 'webhook_deliveries'::regclass and contype = 'u'`.execute(database.db)
      ).rows.map((row) => row.name);
    const indexes = async () =>
      (
        await sql<{ name: string; oid: string }>`
          select indexrelname as name, indexrelid::text as oid from pg_stat_user_indexes
          where relname in ('events', 'webhook_endpoints', 'webhook_deliveries') order by 1`.execute(database.db)
      ).rows;

    await migration.down(database.db as never);
    expect(await foreignKeys()).toEqual([
      {
        foreignKey: 'webhook_attempts_org_id_delivery_id_fkey',
        key: 'webhook_deliveries_pkey',
        competitors: ['webhook_deliveries_event_idx', 'webhook_deliveries_org_id_endpoint_id_event_id_key'],
      },
      {
        foreignKey: 'webhook_deliveries_org_id_endpoint_id_fkey',
        key: 'webhook_endpoints_pkey',
        competitors: ['webhook_endpoints_tenant_idx'],
      },
      { foreignKey: 'webhook_deliveries_org_id_event_id_fkey', key: 'events_pkey', competitors: ['events_feed_idx'] },
    ]);
    expect(await uniqueKeys()).toEqual(['webhook_deliveries_org_id_endpoint_id_event_id_key']);

    await migration.up(database.db as never);
    expect((await foreignKeys()).flatMap((fk) => fk.competitors)).toEqual([]);
    expect(await uniqueKeys()).toEqual(['webhook_deliveries_endpoint_id_event_id_org_id_key']);
    const built = await indexes();
    expect(built.filter((index) => index.name.endsWith('_rebuilt'))).toEqual([]);

    await migration.up(database.db as never);
    expect(await indexes()).toEqual(built);
  });
});
