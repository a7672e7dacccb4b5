import { sql, type Kysely } from 'kysely';

/**
 * One trigram index for `q` instead of four (issue 25's create ratio). The search indexer wrote each
 * client into four GIN indexes (name, contactName, email, billingEmail); it now writes one, over the
 * four fields joined by a control character (U+001F, the unit separator: not a letter or digit, so
 * pg_trgm ends a word there and each field yields the trigrams it yielded alone). A client's
 * trigrams go into one index once, where a trigram found in two fields went into two, and each
 * batch merges one pending list, not four.
 *
 * A search asks the index with the joined text and tests each field again on the rows it finds
 * (server/clients/clients.queries.ts): a term that spans two fields' boundary matches the joined
 * text but no field, and is not a match. The expression below is the query's `searchedText`
 * (server/clients/client-search.queries.ts) character for character, or the planner cannot use the
 * index; test/integration/clients-indexes.test.ts reads the plan.
 *
 * The exact `email` filter, which the email's trigram index served, gets a b-tree of its own: one
 * entry a client with an e-mail, where the trigram index held one per trigram, and it serves the
 * filter where PostgreSQL has no pg_trgm too.
 *
 * During a rollout an instance of the version before still answers correctly (its search tests the
 * four fields, which the new index does not serve): a rare term there walks the tenant's rows of
 * the search table until the instance is replaced.
 */
const JOINED = sql.raw(
  `(name || E'\\x1f' || coalesce(contact_name, '') || E'\\x1f' || coalesce(email, '') || E'\\x1f' || coalesce(billing_email, ''))`,
);
const SEARCHED_COLUMNS = ['name', 'contact_name', 'email', 'billing_email'];

async function hasTrigrams(db: Kysely<unknown>): Promise<boolean> {
  const { rows } = await sql<{ present: boolean }>`select exists (select 1 from pg_extension where extname = 'pg_trgm') as present`.execute(
    db,
  );
  return rows[0]?.present === true;
}

export async function up(db: Kysely<unknown>): Promise<void> {
  // Partial, so that only a query that tests the e-mail can use it: with the tenant's columns first,
  // a search on statistics older than the tenant could walk all its rows here (as
  // 2026_12_06_0002 explains for clients_updated_idx).
  await sql`create index if not exists client_search_email_idx on client_search (org_id, env, email) where email is not null`.execute(db);
  if (!(await hasTrigrams(db))) return;
  // As the four were since 2026_12_05_0002: a batch's entries go to the pending list, and the
  // indexer merges it in bulk before the batch ends.
  await sql`
    create index if not exists client_search_text_trgm_idx on client_search
    using gin (${JOINED} gin_trgm_ops) with (fastupdate = on)`.execute(db);
  for (const column of SEARCHED_COLUMNS) await sql`drop index if exists ${sql.id(`client_search_${column}_trgm_idx`)}`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  if (await hasTrigrams(db)) {
    for (const column of SEARCHED_COLUMNS) {
      await sql`
        create index if not exists ${sql.id(`client_search_${column}_trgm_idx`)} on client_search
        using gin (${sql.ref(column)} gin_trgm_ops) with (fastupdate = on)`.execute(db);
    }
    await sql`drop index if exists client_search_text_trgm_idx`.execute(db);
  }
  await sql`drop index if exists client_search_email_idx`.execute(db);
}
