/**
 * The one module that writes `clients`: every statement on the table is here, the hot ones
 * compiled once at start-up (server/db/prepared.ts).
 */
import { type Expression, type ExpressionBuilder, type Kysely, type RawBuilder, type SqlBool, sql, type Updateable } from 'kysely';
import { compiler, prepare } from '../db/prepared.js';
import { CLIENT_COLUMNS, type ClientRow, type ClientsTable, type Database, type Env, type NullableColumn } from '../db/schema.js';
import {
  claimAndStore,
  type KeyedStatementOutcome,
  type KeyedStatementParams,
  readKeyedStatement,
} from '../idempotency/idempotency.queries.js';
import type { DeletedFilter } from '../shared/spec-values.js';
import { afterPosition, type KeysetPosition, positionOf } from '../shared/keyset-cursor.js';
import type { Tenant } from '../shared/tenant.js';
import { type EventParams, insertEventForWritten } from '../events/events.queries.js';
import { afterSearchPosition, CLIENT_EVENTS, eventClientId, searchedText } from './client-search.queries.js';

function clientsOf(db: Kysely<Database>, tenant: Tenant) {
  return db.selectFrom('clients').where('org_id', '=', tenant.orgId).where('env', '=', tenant.env);
}

/**
 * The tenant, tested on a client found by its key. Written as `(…) is true`, which no index
 * serves, so that a lookup by id can only use the primary key, whatever the statistics say: with
 * the tenant's columns as index conditions, a planner on statistics older than a tenant's growth
 * (a new tenant before its first ANALYZE, or autovacuum off) chose a list index that starts with
 * them and walked every row of the tenant to find one, a read that grew with the tenant (the soak,
 * docs/performance.md).
 */
function ofTenant(orgId: unknown, env: unknown) {
  return sql<boolean>`(clients.org_id = ${orgId} and clients.env = ${env}) is true`;
}

/** The tenant's clients, each looked up by its key (ofTenant). */
function clientsByKeyOf(db: Kysely<Database>, tenant: Tenant) {
  return db.selectFrom('clients').where(ofTenant(tenant.orgId, tenant.env));
}

/** The columns of `clients`, in table order (server/db/schema.ts): what a client row is everywhere. */
const COLUMNS = Object.keys(CLIENT_COLUMNS) as (keyof ClientsTable)[];

interface ById {
  id: string;
  orgId: string;
  env: Env;
}

const findById = prepare('client_by_id', (p: ById) =>
  compiler.selectFrom('clients').select(COLUMNS).where('id', '=', p.id).where(ofTenant(p.orgId, p.env)),
);

/** `id` must be a UUID (the column's type). `forUpdate` locks the row until the transaction ends. */
export async function findClientById(
  db: Kysely<Database>,
  tenant: Tenant,
  id: string,
  options: { forUpdate?: boolean } = {},
): Promise<ClientRow | undefined> {
  if (options.forUpdate) return clientsByKeyOf(db, tenant).selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
  // The read of every GET by id: prepared once, nothing built per request.
  return (await findById(db, { id, orgId: tenant.orgId, env: tenant.env })).rows[0];
}

/** Columns a caller may write (server/clients/clients.mapper.ts maps the wire's fields to them). */
export type ClientValues = Updateable<Omit<ClientsTable, 'id' | 'org_id' | 'env' | 'created_at' | 'updated_at' | 'deleted_at'>>;

/** A new client row: every column but `deleted_at`, which a new client lacks; `metadata` as JSON text. */
export type NewClientRow = Omit<ClientRow, 'deleted_at' | 'metadata'> & { metadata: string };

/** Every column that a new client may leave out: it is null until written. */
export const ABSENT_CLIENT_VALUES = Object.fromEntries(
  Object.entries(CLIENT_COLUMNS).flatMap(([column, type]) => (type.endsWith(' null') && column !== 'deleted_at' ? [[column, null]] : [])),
) as { [C in Exclude<NullableColumn<typeof CLIENT_COLUMNS>, 'deleted_at'>]: null };

/** The columns a create writes; any column not listed gets its default. */
const INSERTED = COLUMNS.filter((column): column is keyof NewClientRow => column !== 'deleted_at');

/** Each inserted value with its column's type, for an `insert ... select` (whose types PostgreSQL cannot infer). */
const INSERTED_CASTS = INSERTED.map((column) => [column, sql.raw(CLIENT_COLUMNS[column].replace(/ null$/, ''))] as const);

