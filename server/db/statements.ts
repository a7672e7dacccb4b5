/**
 * The statements of the hot paths (a read by id, an idempotent create), written once as SQL with
 * `$n` parameters. Kysely runs them, but builds and compiles nothing per request: only the values
 * are new each time. On a PostgreSQL server each is also a named prepared statement, parsed and
 * planned once per connection and then only bound and run (`preparedStatementNames` is what
 * server/db/database.ts prepares). Every prepared statement names its columns: a `select *` kept
 * prepared across a migration that adds a column would fail with "cached plan must not change
 * result type".
 */
import { CompiledQuery, type Kysely, type QueryResult } from 'kysely';
import type { Database } from './schema.js';

/** Statement text → its prepared statement's name. */
export const preparedStatementNames = new Map<string, string>();

export type Statement<Row> = (db: Kysely<Database>, values: readonly unknown[]) => Promise<QueryResult<Row>>;

export function statement<Row>(name: string, text: string): Statement<Row> {
  if ([...preparedStatementNames.values()].includes(name)) throw new Error(`Two statements are named ${name}`);
  preparedStatementNames.set(text, name);
  return (db, values) => db.executeQuery<Row>(CompiledQuery.raw(text, [...values]));
}
