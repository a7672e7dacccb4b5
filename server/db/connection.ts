/**
 * A PostgreSQL server: the pool, the rate-limit counters' pool, and hot statements prepared per
 * connection.
 *
 * Behind a transaction-mode pooler (PgBouncer `pool_mode = transaction`, DATABASE_POOLING=transaction)
 * a client connection gets whichever server connection is free for each transaction, so nothing
 * may outlive one: no named prepared statements (prepared on one server connection, run or
 * prepared again on another: 26000 "does not exist", 42P05 "already exists"; PgBouncer 1.18 cannot
 * track them) and no session settings. Every advisory lock the server takes is already
 * transaction-level (`pg_advisory_xact_lock`, `pg_try_advisory_xact_lock`: server/plans/plans.ts,
 * server/idempotency/idempotency.queries.ts), and Kysely's migration lock is a row lock inside a
 * transaction, so both hold there too.
 */
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { DatabaseHandle, DatabasePooling } from './handle.js';
import { preparedStatementNames } from './prepared.js';
import type { Database } from './schema.js';

export function openPostgres(
  connectionString: string,
  max: number,
  onConnectionError: (error: Error) => void = () => {},
  pooling: DatabasePooling = 'session',
): DatabaseHandle {
  const direct = pooling === 'session';
  const pool = guardConnections(new pg.Pool({ connectionString, max, connectionTimeoutMillis: CONNECT_TIMEOUT_MS }), onConnectionError);
  // Unnamed statements (parsed on each run) are what a transaction-mode pooler can carry.
  if (direct) pool.on('connect', prepareHotStatements);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const counterPool = guardConnections(
    new pg.Pool({
      connectionString,
      max: Math.max(2, Math.ceil(max / 2)),
      // A lost count costs nothing, so the counters' commits do not wait for the disk. Through a
      // transaction-mode pooler the setting is dropped: a startup parameter is refused by PgBouncer
      // (or ignored, when told to), and rate-limiter-flexible runs each count as a single statement,
      // outside any transaction a `SET LOCAL` could go in. Such deployments keep counters in Redis.
      ...(direct && { options: '-c synchronous_commit=off' }),
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
 * The statements of server/db/prepared.ts go out as named prepared statements on this
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