/** The client and its event, as one statement. */
const insertOne = prepare('insert_client', (row: NewClientRow, event: EventParams) => {
  const client = compiler
    .insertInto('clients')
    .values(Object.fromEntries(INSERTED.map((column) => [column, row[column]])) as NewClientRow)
    .returning(sql<number>`1`.as('one'));
  return sql`with written as (${client}) ${insertEventForWritten(event)}`;
});

/** The client's insert, run only when `claimed` holds: what idempotency's one statement includes. */
function insertWhen(p: NewClientRow, claimed: RawBuilder<boolean>) {
  const values = compiler.selectNoFrom(INSERTED_CASTS.map(([column, type]) => sql`${p[column]}::${type}`.as(column))).where(claimed);
  return compiler.insertInto('clients').columns(INSERTED).expression(values).returning(sql<number>`1`.as('one'));
}

const insertOneWithKey = prepare('insert_client_with_key', (row: NewClientRow, event: EventParams, key: KeyedStatementParams) =>
  claimAndStore(key, (claimed) => insertWhen(row, claimed), insertEventForWritten(event)),
);

/**
 * Inserts a client computed in full by the service (its response needs nothing back), and its
 * event; with `claim`, its Idempotency-Key and the stored answer too, all as one statement (one
 * round trip, no explicit transaction; see claimAndStore).
 */
export async function insertClient(
  db: Kysely<Database>,
  row: NewClientRow,
  event: EventParams,
  claim?: KeyedStatementParams,
): Promise<KeyedStatementOutcome> {
  if (claim) return readKeyedStatement(insertOneWithKey(db, row, event, claim));
  await insertOne(db, row, event);
  return WRITTEN;
}

const WRITTEN: KeyedStatementOutcome = { kind: 'written' };

/**
 * The tenant's active clients, counted under a lock that the transaction holds to its end: two
 * writes for the plan's last place queue here, and the second counts the first's client.
 */
export async function countActiveClientsLocked(trx: Kysely<Database>, tenant: Tenant): Promise<number> {
  await sql`select pg_advisory_xact_lock(hashtextextended(${`clients:${tenant.orgId}:${tenant.env}`}, 0))`.execute(trx);
  const { n } = await clientsOf(trx, tenant)
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('deleted_at', 'is', null)
    .executeTakeFirstOrThrow();
  return Number(n);
}

/** The unique index that keeps an `externalId` to one client not deleted (per organisation and environment). */
const EXTERNAL_ID_INDEX = 'clients_external_id_idx';

/** Whether `error` is the database refusing a second client not deleted with the same externalId. */
export function isExternalIdTaken(error: unknown): boolean {
  const e = error as { code?: unknown; constraint?: unknown; message?: unknown } | null;
  return e?.code === '23505' && (e.constraint === EXTERNAL_ID_INDEX || String(e.message).includes(EXTERNAL_ID_INDEX));
}

/** The client not deleted that has `externalId`, other than `exceptId`. */
export async function findActiveClientIdByExternalId(
  db: Kysely<Database>,
  tenant: Tenant,
  externalId: string,
  exceptId?: string,
): Promise<string | undefined> {
  let query = clientsOf(db, tenant).select('id').where('external_id', '=', externalId).where('deleted_at', 'is', null);
  if (exceptId !== undefined) query = query.where('id', '<>', exceptId);
  return (await query.executeTakeFirst())?.id;
}

/**
 * Runs `write` (a change that may give a client an externalId another active client has) so that
 * the unique index's refusal does not end the transaction: inside a savepoint, rolled back to on
 * that refusal, which comes back as `taken`. Any other failure is thrown as it is.
 */
export async function guardingExternalId<T>(trx: Kysely<Database>, write: () => Promise<T>): Promise<{ written: T } | { taken: true }> {
  await sql`savepoint external_id`.execute(trx);
  try {
    const written = await write();
    await sql`release savepoint external_id`.execute(trx);
    return { written };
  } catch (error) {
    if (!isExternalIdTaken(error)) throw error;
    await sql`rollback to savepoint external_id`.execute(trx);
    return { taken: true };
  }
}

/**
 * The statement's own start time rather than now(): the row is locked before this statement
 * starts, so a change always gets a later time than the change it waited for (now() is when the
 * transaction began, which can be earlier).
 */
const statementTime = sql<Date>`statement_timestamp()`;

