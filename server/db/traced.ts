/**
 * A span for each database statement, at the one layer every statement of either database goes
 * through: Kysely's connection (PostgreSQL through pg, the embedded PGlite alike; BEGIN, COMMIT
 * and ROLLBACK too). Auto-instrumentation cannot do it here: `npm start` runs one bundled file
 * (scripts/bundle-server.ts), in which pg is inlined where no require or import hook can patch it,
 * and PGlite is not pg at all.
 *
 * Applied only when tracing is on as the database is opened (server/db/database.ts): off, Kysely
 * gets the dialect itself. On, a statement outside any span (the webhook worker's polling, the
 * purge) makes none (server/shared/tracing.ts).
 *
 * The span follows OpenTelemetry's database conventions: `db.system.name` postgresql,
 * `db.query.text` the statement as sent, with `$1`-style placeholders and never a parameter's value,
 * `db.operation.name`, `db.collection.name` when one table is plain to see, `db.response.status_code`
 * (the SQLSTATE) on a failure. Its name is the hot statement's own name when it is one
 * (server/db/prepared.ts: `insert_client_with_key`), else `{operation} {table}`.
 */
import { SpanKind, type Span } from '@opentelemetry/api';
import type { CompiledQuery, DatabaseConnection, Dialect, Driver, QueryResult, TransactionSettings } from 'kysely';
import { failSpan, startChildSpan, tracingOn } from '../shared/tracing.js';
import { preparedStatementNames } from './prepared.js';

interface Described {
  name: string;
  operation: string;
  table: string | undefined;
}

/** What a statement's text says of it, once per text (a bounded memory: texts are few, bar ad-hoc ones). */
const described = new Map<string, Described>();
const MAX_DESCRIBED = 2000;

const FIRST_WORD = /^\s*([a-z]+)/i;
const TABLE_AFTER: Record<string, RegExp> = {
  insert: /^\s*insert\s+into\s+"?([a-z_][a-z0-9_]*)"?/i,
  update: /^\s*update\s+"?([a-z_][a-z0-9_]*)"?/i,
  delete: /^\s*delete\s+from\s+"?([a-z_][a-z0-9_]*)"?/i,
  select: /\sfrom\s+"?([a-z_][a-z0-9_]*)"?/i,
};

/** `with a as (...), b as (...)` before a statement, once what is inside parentheses is emptied. */
const CTE_LIST = /^\s*with\s+(?:recursive\s+)?(?:"?\w+"?\s*(?:\(\)\s*)?as\s+(?:not\s+)?(?:materialized\s+)?\(\)\s*,?\s*)+/i;

/** The text with what is inside each outermost pair of parentheses left out: `a (b (c)) d` → `a () d`. */
function flatten(text: string): string {
  let depth = 0;
  let flat = '';
  for (const char of text) {
    if (char === ')') depth = Math.max(0, depth - 1);
    if (depth === 0) flat += char;
    if (char === '(') depth++;
  }
  return flat;
}

/**
 * A statement's operation and table, by its main statement: that of a `with` is the one after its
 * common table expressions (a `with` whose expression updates deliveries, followed by an insert of
 * the attempt, is named `INSERT webhook_attempts`).
 */
function describe(text: string): Described {
  let found = described.get(text);
  if (found) return found;
  const main = /^\s*with\b/i.test(text) ? flatten(text).replace(CTE_LIST, '') : text;
  const operation = (FIRST_WORD.exec(main)?.[1] ?? 'query').toUpperCase();
  const table = TABLE_AFTER[operation.toLowerCase()]?.exec(main)?.[1];
  const name = preparedStatementNames.get(text) ?? (table ? `${operation} ${table}` : operation);
  found = { name, operation, table };
  if (described.size >= MAX_DESCRIBED) described.clear();
  described.set(text, found);
  return found;
}

function statementSpan(query: CompiledQuery): Span | undefined {
  const { name, operation, table } = describe(query.sql);
  const span = startChildSpan(name, SpanKind.CLIENT, {
    'db.system.name': 'postgresql',
    'db.operation.name': operation,
    'db.query.text': query.sql,
  });
  if (span && table) span.setAttribute('db.collection.name', table);
  return span;
}

class TracedConnection implements DatabaseConnection {
  constructor(readonly inner: DatabaseConnection) {}

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    const span = statementSpan(query);
    if (!span) return this.inner.executeQuery<R>(query);
    try {
      const result = await this.inner.executeQuery<R>(query);
      span.setAttribute('db.response.returned_rows', result.rows.length);
      return result;
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (typeof code === 'string') span.setAttribute('db.response.status_code', code);
      failSpan(span, error);
      throw error;
    } finally {
      span.end();
    }
  }

  streamQuery<R>(query: CompiledQuery, chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
    return this.inner.streamQuery<R>(query, chunkSize);
  }
}

/**
 * The driver hands Kysely traced connections, and its own driver the connections it made (pg's
 * release and PGlite's queue know them by identity); BEGIN, COMMIT and ROLLBACK go through the
 * traced ones, so they are spans too.
 */
function tracedDriver(inner: Driver): Driver {
  const wrappers = new WeakMap<DatabaseConnection, TracedConnection>();
  const wrap = (connection: DatabaseConnection) => {
    let traced = wrappers.get(connection);
    if (!traced) {
      traced = new TracedConnection(connection);
      wrappers.set(connection, traced);
    }
    return traced;
  };
  const unwrap = (connection: DatabaseConnection) => (connection instanceof TracedConnection ? connection.inner : connection);
  const driver: Driver = {
    init: () => inner.init(),
    acquireConnection: async () => wrap(await inner.acquireConnection()),
    beginTransaction: (connection: DatabaseConnection, settings: TransactionSettings) => inner.beginTransaction(connection, settings),
    commitTransaction: (connection: DatabaseConnection) => inner.commitTransaction(connection),
    rollbackTransaction: (connection: DatabaseConnection) => inner.rollbackTransaction(connection),
    releaseConnection: (connection: DatabaseConnection) => inner.releaseConnection(unwrap(connection)),
    destroy: () => inner.destroy(),
  };
  if (inner.savepoint) driver.savepoint = inner.savepoint.bind(inner);
  if (inner.rollbackToSavepoint) driver.rollbackToSavepoint = inner.rollbackToSavepoint.bind(inner);
  if (inner.releaseSavepoint) driver.releaseSavepoint = inner.releaseSavepoint.bind(inner);
  return driver;
}

/** `dialect` with a span per statement (see above) when tracing is on; `dialect` itself when off. */
export function withStatementSpans(dialect: Dialect): Dialect {
  if (!tracingOn()) return dialect;
  return {
    createAdapter: () => dialect.createAdapter(),
    createDriver: () => tracedDriver(dialect.createDriver()),
    createIntrospector: (db) => dialect.createIntrospector(db),
    createQueryCompiler: () => dialect.createQueryCompiler(),
  };
}
