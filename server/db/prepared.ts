/**
 * Hot statements: Kysely queries built and compiled once, at start-up, with typed parameters.
 *
 * `prepare(name, build)` calls `build` with a stand-in for each parameter (`params.id`...; `build`
 * may take its parameters in several parts: `(row, event, key) => ...`), compiles the query once,
 * and remembers which `$n` is which parameter of which part. A request then only supplies the
 * values: nothing is built or compiled per request. On a PostgreSQL server each statement is also
 * a named prepared statement, parsed and planned once per connection and afterwards only bound and
 * run (server/db/connection.ts prepares the texts listed in `preparedStatementNames`).
 *
 * Every prepared statement names its columns: a `select *` kept prepared across a migration that
 * adds a column would fail with "cached plan must not change result type".
 */
import {
  type Compilable,
  CompiledQuery,
  DummyDriver,
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type QueryResult,
  type RawBuilder,
} from 'kysely';
import type { Database } from './schema.js';

/** A Kysely that only compiles (it has no connection): what hot statements are built with. */
export const compiler = new Kysely<Database>({
  dialect: {
    createAdapter: () => new PostgresAdapter(),
    createDriver: () => new DummyDriver(),
    createIntrospector: (db) => new PostgresIntrospector(db),
    createQueryCompiler: () => new PostgresQueryCompiler(),
  },
});

/** Statement text → its prepared statement's name. */
export const preparedStatementNames = new Map<string, string>();

/** Each statement's text and which parameter each `$n` is, by name (bench/create-cost.ts runs them in pgbench). */
export const preparedStatements = new Map<string, { text: string; parameters: string[] }>();

/** The stand-in of one parameter while a statement is built; replaced by its value on each run. */
class Parameter {
  constructor(
    readonly part: number,
    readonly name: string,
  ) {}
}

/**
 * A hot statement, run with its parameters' values in one or more parts (objects). Parts are
 * passed as they are, never merged: spreading a row, an event and a key into one object of forty
 * properties cost more per create than all the rest of the statement's preparation (V8 leaves
 * such an object in dictionary mode).
 */
export type Prepared<Parts extends object[], Row> = (db: Kysely<Database>, ...parts: Parts) => Promise<QueryResult<Row>>;

export function prepare<Parts extends object[], Row>(
  name: string,
  build: (...parts: Parts) => Compilable<Row> | RawBuilder<Row>,
): Prepared<Parts, Row> {
  if ([...preparedStatementNames.values()].includes(name)) throw new Error(`Two statements are named ${name}`);
  const stands = Array.from(
    { length: build.length },
    (_, part) => new Proxy({}, { get: (_target, key) => new Parameter(part, String(key)) }),
  );
  // A query builder compiles itself; a `sql` template needs the compiler (a Kysely) to do it.
  const { sql: text, parameters } = (build(...(stands as Parts)) as RawBuilder<Row>).compile(compiler);
  const slots = parameters.map((value) => {
    if (value instanceof Parameter) return value;
    throw new Error(`Statement ${name} has a value written into it (${String(value)}); pass it as a parameter`);
  });
  preparedStatementNames.set(text, name);
  preparedStatements.set(name, { text, parameters: slots.map((slot) => slot.name) });
  return (db, ...parts) =>
    db.executeQuery<Row>(
      CompiledQuery.raw(
        text,
        slots.map((slot) => (parts[slot.part] as Record<string, unknown>)[slot.name]),
      ),
    );
}
