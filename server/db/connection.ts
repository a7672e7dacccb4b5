/** A PostgreSQL server: the pool, the rate-limit counters' pool, and hot statements prepared per connection. */
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { DatabaseHandle } from './handle.js';
import { preparedStatementNames } from './prepared.js';
import type { Database } from './schema.js';

export function openPostgres(connectionString: string, max: number, onConnectionError: (error: Error) => void = () => {}): DatabaseHandle {
  const pool = guardConnections(new pg.Pool({ connectionString, max, connectionTimeoutMillis: CONNECT_TIMEOUT_MS }), onConnectionError);
  pool.on('connect', prepareHotStatements);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const counterPool = guardConnections(
    new pg.Pool({
      connectionString,
      max: Math.max(2, Math.ceil(max / 2)),
      options: '-c synchronous_commit=off',
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    }),
    onConnectionError,
  );
  return {
    db,
    kind: 'postgres',
    pool,
    counterPool,
    close: async () => {
      await db.destroy();
      await counterPool.end();
    },
  };
}

/**
 * How long a request waits for a connection (a new one, or one of a full pool) before it is
 * answered 503: without a bound, a database that does not answer at all would hold every request.
 */
export const CONNECT_TIMEOUT_MS = 5_000;

/**
 * No database event can crash the process. pg-pool listens for a connection's 'error' only while
 * it is idle in the pool and removes that listener while the connection is checked out (Kysely
 * holds one per query or transaction), so an error arriving between two statements, such as
 * 57P01 when PostgreSQL restarts or an administrator ends the backend, was an unhandled 'error'
 * event. Every connection gets its own listener for its whole life; the query that was running
 * fails on its own (and its request is answered 503), and pg-pool drops the dead connection when
 * it is released, since it is no longer queryable.
 */
export function guardConnections(pool: pg.Pool, onConnectionError: (error: Error) => void): pg.Pool {
  pool.on('error', onConnectionError);
  pool.on('connect', (client) => client.on('error', onConnectionError));
  return pool;
}

/**
 * The statements of server/db/statements.ts go out as named prepared statements on this
 * connection: pg parses each once per connection and afterwards only binds and runs it. Any other
 * query goes out as before.
 */
function prepareHotStatements(client: pg.PoolClient): void {
  const query = client.query;
  client.query = function (this: pg.PoolClient, config: unknown, values?: unknown, callback?: unknown) {
    const name = typeof config === 'string' && Array.isArray(values) ? preparedStatementNames.get(config) : undefined;
    if (name) return (query as (...args: unknown[]) => unknown).call(this, { name, text: config, values }, callback);
    return (query as (...args: unknown[]) => unknown).call(this, config, values, callback);
  } as typeof client.query;
}
