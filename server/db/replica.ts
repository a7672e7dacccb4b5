/**
 * Reads that may go to a streaming replica (DATABASE_REPLICA_URL): what a caller accepts with
 * `Read-Consistency: eventual` (the spec's ReadConsistency), and only on the reads whose service
 * offers it (lists, searches, the feed). Everything else, and every eventual read the replica
 * cannot serve, goes to the primary.
 *
 * The staleness bound. Once a second (never per request) a check asks the primary for its WAL
 * flush position, then the replica for how far it has replayed, and asks the replica again every
 * POLL_MS until it has replayed that position (or the bound has passed). Every commit the primary
 * had acknowledged when the check began was flushed below that position, so once the replica has
 * replayed it, it holds every write acknowledged before the check began: `freshAsOf`. An
 * eventual read goes to the replica only while `now - freshAsOf` is within the bound
 * (DATABASE_REPLICA_MAX_LAG_MS): it then holds every write acknowledged more than the bound
 * before it. Comparing WAL positions, not `now() - pg_last_xact_replay_timestamp()`, keeps an idle
 * primary (no commit to replay, the timestamp ages) from looking behind, and needs no clock shared
 * between machines: both ends of the measure are this process's steady clock. A check that fails
 * (either side unreachable, or a node that is not a standby of this primary) and a read that fails
 * on the replica take it out until a check succeeds again; while it is out, or behind, eventual
 * reads are strong reads and nothing fails for it.
 *
 * The replica's pool is the primary's kind (server/db/connection.ts): the same pooler mode and
 * statement limit. The checks use one connection to each side of their own, so that busy request
 * pools never delay them. Behind a load balancer over several replicas the checks measure the one
 * their connection reaches: let the balancer drop replicas that lag (docs/scaling.md).
 */
import type { Kysely } from 'kysely';
import pg from 'pg';
import { guardConnections, openRequestPool, type PostgresOptions } from './connection.js';
import { isDatabaseUnavailable } from './faults.js';
import type { ReadConsistency, Replica, ReplicaChange, ReplicaState } from './reads.js';
import type { Database } from './schema.js';

/** How often the replica's lag is measured. */
export const REPLICA_CHECK_INTERVAL_MS = 1000;
/** How often a check asks the replica again while it has not reached the primary's position. */
const POLL_MS = 20;
/** A check's connection and query may take this long before the side is taken as unreachable. */
const CHECK_TIMEOUT_MS = 2000;
/**
 * How long an eventual read waits for a replica connection before it is read from the primary: a
 * replica that does not answer must not hold requests for the primary's 5 s.
 */
const REPLICA_CONNECT_TIMEOUT_MS = 1000;

export interface ReplicaOptions extends PostgresOptions {
  /** The primary, where every read goes that the replica does not serve. */
  primary: Kysely<Database>;
  /** DATABASE_URL: where the check reads the primary's position. */
  primaryUrl: string;
  /** DATABASE_REPLICA_MAX_LAG_MS. */
  maxLagMs: number;
  /** REPLICA_CHECK_INTERVAL_MS unless a test sets another. */
  checkIntervalMs?: number;
  /** Milliseconds on a steady clock. */
  now?: () => number;
  /** Told each time the state changes (the server logs it). */
  onChange?: (change: ReplicaChange) => void;
  /** Told where each eventual read was served (metrics). */
  onEventualRead?: (served: ReadConsistency) => void;
}

/** 'X/Y' (two hexadecimal halves) as one number, to compare positions. */
function lsn(text: string): bigint {
  const [high, low] = text.split('/');
  return (BigInt(`0x${high}`) << 32n) + BigInt(`0x${low}`);
}

/**
 * The failures after which a read is made again on the primary: the replica away (connection
 * refused or lost, shutting down), or a read cancelled because replaying the primary's changes
 * needed what it held (SQLSTATE 40001, "conflict with recovery"; never raised on the primary,
 * where no transaction is serializable).
 */
