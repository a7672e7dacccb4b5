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
 * server/idempotency/idempotency.queries.ts), so they hold there too. Kysely's migration lock is
 * not (0.28 takes a session-level `pg_advisory_lock`): migrations go straight to PostgreSQL
 * (docs/scaling.md).
 *
 * Every statement is cut after `statementTimeoutMs` (DATABASE_STATEMENT_TIMEOUT_MS; its expiry,
 * SQLSTATE 57014, is answered 503 by server/db/faults.ts), so no request, purge or delivery can
 * hold a connection and its locks for longer. On a direct connection it is a startup parameter of
 * every connection of both pools. PgBouncer refuses startup parameters, and a session `SET` would
 * stay on whichever server connection it landed on, so through a transaction-mode pooler every
 * transaction the server opens begins with `SET LOCAL` (in BEGIN's own round trip), and the
 * statements sent alone (reads, a create, a rate-limit count) are bounded only by the role's own
 * setting, which the operator makes (`ALTER ROLE app IN DATABASE clients SET statement_timeout =
 * '10s'`). pg's client-side `query_timeout` is no substitute: it stops waiting, but the statement
 * runs on in PostgreSQL. Migrations lift the limit inside their own transaction
 * (server/db/migrate.ts).
 */
import {
  CompiledQuery,
  type DatabaseConnection,
  Kysely,
  PostgresDialect,
  PostgresDriver,
  type PostgresPool,
  type TransactionSettings,
} from 'kysely';
import pg from 'pg';
import { isReadOnlyDatabase } from './faults.js';
import type { DatabaseHandle, DatabasePooling } from './handle.js';
import { preparedStatementNames } from './prepared.js';
import type { Database } from './schema.js';

export interface PostgresOptions {
  /** Connections of the main pool (the counters' pool gets half as many, at least 2). */
  max: number;
  onConnectionError?: (error: Error) => void;
  pooling?: DatabasePooling;
  /** Milliseconds any one statement may run; 0 or absent: no limit. */
  statementTimeoutMs?: number | undefined;
}

export function openPostgres(connectionString: string, options: PostgresOptions): DatabaseHandle {
  const { max, onConnectionError = () => {}, pooling = 'session' } = options;
  const direct = pooling === 'session';
  const { pool, db } = openRequestPool(connectionString, { ...options, dropReadOnlyConnections: true });
  const counterPool = guardConnections(
    new pg.Pool({
      connectionString,
      max: Math.max(2, Math.ceil(max / 2)),
      // A lost count costs nothing, so the counters' commits do not wait for the disk. Through a
      // transaction-mode pooler the setting is dropped: a startup parameter is refused by PgBouncer
      // (or ignored, when told to), and rate-limiter-flexible runs each count as a single statement,
      // outside any transaction a `SET LOCAL` could go in. Such deployments keep counters in Redis.
      ...(direct && { options: '-c synchronous_commit=off' }),
      ...startupStatementLimit(options),
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

/** pg sends `statement_timeout` as a startup parameter on a direct connection; 0 is PostgreSQL's own "no limit". */
function startupStatementLimit({ pooling = 'session', statementTimeoutMs = 0 }: PostgresOptions) {
  return pooling === 'session' && statementTimeoutMs > 0 ? { statement_timeout: statementTimeoutMs } : {};
}

/**
 * The pool requests use and its Kysely, on the primary (openPostgres) or on a replica
 * (server/db/replica.ts): hot statements prepared per connection on a direct connection, the
 * statement limit either way. `connectTimeoutMs`: how long a query waits for a connection
 * (CONNECT_TIMEOUT_MS unless given). `dropReadOnlyConnections` (the primary's): see
 * dropReadOnlyConnections below.
 */
export function openRequestPool(
  connectionString: string,
  options: PostgresOptions & { connectTimeoutMs?: number; dropReadOnlyConnections?: boolean },
): { pool: pg.Pool; db: Kysely<Database> } {
  const { max, onConnectionError = () => {}, pooling = 'session', statementTimeoutMs = 0 } = options;
  const direct = pooling === 'session';
  const pool = guardConnections(
    new pg.Pool({
      connectionString,
      max,
      connectionTimeoutMillis: options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
      ...startupStatementLimit(options),
    }),
    onConnectionError,
  );
  // Unnamed statements (parsed on each run) are what a transaction-mode pooler can carry.
  if (direct) pool.on('connect', prepareHotStatements);
  const connections = options.dropReadOnlyConnections ? dropReadOnlyConnections(pool) : pool;
  const dialect =
    !direct && statementTimeoutMs > 0
      ? new TimedTransactionsDialect(connections, statementTimeoutMs)
      : new PostgresDialect({ pool: connections });
  return { pool, db: new Kysely<Database>({ dialect }) };
}

/**
 * The primary's connections as Kysely gets them, dropped once the server behind them proved
 * unable to write (SQLSTATE 25006, server/db/faults.ts): a standby, a node in the tens of
 * milliseconds between Patroni's leader lock and PostgreSQL's promotion, a demoted primary, a
 * database set `default_transaction_read_only`. A session keeps the read-only default it began
 * with, so a connection returned to the pool would fail its next write too, after the cluster
 * has a writable primary again. Not only the connection that failed: every connection opened
 * before the failure went to where that one went (the same DATABASE_URL, the same HAProxy), so
 * each is closed when it is next released, and new ones go wherever DATABASE_URL leads now. The
 * statement that failed is answered 503 (its request stored nothing), and no more than the
 * statements already running on those connections fail the same way.
 *
 * Kysely releases a connection with `release(false)` unless a rollback failed; pg-pool closes a
 * connection released with a truthy argument (pg-pool's own `pool.query`, used by the counters,
 * already releases with the error). Through a transaction-mode pooler this closes the connection
 * to PgBouncer, not PgBouncer's own to PostgreSQL: docs/high-availability.md. Not for a replica's
 * pool: a replica is read only by design, and reads never fail so.
 */
function dropReadOnlyConnections(pool: pg.Pool): PostgresPool {
  /** Each connection's number, in the order they were opened. */
  const serials = new WeakMap<pg.PoolClient, number>();
  let opened = 0;
  /** Connections numbered up to this one close on release. */
  let dropUpTo = 0;
  pool.on('connect', (client) => {
    serials.set(client, ++opened);
    const query = client.query;
    client.query = function (this: pg.PoolClient, ...args: unknown[]) {
      const result = (query as (...args: unknown[]) => unknown).apply(this, args);
      if (!(result instanceof Promise)) return result;
      return result.catch((error: unknown) => {
        if (isReadOnlyDatabase(error)) dropUpTo = opened;
        throw error;
      });
    } as typeof client.query;
  });
  return {
    connect: async () => {
      const client = await pool.connect();
      const release = client.release;
      client.release = (destroy?: Error | boolean) => release(destroy || (serials.get(client) ?? Number.POSITIVE_INFINITY) <= dropUpTo);
      return client;
    },
    end: () => pool.end(),
  };
}

/**
 * Through a transaction-mode pooler: each transaction's first round trip is `begin; set local
 * statement_timeout = …` (a simple query may hold several statements), so the limit holds on
 * whichever server connection the transaction gets, and costs no extra round trip.
 */
class TimedTransactionsDialect extends PostgresDialect {
  constructor(
    private readonly pool: PostgresPool,
    private readonly statementTimeoutMs: number,
  ) {
    super({ pool });
  }
  override createDriver(): PostgresDriver {
    const setLocal = `set local statement_timeout = ${Math.trunc(this.statementTimeoutMs)}`;
    return new (class extends PostgresDriver {
      override async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
        if (settings.isolationLevel || settings.accessMode) {
          await super.beginTransaction(connection, settings);
          await connection.executeQuery(CompiledQuery.raw(setLocal));
          return;
        }
        await connection.executeQuery(CompiledQuery.raw(`begin; ${setLocal}`));
      }
    })({ pool: this.pool });
  }
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