/**
 * Writes `values` (a non-empty set of columns). `updated_at` moves only when a value actually
 * differs (`is distinct from` compares as the column's type: numeric 120.5 equals "120.50").
 */
export async function updateClientRow(trx: Kysely<Database>, tenant: Tenant, id: string, values: ClientValues): Promise<ClientRow> {
  const columns = Object.keys(values) as (keyof ClientValues)[];
  const changed = sql`(${sql.join(columns.map((c) => sql.ref(c)))}) is distinct from (${sql.join(columns.map((c) => values[c]))})`;
  return trx
    .updateTable('clients')
    .set(values)
    .set({ updated_at: sql<Date>`case when ${changed} then ${statementTime} else updated_at end` })
    .where(ofTenant(tenant.orgId, tenant.env))
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** Deletes (softly) or restores; either moves `updated_at`, to the same instant as `deleted_at`. */
export async function setClientDeleted(trx: Kysely<Database>, tenant: Tenant, id: string, deleted: boolean): Promise<ClientRow> {
  return trx
    .updateTable('clients')
    .set({ deleted_at: deleted ? statementTime : null, updated_at: statementTime })
    .where(ofTenant(tenant.orgId, tenant.env))
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

export interface ClientListFilter {
  /** Rows to return at most. */
  limit: number;
  /** Start after this row (exclusive). */
  after?: KeysetPosition | undefined;
  /** Case-insensitive substring of name, contact name, e-mail or billing e-mail. */
  search?: string | undefined;
  /** RFC 3339 text, compared by PostgreSQL (a JS Date would drop the microseconds). */
  updatedSince?: string | undefined;
  deleted: DeletedFilter;
  /** Exact matches, each served by an index (externalId's unique one, email's b-tree in client_search, metadata's GIN). */
  externalId?: string | undefined;
  email?: string | undefined;
  taxNumber?: string | undefined;
  /** Every key with exactly its value (jsonb containment). */
  metadata?: Record<string, string> | undefined;
}

export type ListedClientRow = ClientRow & { position: string };

/** `%`, `_` and the escape character itself match literally. */
function likeSubstring(text: string): string {
  return `%${text.replace(/[\\%_]/g, '\\$&')}%`;
}

/**
 * Whether the trigram index can narrow a search for `text`. pg_trgm makes trigrams of the
 * letters and digits of each word, padded at word boundaries; from a `%text%` pattern it can take
 * a useful one only out of three letters or digits in a row. Without them it finds nothing to
 * look up and the search reads every row of the organisation (listClientRowsExamining bounds that).
 */
export function searchUsesIndex(text: string): boolean {
  return /[\p{L}\p{Nd}]{3}/u.test(text);
}

const POSITION = positionOf('created_at');

/** The list's rows in its order from `after`, before any filter that no index of the list can serve. */
function listedInOrder(
  db: Kysely<Database>,
  tenant: Tenant,
  filter: Pick<ClientListFilter, 'deleted' | 'after' | 'externalId' | 'email' | 'taxNumber' | 'metadata'>,
  from: typeof clientsOf = clientsOf,
) {
  let query = from(db, tenant);
  if (filter.externalId !== undefined) query = query.where('external_id', '=', filter.externalId);
  if (filter.email !== undefined) query = query.where('email', '=', filter.email);
  if (filter.taxNumber !== undefined) query = query.where('tax_number', '=', filter.taxNumber);
  if (filter.metadata !== undefined) query = query.where(sql<boolean>`metadata @> ${JSON.stringify(filter.metadata)}::jsonb`);
  if (filter.deleted === 'exclude') query = query.where('deleted_at', 'is', null);
  if (filter.deleted === 'only') query = query.where('deleted_at', 'is not', null);
  if (filter.after) query = query.where(afterPosition(filter.after, 'created_at', 'id'));
  return query;
}

/** Whether a filter has conditions that no index of the list serves (`search`, `updatedSince`). */
const filtersRows = (filter: ClientListFilter) => filter.search !== undefined || filter.updatedSince !== undefined;

/** The conditions of `search` and `updatedSince`, as one expression. */
function matches(filter: ClientListFilter) {
  return (eb: ExpressionBuilder<Database, 'clients'>) => {
    const conditions: Expression<SqlBool>[] = [];
    if (filter.updatedSince !== undefined) conditions.push(eb('updated_at', '>=', sql<Date>`${filter.updatedSince}::timestamptz`));
    if (filter.search !== undefined) {
      const pattern = likeSubstring(filter.search);
      conditions.push(
        eb.or([
          eb('name', 'ilike', pattern),
          eb('contact_name', 'ilike', pattern),
          eb('email', 'ilike', pattern),
          eb('billing_email', 'ilike', pattern),
        ]),
      );
    }
    return eb.and(conditions);
  };
}

/**
 * Newest first, by keyset: `(created_at, id)` below the last row of the page before. Each row
 * carries its exact `position` (created_at with microseconds, in UTC), for the next cursor.
 */
export async function listClientRows(db: Kysely<Database>, tenant: Tenant, filter: ClientListFilter): Promise<ListedClientRow[]> {
  return listClientRowsQuery(db, tenant, filter).execute();
}

/** The query of listClientRows, unexecuted (the benchmark EXPLAINs it). */
export function listClientRowsQuery(db: Kysely<Database>, tenant: Tenant, filter: ClientListFilter) {
  if (usesSearchTable(filter)) return searchedRowsQuery(db, tenant, filter);
  const listed = listedInOrder(db, tenant, filter);
  return (filtersRows(filter) ? listed.where(matches(filter)) : listed)
    .selectAll()
    .select(POSITION.as('position'))
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(filter.limit);
}

/**
 * Whether the list is looked up in the search table (server/clients/client-search.queries.ts): a
 * `q` its trigram index can narrow, or the exact `email` (its b-tree on the e-mail).
 */
function usesSearchTable(filter: ClientListFilter): boolean {
  return (filter.search !== undefined && searchUsesIndex(filter.search)) || filter.email !== undefined;
}

/**
 * listClientRows through the search table, exact at once (no lag): the page is the newest matches
 * among
 *   - `indexed`: the tenant's rows of client_search that match, found through its trigram index,
 *     but for the clients in `tail`; for those the search table's text is current (their last
 *     change was indexed), so the test is exact, and the page's order and bound apply there;
 *   - `fresh`: the clients in `tail`, those with an event after the indexer's position (changed
 *     since it passed: created a millisecond ago, updated, deleted, restored), tested on their live
 *     rows. The feed's index reads them; their number is the indexer's lag for this tenant.
 * One statement, one snapshot: the position, the search table and the live rows agree. Filters the
 * search table does not hold (`updatedSince`, `externalId`, `taxNumber`, `metadata`) are tested on
 * the live row of each indexed match.
 */
function searchedRowsQuery(db: Kysely<Database>, tenant: Tenant, filter: ClientListFilter) {
  const pattern = filter.search === undefined ? undefined : likeSubstring(filter.search);
  const onLiveRowOnly =
    filter.updatedSince !== undefined || filter.externalId !== undefined || filter.taxNumber !== undefined || filter.metadata !== undefined;
  return (
    db
      .with('tail', (qb) =>
        qb
          .selectFrom('events')
          .select(eventClientId('events').as('id'))
          .distinct()
          .where('events.org_id', '=', tenant.orgId)
          .where('events.env', '=', tenant.env)
          .where(afterSearchPosition('events'))
          .where('events.type', 'like', CLIENT_EVENTS),
      )
      .with('indexed', (qb) => {
        let query = qb
          .selectFrom('client_search as s')
          .select('s.client_id as id')
          .where('s.org_id', '=', tenant.orgId)
          .where('s.env', '=', tenant.env)
          // The tail as one array, read once: a join would scan it again for every row of a common term's walk.
          // (A null in it would make every row's test null: array_remove keeps a malformed event from hiding the page.)
          .where(sql<boolean>`not (s.client_id = any (array_remove(array(select id from tail), null)))`);
        // The joined text through its trigram index, then each field: a term across two fields'
        // boundary matches the joined text only.
        if (pattern !== undefined)
          query = query
            .where(sql<boolean>`${searchedText('s')} ilike ${pattern}`)
            .where((eb) =>
              eb.or([
                eb('s.name', 'ilike', pattern),
                eb('s.contact_name', 'ilike', pattern),
                eb('s.email', 'ilike', pattern),
                eb('s.billing_email', 'ilike', pattern),
              ]),
            );
        if (filter.email !== undefined) query = query.where('s.email', '=', filter.email);
        if (filter.deleted === 'exclude') query = query.where('s.deleted', '=', false);
        if (filter.deleted === 'only') query = query.where('s.deleted', '=', true);
        if (filter.after)
          query = query.where(sql<boolean>`(s.created_at, s.client_id) < (${filter.after.at}::timestamptz, ${filter.after.id}::uuid)`);
        if (onLiveRowOnly) {
          const live = listedInOrder(db, tenant, { ...filter, deleted: 'include', after: undefined }, clientsByKeyOf).where(
            matches({ ...filter, search: undefined }),
          );
          query = query.where(sql<boolean>`exists (${live.select(sql`1`.as('one')).where(sql<boolean>`clients.id = s.client_id`)})`);
        }
        return query.orderBy('s.created_at', 'desc').orderBy('s.client_id', 'desc').limit(filter.limit);
      })
      // Each client of the tail looked up by its key (a lateral join, the tenant tested on the row
      // found): never a scan of the tenant's rows. `offset 0` keeps the planner from flattening the
      // lookup into a join it may turn around (with a new tenant's statistics not yet analysed it
      // walked the tenant's rows once per tail row).
      .with('fresh', (qb) =>
        qb
          .selectFrom(sql<{ id: string }>`(select id from tail)`.as('t'))
          .innerJoinLateral(
            listedInOrder(db, tenant, filter, clientsByKeyOf)
              .where(sql<boolean>`clients.id = t.id`)
              .where(matches(filter))
              .select(['id', 'created_at'])
              .offset(0)
              .as('c'),
            (join) => join.onTrue(),
          )
          .select('c.id')
          .orderBy('c.created_at', 'desc')
          .orderBy('c.id', 'desc')
          .limit(filter.limit),
      )
      // The page's ids, worked out once: without the fence the planner may run `indexed` and `fresh`
      // again for every row of the tenant it reads (seen with statistics not yet analysed: docs/performance.md).
      .with(
        (cte) => cte('matched').materialized(),
        (qb) => qb.selectFrom('indexed').select('id').unionAll(qb.selectFrom('fresh').select('id')),
      )
      // The page's rows, each by its key.
      .selectFrom('clients')
      .where(ofTenant(tenant.orgId, tenant.env))
      .where(sql<boolean>`id in (select id from matched)`)
      .selectAll('clients')
      .select(POSITION.as('position'))
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .limit(filter.limit)
  );
}

export interface ExaminedRows {
  /** The matches among the rows examined, in the list's order: at most `filter.limit`. */
  rows: ListedClientRow[];
  /** The last row examined, when the bound stopped the walk (more rows may follow it). */
  lastExamined: KeysetPosition | undefined;
}

/**
 * listClientRows for a search no index can narrow: walks at most `examineAtMost` rows of the
 * list's own index from `after` (the organisation's rows in the `deleted` filter, newest first),
 * tests each against `search` and `updatedSince`, and stops there, however many rows the
 * organisation has. One statement: the walk numbers the rows it reads, and the last one, when
 * the walk got that far, comes back beside the matches so the next page can start after it.
 */
export async function listClientRowsExamining(
  db: Kysely<Database>,
  tenant: Tenant,
  filter: ClientListFilter,
  examineAtMost: number,
): Promise<ExaminedRows> {
  const found = await listClientRowsExaminingQuery(db, tenant, filter, examineAtMost).execute();
  const rows: ListedClientRow[] = [];
  let lastExamined: KeysetPosition | undefined;
  for (const { matched, last_examined, ...row } of found) {
    if (matched) rows.push(row);
    if (last_examined) lastExamined = { at: row.position, id: row.id };
  }
  return { rows, lastExamined };
}

/** The query of listClientRowsExamining, unexecuted (tests and the benchmark EXPLAIN it). */
export function listClientRowsExaminingQuery(db: Kysely<Database>, tenant: Tenant, filter: ClientListFilter, examineAtMost: number) {
  const examined = listedInOrder(db, tenant, filter)
    .selectAll()
    .select(sql<number>`row_number() over (order by created_at desc, id desc)`.as('seen'))
    .select((eb) => matches(filter)(eb).as('matched'))
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(examineAtMost);
  // The matches and, beside them, the last row examined. The page continues after that row only
  // when fewer than `limit` rows match (`limit` is the page's size plus one), and then those and
  // it fit in `limit`; with more matches it is not needed, and, last in the order, it is left out.
  return db
    .selectFrom(examined.as('examined'))
    .select([...COLUMNS, 'matched', POSITION.as('position'), sql<boolean>`seen = ${examineAtMost}`.as('last_examined')])
    .where((eb) => eb.or([eb.ref('matched'), eb('seen', '=', examineAtMost)]))
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(filter.limit);
}