function isReplicaFault(error: unknown): boolean {
  if (isDatabaseUnavailable(error)) return true;
  const code = (error as { code?: unknown } | null)?.code;
  return code === '40001';
}

const PRIMARY_POSITION = `select pg_current_wal_flush_lsn()::text as position,
  (select system_identifier::text from pg_control_system()) as system`;
const REPLICA_POSITION = `select pg_is_in_recovery() as standby, pg_last_wal_replay_lsn()::text as position,
  (select system_identifier::text from pg_control_system()) as system`;

export function openReplica(url: string, options: ReplicaOptions): Replica {
  const { maxLagMs, onChange = () => {}, onConnectionError = () => {}, onEventualRead = () => {} } = options;
  const now = options.now ?? (() => performance.now());
  const interval = options.checkIntervalMs ?? REPLICA_CHECK_INTERVAL_MS;
  const { pool, db } = openRequestPool(url, { ...options, connectTimeoutMs: REPLICA_CONNECT_TIMEOUT_MS });
  const checker = (connectionString: string) =>
    guardConnections(
      new pg.Pool({ connectionString, max: 1, connectionTimeoutMillis: CHECK_TIMEOUT_MS, query_timeout: CHECK_TIMEOUT_MS }),
      onConnectionError,
    );
  const primaryCheck = checker(options.primaryUrl);
  const replicaCheck = checker(url);

  /** On the steady clock: the replica holds every write acknowledged before this. */
  let freshAsOf = Number.NEGATIVE_INFINITY;
  let state: ReplicaState = 'unknown';
  const settle = (next: ReplicaState, detail: Omit<ReplicaChange, 'state'> = {}) => {
    if (next !== 'usable') freshAsOf = Number.NEGATIVE_INFINITY;
    if (next === state) return;
    state = next;
    onChange({ state, ...detail });
  };

  let stopped = false;
  async function check(): Promise<void> {
    const began = now();
    let primary: { position: string; system: string };
    try {
      primary = (await primaryCheck.query(PRIMARY_POSITION)).rows[0];
    } catch (error) {
      // Without the primary's position nothing bounds the replica's staleness: reads go to the
      // primary, which answers as it can.
      return settle('primary_unreachable', { error: error as Error });
    }
    const target = lsn(primary.position);
    for (;;) {
      let replica: { standby: boolean; position: string | null; system: string };
      try {
        replica = (await replicaCheck.query(REPLICA_POSITION)).rows[0];
      } catch (error) {
        return settle('unreachable', { error: error as Error });
      }
      // A promoted replica, or a standby of another cluster, has positions that mean nothing here.
      if (!replica.standby || replica.position === null || replica.system !== primary.system) return settle('not_a_standby');
      const elapsed = now() - began;
      if (lsn(replica.position) >= target) {
        freshAsOf = Math.max(freshAsOf, began);
        return settle('usable', { lagMs: Math.round(elapsed) });
      }
      if (elapsed > maxLagMs) return settle('lagging', { lagMs: Math.round(elapsed) });
      if (stopped) return;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const loop = () => {
    const began = now();
    running = check().finally(() => {
      if (stopped) return;
      // At a fixed rate, so that a healthy replica's staleness stays within an interval and its lag.
      timer = setTimeout(loop, Math.max(0, began + interval - now()));
      timer.unref();
    });
  };
  loop();

  return {
    pool,
    state: () => state,
    stalenessSeconds: () => (now() - freshAsOf) / 1000,
    async read(consistency, read) {
      if (consistency === 'eventual') {
        if (now() - freshAsOf <= maxLagMs) {
          try {
            const value = await read(db);
            onEventualRead('eventual');
            return { value, consistency: 'eventual' };
          } catch (error) {
            if (!isReplicaFault(error)) throw error;
            settle('unreachable', { error: error as Error });
          }
        }
        onEventualRead('strong');
      }
      return { value: await read(options.primary), consistency: 'strong' };
    },
    async close() {
      stopped = true;
      clearTimeout(timer);
      await running;
      await Promise.all([db.destroy(), primaryCheck.end(), replicaCheck.end()]);
    },
  };
}
