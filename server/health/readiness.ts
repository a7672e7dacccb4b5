/**
 * Readiness (`GET /readyz`): whether this instance should get traffic. It should not while it
 * drains before stopping (server/lifecycle/shutdown.ts), while its database does not answer, or
 * while the database lacks a migration this version needs (migrations run as their own deploy
 * step: see docs/operations.md); migrations of a newer version do not make it unready. Liveness (`GET /healthz`) asks none of this: a process whose
 * database is away is alive and will serve again without a restart.
 */
import type { Kysely } from 'kysely';
import { isDatabaseUnavailable, serviceUnavailable } from '../db/faults.js';
import { pendingMigrations } from '../db/migrate.js';
import type { Database } from '../db/schema.js';

export interface Readiness {
  /** From now on readiness answers 503 (SIGTERM or SIGINT: the instance is about to stop). */
  startDraining(): void;
  readonly draining: boolean;
  /** The operation's handler: 200 `{ status: 'ready' }`, or throws the 503 to answer. */
  getReadiness(context: { db?: Kysely<Database> | undefined }): Promise<{ status: 200; body: { status: 'ready' } }>;
}

export function createReadiness(): Readiness {
  let draining = false;
  return {
    startDraining: () => {
      draining = true;
    },
    get draining() {
      return draining;
    },
    getReadiness: async ({ db }) => {
      if (draining) throw serviceUnavailable('This instance is shutting down.');
      let pending: string[];
      try {
        pending = await pendingMigrations(db!);
      } catch (error) {
        // No migration table is a database not yet migrated: not ready either, and not a 500.
        if (isDatabaseUnavailable(error)) throw error;
        pending = ['all'];
      }
      if (pending.length > 0)
        throw serviceUnavailable('The database has not run the migrations this version needs (run `npm run migrate`).');
      return { status: 200, body: { status: 'ready' } };
    },
  };
}
