import { sql, type Kysely } from 'kysely';

/**
 * The trigram indexes of `q` (2026_11_28_0005) without GIN's pending list. With it, inserts are
 * cheap until the list fills, and then the one insert that finds it full merges it into the index
 * while its caller waits: a second or more with 32 writers, and on the embedded database, which
 * runs in the server's one thread, every request waits with it. PostgreSQL's documentation advises
 * turning `fastupdate` off when steady response times matter more than insert speed; for an API
 * they do. Each insert now updates the four indexes itself (measured with `npm run bench`).
 */
const INDEXES = ['clients_name_trgm_idx', 'clients_contact_name_trgm_idx', 'clients_email_trgm_idx', 'clients_billing_email_trgm_idx'];

async function setFastUpdate(db: Kysely<unknown>, on: boolean): Promise<void> {
  for (const index of INDEXES) {
    // Absent where PostgreSQL has no pg_trgm (see 2026_11_28_0005): nothing to change there.
    const { rows } = await sql<{ present: boolean }>`select to_regclass(${index}) is not null as present`.execute(db);
    if (!rows[0]?.present) continue;
    await sql`alter index ${sql.id(index)} set (fastupdate = ${sql.raw(on ? 'on' : 'off')})`.execute(db);
  }
}

export async function up(db: Kysely<unknown>): Promise<void> {
  await setFastUpdate(db, false);
  // What the pending lists already hold goes into the indexes now, not into some later request.
  for (const index of INDEXES) {
    const { rows } = await sql<{ present: boolean }>`select to_regclass(${index}) is not null as present`.execute(db);
    if (rows[0]?.present) await sql`select gin_clean_pending_list(${index}::regclass)`.execute(db);
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await setFastUpdate(db, true);
}
