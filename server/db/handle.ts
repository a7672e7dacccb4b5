/** What opening a database gives (server/db/database.ts). */
import type { Kysely } from 'kysely';
import type pg from 'pg';
import type { Replica } from './reads.js';
import type { Database } from './schema.js';

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
  /**
   * A streaming replica (DATABASE_REPLICA_URL, PostgreSQL only) for the reads whose caller accepts
   * `Read-Consistency: eventual` (server/db/replica.ts); absent: every read is the primary's.
   */
  replica?: Replica;
  close(): Promise<void>;
}

/**
 * How DATABASE_URL is reached: `session`, directly (or through a session-mode pooler);
 * `transaction`, through a transaction-mode pooler such as PgBouncer (server/db/connection.ts).
 */
export type DatabasePooling = 'session' | 'transaction';
