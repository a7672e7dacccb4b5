/**
 * Opens the database: a PostgreSQL server (server/db/connection.ts) when a URL is given, else the
 * embedded PGlite (server/db/embedded.ts).
 */
import { openPostgres } from './connection.js';
import { openPglite } from './embedded.js';
import type { DatabaseHandle, DatabasePooling } from './handle.js';

export type { DatabaseHandle } from './handle.js';

export interface DatabaseOptions {
  /** PostgreSQL connection string; when absent, the embedded PGlite is used. */
  databaseUrl?: string | undefined;
  /** Where PGlite keeps its files; `memory://` keeps nothing. */
  dataDir?: string;
  poolSize?: number;
  /** Told of every error a pooled connection reports (one lost while idle or while checked out). */
  onConnectionError?: (error: Error) => void;
  /** `transaction`: DATABASE_URL is a transaction-mode pooler (server/db/connection.ts). */
  pooling?: DatabasePooling;
  /**
   * PostgreSQL: milliseconds any one statement may run (DATABASE_STATEMENT_TIMEOUT_MS), 0 or absent
   * for no limit (server/db/connection.ts). PGlite has none: it runs in this process's one thread,
   * where nothing could interrupt a statement.
   */
  statementTimeoutMs?: number | undefined;
}

export async function openDatabase(options: DatabaseOptions): Promise<DatabaseHandle> {
  if (options.databaseUrl)
    return openPostgres(options.databaseUrl, {
      max: options.poolSize ?? 10,
      onConnectionError: options.onConnectionError,
      pooling: options.pooling,
      statementTimeoutMs: options.statementTimeoutMs,
    });
  return openPglite(options.dataDir ?? './data');
}
