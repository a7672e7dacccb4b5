/**
 * Opens the database: a PostgreSQL server (server/db/connection.ts) when a URL is given, else the
 * embedded PGlite (server/db/embedded.ts).
 */
import { openPostgres } from './connection.js';
import { openPglite } from './embedded.js';
import type { DatabaseHandle, DatabasePooling } from './handle.js';
import type { ReadConsistency, ReplicaChange } from './reads.js';
import { openReplica } from './replica.js';

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
  /**
   * DATABASE_REPLICA_URL: a streaming replica of `databaseUrl` (or a balancer in front of several)
   * for eventual reads, with the same pooling and statement limit; ignored without `databaseUrl`.
   */
  replicaUrl?: string | undefined;
  /** DATABASE_REPLICA_MAX_LAG_MS: the staleness an eventual read may have at most. */
  replicaMaxLagMs?: number;
  /** Told each time the replica goes in or out of use, and why. */
  onReplicaChange?: (change: ReplicaChange) => void;
  /** Told where each eventual read was served: `eventual` on the replica, `strong` on the primary. */
  onEventualRead?: (served: ReadConsistency) => void;
  /** Tests: how often the replica's lag is measured (server/db/replica.ts). */
  replicaCheckIntervalMs?: number;
}

/** The staleness bound when none is set: a healthy replica, measured once a second, stays well within it. */
export const DEFAULT_REPLICA_MAX_LAG_MS = 2000;

export async function openDatabase(options: DatabaseOptions): Promise<DatabaseHandle> {
  const { databaseUrl, replicaUrl } = options;
  if (!databaseUrl) return openPglite(options.dataDir ?? './data');
  const connection = {
    max: options.poolSize ?? 10,
    onConnectionError: options.onConnectionError,
    pooling: options.pooling,
    statementTimeoutMs: options.statementTimeoutMs,
  };
  const primary = openPostgres(databaseUrl, connection);
  if (!replicaUrl) return primary;
  const replica = openReplica(replicaUrl, {
    ...connection,
    primary: primary.db,
    primaryUrl: databaseUrl,
    maxLagMs: options.replicaMaxLagMs ?? DEFAULT_REPLICA_MAX_LAG_MS,
    checkIntervalMs: options.replicaCheckIntervalMs,
    onChange: options.onReplicaChange,
    onEventualRead: options.onEventualRead,
  });
  return {
    ...primary,
    replica,
    close: async () => {
      await replica.close();
      await primary.close();
    },
  };
}
