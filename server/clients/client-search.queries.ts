/**
 * The one module that writes `client_search` and `client_search_position`: the searched text of
 * each client (what `q` and `email` look up, through its trigram index and its e-mail's b-tree),
 * kept off the request path by the search indexer (server/clients/search-indexer.ts) from the
 * outbox.
 *
 * The indexer reads the feed across every tenant in `(txid, seq)` order, only below the oldest
 * transaction still running (as the feed does: server/events/events.queries.ts), so no event ever
 * lands behind its position. For each batch it copies the touched clients' live rows (not the
 * events' data: a later change is then already there, and indexed once more when its own event
 * comes, which changes nothing) and moves the position, in one statement. A search answers from
 * this table plus the tenant's clients with events after the position (clients.queries.ts).
 */
import { type Kysely, type RawBuilder, sql } from 'kysely';
import type { Database } from '../db/schema.js';

/** The events about a client (`data.object` is the client); others (contacts, test deliveries) only move the position. */
export const CLIENT_EVENTS = 'client.%';

const UUID_TEXT = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';

/**
 * The client an event of `events` (an alias of the table) is about: its `object_id` column
 * (2026_12_09_0001_events_object_id), read without touching the event's JSON. An event written
 * before that column has none; its object's id is read from the JSON then, or null when that is not
 * a UUID: one malformed event (a hand-written row, an import) is passed over instead of failing its
 * batch again and again, which would stop the indexer for good and let every search's tail grow.
 */
export function eventClientId(events: string): RawBuilder<string | null> {
  const id = sql`json_extract_path_text(${sql.ref(`${events}.data`)}, 'object', 'id')`;
  return sql<string | null>`coalesce(${sql.ref(`${events}.object_id`)}, case when ${id} ~ ${UUID_TEXT} then ${id}::uuid end)`;
}

/**
 * Events of the feed after the indexer's position: a row compared with the position's one row
 * (a sub-select), which the planner makes a condition of the feed's `(txid, seq)` index, so only
 * those events are read. Joined to the position as a table instead, the comparison became a filter
 * over every event before it too: the whole retained feed, at every batch.
 */
export function afterSearchPosition(alias: string): RawBuilder<boolean> {
  return sql<boolean>`(${sql.ref(`${alias}.txid`)}, ${sql.ref(`${alias}.seq`)}) > (select txid, seq from client_search_position)`;
}

/**
 * The searched text of a row of `alias` (client_search): the four fields `q` looks in, joined by
 * U+001F. Its one trigram index (2026_12_06_0001_client_search_one_trigram_index) is built on this
 * expression, character for character, or the planner cannot use it. A match of the joined text is
 * a candidate only: a term can span two fields' boundary, so a search tests the fields as well.
 */
export function searchedText(alias: string): RawBuilder<string> {
  const column = (name: string) => sql.ref(`${alias}.${name}`);
  const separator = sql.raw(`E'\\x1f'`);
  return sql<string>`(${column('name')} || ${separator} || coalesce(${column('contact_name')}, '') || ${separator} || coalesce(${column('email')}, '') || ${separator} || coalesce(${column('billing_email')}, ''))`;
}

/** Key of the advisory lock one indexer holds for a batch: two processes never index the same batch. */
const INDEXER_LOCK = sql`hashtextextended('client_search_indexer', 0)`;

export interface IndexedBatch {
  /** Events read (and passed) in this batch. */
  events: number;
  /** Rows of client_search written or removed. */
  changed: number;
}

/**
 * Indexes the next `batchSize` events of the feed, in one statement, inside a transaction that
 * holds the indexer's lock; `undefined` when another process holds it (it is indexing).
 *
 * Each touched client is found by its id alone, so that only the primary key can serve the lookup
 * whatever the statistics say: with the tenant's columns in the join too, a planner on statistics
 * older than the table's growth (a new tenant, a fresh database) walked the tenant's rows in
 * another index for each event, a cost that grew with the tenant. The copy takes the client's own
 * tenant from its row (each client once, however its events were written). Only a client gone for
 * good (rare) is looked up in client_search.
 */
export async function indexNextBatch(db: Kysely<Database>, batchSize: number): Promise<IndexedBatch | undefined> {
  return db.transaction().execute(async (trx) => {
    const { rows: locked } = await sql<{ locked: boolean }>`select pg_try_advisory_xact_lock(${INDEXER_LOCK}) as locked`.execute(trx);
    if (!locked[0]?.locked) return undefined;
    const { rows } = await nextBatchStatement(batchSize).execute(trx);
    const changed = Number(rows[0]!.changed);
    if (changed > 0) await mergePendingSearchEntries(trx);
    return { events: Number(rows[0]!.events), changed };
  });
}

/**
 * Merges the search table's pending trigram entries into their index, in bulk (GIN indexes keep a
 * pending list: 2026_12_05_0002_client_search_bulk_trigrams.ts). The indexer calls it after each
 * batch that wrote rows, in the batch's transaction, so no list outlives a batch and a search never
 * reads one; a bulk copy calls it once at its end. Every GIN index of the table, whichever exist.
 */
