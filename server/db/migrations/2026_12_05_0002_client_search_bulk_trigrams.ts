import { sql, type Kysely } from 'kysely';

/**
 * The search table's trigram indexes take a batch's entries in bulk (issue 25's create ratio).
 *
 * With `fastupdate` off (2026_12_04_0001), each row the indexer writes went into each of the four
 * GIN indexes one entry at a time, about 100 µs a client on this machine: the largest cost left
 * beside a create once search was off the request path, paid by PostgreSQL on the same cores. With
 * it on, a batch's rows go to each index's pending list, and the indexer merges the lists into the
 * indexes straight after, in the batch's own transaction (`mergePendingSearchEntries` in
 * server/clients/client-search.queries.ts): the merge sorts the batch's entries by trigram and adds
 * each trigram's rows at once, about a third of the cost (docs/performance.md, "Lever 2").
 *
 * The reason `fastupdate` was turned off on `clients` (2026_11_29_0001) does not apply here: there a
 * request found the list full and merged it while its caller waited; here only the indexer writes
 * the table, off the request path, and it never leaves a list behind for a search to read. The
 * list's limit stays PostgreSQL's (4 MB), which bounds what a search reads should a bulk copy
 * (`copyClientsIntoSearch`) end without its merge.
 */
const SEARCHED_COLUMNS = ['name', 'contact_name', 'email', 'billing_email'];

async function setFastUpdate(db: Kysely<unknown>, on: boolean): Promise<void> {
  for (const column of SEARCHED_COLUMNS) {
    const index = `client_search_${column}_trgm_idx`;
    // Absent where PostgreSQL has no pg_trgm (2026_12_04_0001): nothing to change there.
    const { rows } = await sql<{ present: boolean }>`select to_regclass(${index}) is not null as present`.execute(db);
    if (!rows[0]?.present) continue;
    await sql`alter index ${sql.id(index)} set (fastupdate = ${sql.raw(on ? 'on' : 'off')})`.execute(db);
    // Turning it off leaves what the list holds there: merged now, not by some later search's reading.
    if (!on) await sql`select gin_clean_pending_list(${index}::regclass)`.execute(db);
  }
}

export async function up(db: Kysely<unknown>): Promise<void> {
  await setFastUpdate(db, true);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await setFastUpdate(db, false);
}
