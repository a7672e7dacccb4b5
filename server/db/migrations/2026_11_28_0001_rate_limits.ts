import { sql, type Kysely } from 'kysely';

/**
 * The counters of rate-limiter-flexible's PostgreSQL store, in the shape it expects, so that every
 * server process on one database shares each budget. Created here rather than by the library at
 * start-up, so that the schema has one owner. PGlite keeps its counters in memory and leaves the
 * table empty.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('rate_limits')
    .addColumn('key', sql`varchar(255)`, (c) => c.primaryKey())
    .addColumn('points', 'integer', (c) => c.notNull().defaultTo(0))
    // When the window ends, in milliseconds since the epoch.
    .addColumn('expire', 'bigint')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('rate_limits').execute();
}