export async function mergePendingSearchEntries(db: Kysely<Database>): Promise<void> {
  await sql`
    select gin_clean_pending_list(i.indexrelid::regclass)
    from pg_index i join pg_class c on c.oid = i.indexrelid join pg_am am on am.oid = c.relam
    where i.indrelid = 'client_search'::regclass and am.amname = 'gin'`.execute(db);
}

/** The statement that indexes one batch (indexNextBatch runs it holding the indexer's lock). */
export function nextBatchStatement(batchSize: number): RawBuilder<{ events: string; changed: string }> {
  return sql<{ events: string; changed: string }>`
      with batch as (
        -- The client's id, not the event's data: the sort below carries 16 bytes an event, not its JSON.
        select e.txid, e.seq, e.org_id, e.env, e.type, ${eventClientId('e')} as client_id
        from events e
        where ${afterSearchPosition('e')} and e.txid < pg_snapshot_xmin(pg_current_snapshot())
        order by e.txid, e.seq
        limit ${batchSize}
      ),
      touched as (
        select distinct org_id, env, client_id from batch where type like ${CLIENT_EVENTS}
      ),
      upserted as (
        insert into client_search (org_id, env, client_id, created_at, deleted, name, contact_name, email, billing_email)
        select c.org_id, c.env, c.id, c.created_at, c.deleted_at is not null, c.name, c.contact_name, c.email, c.billing_email
        from clients c where c.id in (select client_id from touched)
        on conflict (org_id, env, client_id) do update
          set created_at = excluded.created_at, deleted = excluded.deleted, name = excluded.name,
              contact_name = excluded.contact_name, email = excluded.email, billing_email = excluded.billing_email
          where (client_search.deleted, client_search.name, client_search.contact_name, client_search.email, client_search.billing_email)
            is distinct from (excluded.deleted, excluded.name, excluded.contact_name, excluded.email, excluded.billing_email)
        returning 1
      ),
      -- Worked out first (materialized; nearly always empty): inlined, the planner could join the
      -- touched clients to client_search before asking whether they are gone, walking the tenant's rows.
      gone as materialized (select t.org_id, t.env, t.client_id from touched t where not exists (select 1 from clients c where c.id = t.client_id)),
      removed as (
        delete from client_search s using gone g
        where s.org_id = g.org_id and s.env = g.env and s.client_id = g.client_id
        returning 1
      ),
      last as (select txid, seq from batch order by txid desc, seq desc limit 1),
      -- A data-modifying step runs to its end whether or not the query reads it.
      moved as (update client_search_position set txid = last.txid, seq = last.seq, indexed_at = now() from last)
      select (select count(*) from batch) as events,
             (select count(*) from upserted) + (select count(*) from removed) as changed`;
}

/** ANALYZE of client_search (the indexer's, after it has written enough: search-indexer.ts); the rows it counted. */
export async function analyzeSearchTable(db: Kysely<Database>): Promise<number> {
  await sql`analyze client_search`.execute(db);
  const { rows } = await sql<{ rows: number | string }>`
    select greatest(reltuples, 0)::bigint as rows from pg_class where oid = 'client_search'::regclass`.execute(db);
  return Number(rows[0]?.rows ?? 0);
}

/** How far behind the feed the search table is. */
export interface SearchIndexLag {
  /** Age of the oldest event not yet indexed (its change's time), 0 when none is waiting. */
  seconds: number;
  /** Events not yet indexed, counted up to LAG_EVENTS_COUNTED. */
  events: number;
}

/** The lag's count stops here: enough to alert on, cheap to count at every scrape. */
export const LAG_EVENTS_COUNTED = 100_000;

/** The search table's lag, from the position and the feed's index (any process may ask, indexer running or not). */
export async function searchIndexLag(db: Kysely<Database>): Promise<SearchIndexLag> {
  const { rows } = await sql<{ seconds: number | string | null; events: string }>`
    select extract(epoch from now() - (
             select e.created_at from events e where ${afterSearchPosition('e')} order by e.txid, e.seq limit 1
           )) as seconds,
           (select count(*) from (
             select 1 from events e where ${afterSearchPosition('e')} limit ${LAG_EVENTS_COUNTED}
           ) waiting) as events`.execute(db);
  const row = rows[0];
  return { seconds: Math.max(0, Number(row?.seconds ?? 0)), events: Number(row?.events ?? 0) };
}

/**
 * Copies every client of `clients` into the search table as it is now, for rows written without
 * events (the benchmarks' set-based seeding, tests that insert rows directly). The migration does
 * the same for the rows that were there before it.
 */
export async function copyClientsIntoSearch(db: Kysely<Database>): Promise<void> {
  await sql`
    insert into client_search (org_id, env, client_id, created_at, deleted, name, contact_name, email, billing_email)
    select org_id, env, id, created_at, deleted_at is not null, name, contact_name, email, billing_email from clients
    on conflict (org_id, env, client_id) do update
      set created_at = excluded.created_at, deleted = excluded.deleted, name = excluded.name,
          contact_name = excluded.contact_name, email = excluded.email, billing_email = excluded.billing_email`.execute(db);
  await mergePendingSearchEntries(db);
}
