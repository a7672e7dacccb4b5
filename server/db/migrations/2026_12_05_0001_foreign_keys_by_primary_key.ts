import { sql, type Kysely } from 'kysely';

/**
 * Foreign keys checked through the key they reference, whatever the statistics say.
 *
 * PostgreSQL checks a foreign key, for each row written, with a query of its own:
 * `select 1 from only events x where org_id = $1 and id = $2 for key share of x`, planned with the
 * row's values. When a tenant's rows have grown since the table was last analysed (a new tenant;
 * any tenant while autovacuum is off, as on the soak's machine, or growing faster than it
 * analyses), the planner expects a single row for `org_id = <that tenant>`, and then every index
 * that starts with `org_id` costs exactly what the primary key costs. A tie, which another index
 * may win: the 30-minute soak found each delivery the webhook worker wrote checking its event
 * through `events_feed_idx (org_id, env, txid, seq)`, reading every event of the tenant in it and
 * testing `id` on each (37,916 rows passed over for one check, 1.7 ms; the fan-out's statement took
 * 60 to 190 ms). A primary key `(id, org_id)` would not help: still a tie.
 *
 * So the rule: in a table that another table's foreign key references by `(org_id, id)`, only the
 * referenced key starts with `org_id` alone; every other index puts another column first, which
 * makes it useless for the check (it would be read whole) and leaves the key as the one cheap
 * plan. Each rebuilt index keeps both tenant columns as equalities for the queries it served:
 * - `events_feed_idx` `(env, org_id, txid, seq)`: the feed, the worker's fan-out and its search for
 *   endpoints behind the feed, a recovery, the search's tail (each has `org_id` and `env`).
 * - `webhook_deliveries_event_idx` `(event_id, org_id)`: the delete an event's purge cascades to.
 * - The deliveries' unique key `(endpoint_id, event_id, org_id)`, named for its new columns (no code
 *   names it; `on conflict (org_id, endpoint_id, event_id)` finds a unique key by its set of
 *   columns, whatever their order): the recovery's test for a waiting delivery, the delete an
 *   endpoint's deletion cascades to.
 * - `webhook_endpoints_tenant_idx` `(env, org_id, created_at desc, id desc)`: the endpoints' list
 *   and count. Here the tie cost little: a tenant has at most 32 endpoints (16 per environment),
 *   and `id`, a column of this index, is tested on its entries without reading the rows. Changed
 *   all the same: it costs nothing on so small a table, and the rule then has no exception, so a
 *   test holds every foreign key to it (test/integration/foreign-key-plans.test.ts).
 * Partial indexes (`where status = 'pending'`, `where lease_id is not null`, `where plan_paused_at
 * is not null`) can never answer the check, and stay; so do the indexes of `webhook_attempts`,
 * which no foreign key references.
 *
 * Each new index is built beside the old one first (a build holds its table's writes, not its
 * reads), then the old ones are dropped and the new ones take their place: a drop's exclusive lock
 * lasts until the migration commits, so the drops come last. Safe to run again: an index already
 * in its new shape is left as it is.
 */

/** An index made again on other columns: built beside the old one, then put in its place. */
interface Rebuild {
  table: string;
  /** The index (or unique constraint) as it is, dropped. */
  from: string;
  /** Its name afterwards: the same, but for a unique constraint named after its columns. */
  to: string;
  /** As pg_get_indexdef writes them. */
  columns: string;
  /** A unique constraint rather than an index. */
  unique?: boolean;
}

/** Each index this migration changes: its table, and its name and columns before and after. */
const REORDERED: { table: string; name: [string, string]; columns: [string, string]; unique?: boolean }[] = [
  { table: 'events', name: ['events_feed_idx', 'events_feed_idx'], columns: ['org_id, env, txid, seq', 'env, org_id, txid, seq'] },
  {
    table: 'webhook_deliveries',
    name: ['webhook_deliveries_event_idx', 'webhook_deliveries_event_idx'],
    columns: ['org_id, event_id', 'event_id, org_id'],
  },
  {
    table: 'webhook_deliveries',
    name: ['webhook_deliveries_org_id_endpoint_id_event_id_key', 'webhook_deliveries_endpoint_id_event_id_org_id_key'],
    columns: ['org_id, endpoint_id, event_id', 'endpoint_id, event_id, org_id'],
    unique: true,
  },
  {
    table: 'webhook_endpoints',
    name: ['webhook_endpoints_tenant_idx', 'webhook_endpoints_tenant_idx'],
    columns: ['org_id, env, created_at DESC, id DESC', 'env, org_id, created_at DESC, id DESC'],
  },
];

/** The rebuilds that take each index from its shape `from` (0: before, 1: after) to the other. */
const rebuildsFrom = (from: 0 | 1): Rebuild[] =>
  REORDERED.map(({ table, name, columns, unique }) => ({
    table,
    from: name[from],
    to: name[1 - from]!,
    columns: columns[1 - from]!,
    ...(unique && { unique }),
  }));

// biome-ignore lint/suspicious/noExplicitAny: any database's schema
type Db = Kysely<any>;

/** Whether `to` already is the index `rebuild` makes (a migration run again). */
async function done(db: Db, rebuild: Rebuild): Promise<boolean> {
  const { rows } = await sql<{ definition: string | null }>`select pg_get_indexdef(to_regclass(${rebuild.to})) as definition`.execute(db);
  return rows[0]?.definition?.endsWith(`(${rebuild.columns})`) ?? false;
}

const building = (rebuild: Rebuild) => sql.id(`${rebuild.to}_rebuilt`);

async function build(db: Db, rebuild: Rebuild): Promise<void> {
  await sql`drop index if exists ${building(rebuild)}`.execute(db);
  await sql`
    create ${sql.raw(rebuild.unique ? 'unique ' : '')}index ${building(rebuild)}
    on ${sql.id(rebuild.table)} (${sql.raw(rebuild.columns)})`.execute(db);
}

async function replace(db: Db, rebuild: Rebuild): Promise<void> {
  if (rebuild.unique) {
    await sql`alter table ${sql.id(rebuild.table)} drop constraint if exists ${sql.id(rebuild.from)}`.execute(db);
    // The index takes the constraint's name.
    await sql`alter table ${sql.id(rebuild.table)} add constraint ${sql.id(rebuild.to)} unique using index ${building(rebuild)}`.execute(
      db,
    );
  } else {
    await sql`drop index if exists ${sql.id(rebuild.from)}`.execute(db);
    await sql`alter index ${building(rebuild)} rename to ${sql.id(rebuild.to)}`.execute(db);
  }
}

async function rebuildAll(db: Db, rebuilds: Rebuild[]): Promise<void> {
  const pending: Rebuild[] = [];
  for (const rebuild of rebuilds) if (!(await done(db, rebuild))) pending.push(rebuild);
  for (const rebuild of pending) await build(db, rebuild);
  for (const rebuild of pending) await replace(db, rebuild);
}

export async function up(db: Kysely<unknown>): Promise<void> {
  await rebuildAll(db, rebuildsFrom(0));
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await rebuildAll(db, rebuildsFrom(1));
}
