import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { Kysely, PostgresDialect } from 'kysely';
import { PGliteDialect } from 'kysely-pglite-dialect';
import pg from 'pg';
import lockfile from 'proper-lockfile';
import type { Database } from './schema.js';
import { preparedStatementNames } from './statements.js';

type PGliteClient = ConstructorParameters<typeof PGliteDialect>[0];

export interface DatabaseHandle {
  db: Kysely<Database>;
  /** `postgres` for a PostgreSQL server, `pglite` for the embedded database. */
  kind: 'postgres' | 'pglite';
  /** The connection pool of a PostgreSQL server (absent on PGlite), for stores that need pg itself. */
  pool?: pg.Pool;
  /**
   * Connections for rate-limit counters (PostgreSQL only), whose commits do not wait for the WAL to
   * reach the disk (`synchronous_commit = off`). Every request of a token updates that token's one
   * counter row; waiting for a flush on each held the row for the flush, so requests of one token
   * queued behind each other. A crash can forget the last fraction of a second of counts, never a
   * client, a token or an Idempotency-Key, which go through `pool`.
   */
  counterPool?: pg.Pool;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** PostgreSQL connection string; when absent, the embedded PGlite is used. */
  databaseUrl?: string | undefined;
  /** Where PGlite keeps its files; `memory://` keeps nothing. */
  dataDir?: string;
  poolSize?: number;
  /** Told of every error a pooled connection reports (one lost while idle or while checked out). */
  onConnectionError?: (error: Error) => void;
}

export class DatabaseInUseError extends Error {
  constructor(dir: string) {
    super(
      `The embedded database in ${dir} is in use by another process (a running server?). ` +
        'Stop that process first, or set DATABASE_URL to use a PostgreSQL server, which many processes can share.',
    );
    this.name = 'DatabaseInUseError';
  }
}

export async function openDatabase(options: DatabaseOptions): Promise<DatabaseHandle> {
  if (options.databaseUrl) return openPostgres(options.databaseUrl, options.poolSize ?? 10, options.onConnectionError);
  return openPglite(options.dataDir ?? './data');
}

function openPostgres(connectionString: string, max: number, onConnectionError: (error: Error) => void = () => {}): DatabaseHandle {
  const pool = guardConnections(new pg.Pool({ connectionString, max, connectionTimeoutMillis: CONNECT_TIMEOUT_MS }), onConnectionError);
  pool.on('connect', prepareHotStatements);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const counterPool = guardConnections(
    new pg.Pool({ connectionString, max: Math.max(2, Math.ceil(max / 2)), options: '-c synchronous_commit=off', connectionTimeoutMillis: CONNECT_TIMEOUT_MS }),
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

/**
 * PGlite runs in this thread, and the dialect hands its one connection from query to query in
 * promise callbacks: with requests queued for it, query after query ran without the event loop
 * ever reaching its I/O phase, so requests that had arrived waited unread, for over a second at
 * the tail with 32 connections (measured with `npm run bench`). Each query first lets the loop
 * take in what has arrived.
 */
function yieldingToIo(client: PGliteClient): PGliteClient {
  return {
    query: async (...args: Parameters<PGliteClient['query']>) => {
      await new Promise<void>((resolve) => setImmediate(resolve));
      return client.query(...args);
    },
    close: () => client.close(),
  } as PGliteClient;
}

async function openPglite(dataDir: string): Promise<DatabaseHandle> {
  const { PGlite } = await import('@electric-sql/pglite');
  // pg_trgm ships with PGlite as a contrib extension; loaded, it backs the `q` search indexes.
  const { pg_trgm } = await import('@electric-sql/pglite/contrib/pg_trgm');
  const options = { extensions: { pg_trgm } };
  if (dataDir.startsWith('memory://')) {
    const client = await PGlite.create(options);
    const db = new Kysely<Database>({ dialect: new PGliteDialect(yieldingToIo(client)) });
    return { db, kind: 'pglite', close: () => db.destroy() };
  }
  const dir = resolve(dataDir);
  mkdirSync(dir, { recursive: true });
  // PGlite runs inside one process: a second process opening the same files would corrupt them.
  let release: () => Promise<void>;
  try {
    release = await lockfile.lock(dir, { stale: 10_000, update: 2_000, realpath: false });
  } catch (error) {
    if ((error as { code?: string }).code === 'ELOCKED') throw new DatabaseInUseError(dataDir);
    throw error;
  }
  try {
    const client = await PGlite.create(dir, options);
    const db = new Kysely<Database>({ dialect: new PGliteDialect(yieldingToIo(client)) });
    return {
      db,
      kind: 'pglite',
      close: async () => {
        await db.destroy();
        await release();
      },
    };
  } catch (error) {
    await release();
    throw error;
  }
}
