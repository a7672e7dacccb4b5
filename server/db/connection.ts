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
 *
 * The statement limit is the server's; it cannot bound what the server never sees or never ends:
 * an answer lost on the way (a connection whose far end is gone without closing it: a node lost
 * behind a balancer or a virtual IP, a frozen process, a network partition), or a COMMIT waiting
 * for a synchronous standby, which `statement_timeout` does not cut. So every query also has a
 * deadline on this side (boundAnswers below): the statement limit and ANSWER_MARGIN_MS more, after
 * which the connection is closed and the query fails as the database being away (a request gets
 * 503; the webhook worker logs it and goes on). TCP keepalive on every connection finds a silent
 * peer that is idle, for the pool's sake.
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
import { withStatementSpans } from './traced.js';
import type { Database } from './schema.js';

export interface PostgresOptions {
  /** Connections of the main pool (the counters' pool gets half as many, at least 2). */
  max: number;
  onConnectionError?: (error: Error) => void;
  pooling?: DatabasePooling;
  /** Milliseconds any one statement may run; 0 or absent: no limit. */
  statementTimeoutMs?: number | undefined;
  /**
   * Milliseconds this side waits for any one query's answer before it closes the connection
   * (boundAnswers); absent: answerTimeoutMs(statementTimeoutMs); 0: no deadline. Tests shorten it.
   */
  answerTimeoutMs?: number | undefined;
}

/** How much longer than the statement limit an answer may take (the network, a loaded server) before it is given up. */
const ANSWER_MARGIN_MS = 5_000;

/** The deadline of every query: the statement limit and a margin; none when statements have no limit. */
function answerTimeoutMs(statementTimeoutMs = 0): number {
  return statementTimeoutMs > 0 ? statementTimeoutMs + ANSWER_MARGIN_MS : 0;
}

/**
 * TCP keepalive on every connection, first probe after this much idleness: a peer that vanished
 * while a connection sat idle in the pool is found by the kernel, not by the next query.
 */
const KEEPALIVE_DELAY_MS = 10_000;

/** What every pg pool of the server shares: the connect deadline and keepalive. */
function poolBasics(connectTimeoutMs: number) {
  return { connectionTimeoutMillis: connectTimeoutMs, keepAlive: true, keepAliveInitialDelayMillis: KEEPALIVE_DELAY_MS };
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
      ...poolBasics(CONNECT_TIMEOUT_MS),
    }),
    onConnectionError,
  );
  boundAnswers(counterPool, options.answerTimeoutMs ?? answerTimeoutMs(options.statementTimeoutMs));
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
      ...poolBasics(options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS),
      ...startupStatementLimit(options),
    }),
    onConnectionError,
  );
  boundAnswers(pool, options.answerTimeoutMs ?? answerTimeoutMs(statementTimeoutMs));
  // Unnamed statements (parsed on each run) are what a transaction-mode pooler can carry.
  if (direct) {
    pool.on('connect', prepareHotStatements);
    pool.on('connect', withoutJit);
  }
  const connections = options.dropReadOnlyConnections ? dropReadOnlyConnections(pool) : pool;
  const dialect =
    !direct && statementTimeoutMs > 0
      ? new TimedTransactionsDialect(connections, statementTimeoutMs)
      : new PostgresDialect({ pool: connections });
  return { pool, db: new Kysely<Database>({ dialect: withStatementSpans(dialect) }) };
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

/** The statement a migration's transaction begins with (server/db/migrate.ts): no limit until it ends. */
export const LIFT_STATEMENT_LIMIT = 'set local statement_timeout = 0';

/** Why a query failed when its answer did not come in time; ETIMEDOUT, so server/db/faults.ts counts it as the database away. */
export class DatabaseAnswerTimeout extends Error {
  readonly code = 'ETIMEDOUT';
  constructor(ms: number) {
    super(`The database did not answer within ${ms} ms: the connection was closed.`);
  }
}

/**
 * Every query on this pool's connections is answered within `deadlineMs`, or fails with
 * DatabaseAnswerTimeout and its connection is closed (destroyed, not ended: ending politely waits
 * for a peer that may never answer). Closing is the only way on: PostgreSQL's protocol answers in
 * order, so a later query (Kysely's ROLLBACK of the failed transaction, the next request's BEGIN)
 * would wait behind the lost answer. pg's own `query_timeout` stops waiting but leaves the
 * connection in use, for exactly that reason. Whatever the server was doing goes on or ends
 * there: a statement runs to its limit; a COMMIT waiting for a synchronous standby commits once
 * the standby (or Patroni's change of it) comes, or is lost with its node, and its request,
 * answered 503, is retried with its Idempotency-Key, which finds the outcome.
 *
 * A connection whose transaction lifted the statement limit (LIFT_STATEMENT_LIMIT, a migration)
 * has no deadline until it is released. Promise and callback calls (pg-pool's `pool.query`, which
 * the counters use) alike.
 */
function boundAnswers(pool: pg.Pool, deadlineMs: number): void {
  if (deadlineMs <= 0) return;
  const unlimited = new WeakSet<pg.PoolClient>();
  pool.on('release', (_error: Error | undefined, client: pg.PoolClient) => unlimited.delete(client));
  pool.on('connect', (client) => {
    const query = client.query as (...args: unknown[]) => unknown;
    const giveUp = () => (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
    client.query = function (this: pg.PoolClient, ...args: unknown[]) {
      const text = typeof args[0] === 'string' ? args[0] : (args[0] as { text?: unknown } | undefined)?.text;
      if (text === LIFT_STATEMENT_LIMIT) unlimited.add(client);
      if (unlimited.has(client)) return query.apply(this, args);
      const last = args.length - 1;
      const callback = typeof args[last] === 'function' ? (args[last] as (error: Error | null, result?: unknown) => void) : undefined;
      if (callback) {
        let answered = false;
        const timer = setTimeout(() => {
          answered = true;
          callback(new DatabaseAnswerTimeout(deadlineMs));
          giveUp();
        }, deadlineMs);
        args[last] = (error: Error | null, result?: unknown) => {
          clearTimeout(timer);
          if (!answered) callback(error, result);
          answered = true;
        };
        return query.apply(this, args);
      }
      const result = query.apply(this, args);
      if (!(result instanceof Promise)) return result;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(new DatabaseAnswerTimeout(deadlineMs));
          giveUp();
        }, deadlineMs);
        result.then(
          (value) => {
            clearTimeout(timer);
            resolve(value);
          },
          (error: unknown) => {
            clearTimeout(timer);
            reject(error);
          },
        );
      });
    } as typeof client.query;
  });
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
 * PostgreSQL's JIT compiler off for the session, sent as the connection's first statement (queued
 * before any other, so every statement of the session runs without it). JIT pays off for long
 * analytic queries; every statement here runs in milliseconds, and JIT is chosen by the planner's
 * estimated cost, which statistics older than a tenant's rows inflate: the soak found the webhook
 * worker's fan-out (a statement of under 1 ms) estimated at 6 million and compiled at every run,
 * 400 to 630 ms of CPU each, enough to saturate the machine for minutes (docs/performance.md, "The
 * soak after lever 2"). A statement rather than a startup parameter, which a PgBouncer in session
 * mode refuses. Through a transaction-mode pooler a session's setting would not stay with it: set
 * it on the role there (docs/scaling.md). If the statement fails, so does the connection's next one.
 */
function withoutJit(client: pg.PoolClient): void {
  client.query('set jit = off').catch(() => {});
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
