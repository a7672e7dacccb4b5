/**
 * Which failures mean "the database is away for a moment" rather than "this request is wrong" or
 * "our code is wrong". Those are answered 503 `service_unavailable` with `Retry-After` (see
 * server/http/error-handler.ts): the service is unavailable, not broken, and a client may retry.
 * A failed write stored nothing, since its transaction (or its one statement) never committed.
 */
import { ApiError } from '../shared/errors.js';

/**
 * 25006 read_only_sql_transaction: the server we reached cannot write. The service never opens a
 * read-only transaction on the primary, so this is a node that is not (or not yet, or no longer)
 * the primary: a standby refusing a write ("cannot execute INSERT in a read-only transaction",
 * "cannot execute … during recovery"), a replica Patroni's REST API already calls primary in the
 * tens of milliseconds before PostgreSQL accepts writes, a demoted primary, or a database set
 * `default_transaction_read_only`. The database is away for writes, as in a failover: 503, and the
 * connection is dropped (server/db/connection.ts), since a session keeps the read-only default it
 * started with.
 */
const READ_ONLY_SQLSTATE = '25006';

/**
 * A standby asked for a transaction id (`pg_current_xact_id()`, an event's `txid` default) says
 * so as an internal error (XX000), before any statement could say 25006.
 */
const STANDBY_MESSAGES = [/^cannot assign TransactionIds during recovery/];

/** Seconds a client is asked to wait: PostgreSQL restarts, fail-overs and pool refills take a few. */
export const UNAVAILABLE_RETRY_AFTER_SECONDS = 2;

/**
 * SQLSTATE classes and codes (PostgreSQL, appendix A): 08 connection exceptions; 57P01 to 57P05
 * (terminated by an administrator, crash, "the database system is starting up" / "shutting down" /
 * "is not yet accepting connections" / "is in recovery mode", idle-session timeout); 53300 too
 * many connections; 25006 (READ_ONLY_SQL_TRANSACTION, below); 40001/40P01 never come here (no
 * serializable transactions), and nothing of class 22 or 23, which are the request's own fault or
 * a bug.
 */
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '57P04', '57P05', '53300', READ_ONLY_SQLSTATE]);

/** Node's errors for a connection that could not be made or was lost. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ENOTFOUND',
]);

/**
 * node-postgres reports a lost connection, a client it had to give up on, and a pool wait that ran
 * out (`connectionTimeoutMillis`) as plain Errors: these are their messages (pg 8, pg-pool 3).
 */
const LOST_CONNECTION = [
  /^Connection terminated/,
  /^Client has encountered a connection error and is not queryable/,
  /^Client was closed and is not queryable/,
  /^timeout exceeded when trying to connect/,
  /^Connection terminated due to connection timeout/,
];

interface ErrorLike {
  code?: unknown;
  message?: unknown;
  cause?: unknown;
  errors?: unknown;
}

/** The server reached cannot write now (a standby, a node being promoted, a read-only database). */
export function isReadOnlyDatabase(error: unknown, depth = 0): boolean {
  if (!error || typeof error !== 'object' || depth > 3) return false;
  const e = error as ErrorLike;
  if (e.code === READ_ONLY_SQLSTATE) return true;
  if (typeof e.message === 'string' && STANDBY_MESSAGES.some((pattern) => pattern.test(e.message as string))) return true;
  return isReadOnlyDatabase(e.cause, depth + 1);
}

export function isDatabaseUnavailable(error: unknown, depth = 0): boolean {
  if (!error || typeof error !== 'object' || depth > 3) return false;
  const e = error as ErrorLike;
  if (typeof e.code === 'string') {
    if (UNAVAILABLE_SQLSTATES.has(e.code) || e.code.startsWith('08') || NETWORK_CODES.has(e.code)) return true;
  }
  if (typeof e.message === 'string' && LOST_CONNECTION.some((pattern) => pattern.test(e.message as string))) return true;
  if (isReadOnlyDatabase(e, depth)) return true;
  // A refused connection to "localhost" is an AggregateError of one refusal per address.
  if (Array.isArray(e.errors) && e.errors.length > 0 && e.errors.every((inner) => isDatabaseUnavailable(inner, depth + 1))) return true;
  return isDatabaseUnavailable(e.cause, depth + 1);
}

export const serviceUnavailable = (message = 'The service is unavailable for a moment (its database cannot be reached).') =>
  new ApiError('service_unavailable', `${message} Retry in ${UNAVAILABLE_RETRY_AFTER_SECONDS} seconds.`, {
    headers: { 'Retry-After': String(UNAVAILABLE_RETRY_AFTER_SECONDS) },
  });

/**
 * 57014 query_canceled: the statement ran past `statement_timeout` (server/db/connection.ts), or an
 * operator cancelled it (pg_cancel_backend). Neither is the request's fault nor a bug: the database
 * is there, but busier than it should be or blocked on a lock, so a 503 with Retry-After; since
 * the statement never finished, a write stored nothing.
 */
export function isStatementTimeout(error: unknown, depth = 0): boolean {
  if (!error || typeof error !== 'object' || depth > 3) return false;
  const e = error as ErrorLike;
  return e.code === '57014' || isStatementTimeout(e.cause, depth + 1);
}

/** The 503 of a failure that is the database's (away, or a statement cut), else undefined. */
export function databaseFault(error: unknown): ApiError | undefined {
  if (isStatementTimeout(error)) return serviceUnavailable('The request took too long in the database and was stopped.');
  if (isDatabaseUnavailable(error)) return serviceUnavailable();
  return undefined;
}
