/**
 * Readiness (`GET /readyz`): whether this instance should get traffic. It should not while it
 * drains before stopping (server/lifecycle/shutdown.ts), while its database does not answer, or
 * while the database lacks a migration this version needs (migrations run as their own deploy
 * step: see docs/operations.md), or while the database it reaches is read only (a standby, a node
 * not yet promoted in a failover: docs/high-availability.md); migrations of a newer version do not
 * make it unready. Liveness (`GET /healthz`) asks none of this: a process whose
 * database is away is alive and will serve again without a restart.
 *
 * The probe needs no token, so anyone can send it: its answer comes from one check of the
 * database shared by every probe within a second of it (CHECK_MAX_AGE_MS), and probes that
 * arrive while a check runs wait for that check rather than start their own. However many probes
 * come, the database sees about one query a second from them; a database that goes away is seen
 * within a second. Draining answers at once, without the database.
 */
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { databaseFault, serviceUnavailable } from '../db/faults.js';
import { databaseReadiness } from '../db/migrate.js';
import type { Database } from '../db/schema.js';

export interface Readiness {
  /** From now on readiness answers 503 (SIGTERM or SIGINT: the instance is about to stop). */
  startDraining(): void;
  readonly draining: boolean;
  /** The operation's handler: 200 `{ status: 'ready' }`, or throws the 503 to answer. */
  getReadiness(context: ReadinessContext): Promise<{ status: 200; body: { status: 'ready' } }>;
}

/** What the check reads of the handler's context; `log` only when a check fails. */
interface ReadinessContext {
  db?: Kysely<Database> | undefined;
  readonly log?: Logger;
}

export interface ReadinessOptions {
  /** Milliseconds on a steady clock (tests move it). */
  now?: () => number;
}

/** How long one check's answer is reused. */
const CHECK_MAX_AGE_MS = 1000;

const READY = { status: 200, body: { status: 'ready' } } as const;

export function createReadiness(options: ReadinessOptions = {}): Readiness {
  const now = options.now ?? (() => performance.now());
  let draining = false;
  /**
   * The last check and when it started: it settles to ready, or to the 503 to answer. One still
   * running is shared however old it is, so a database slow to answer does not gather checks.
   */
  let last: { startedAt: number; settled: boolean; outcome: Promise<void> } | undefined;

  async function check(context: ReadinessContext): Promise<void> {
    let pending: string[];
    let readOnly = false;
    try {
      ({ pendingMigrations: pending, readOnly } = await databaseReadiness(context.db!));
    } catch (error) {
      const fault = databaseFault(error);
      if (fault) {
        // Logged once per check, not once per probe that shares it.
        context.log?.warn({ err: error }, 'readiness: database unavailable');
        throw fault;
      }
      // No migration table is a database not yet migrated: not ready either, and not a 500.
      pending = ['all'];
    }
    if (pending.length > 0) throw serviceUnavailable('The database has not run the migrations this version needs (run `npm run migrate`).');
    if (readOnly) {
      context.log?.warn('readiness: the database is read only (a standby, or a primary not yet promoted)');
      throw serviceUnavailable('The database cannot take writes for a moment (it is read only, as during a failover).');
    }
  }

  return {
    startDraining: () => {
      draining = true;
    },
    get draining() {
      return draining;
    },
    getReadiness: async (context) => {
      if (draining) throw serviceUnavailable('This instance is shutting down.');
      const at = now();
      if (!last || (last.settled && at - last.startedAt >= CHECK_MAX_AGE_MS)) {
        const current = { startedAt: at, settled: false, outcome: check(context) };
        // Observed here, so that a failed check nobody else awaits is never an unhandled rejection.
        const settle = () => {
          current.settled = true;
        };
        current.outcome.then(settle, settle);
        last = current;
      }
      await last.outcome;
      return READY;
    },
  };
}
