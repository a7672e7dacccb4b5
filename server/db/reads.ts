/**
 * Which database a read uses: the primary, or a streaming replica (server/db/replica.ts) for a read
 * whose caller accepts `Read-Consistency: eventual` and whose service allows it.
 */
import type { Kysely } from 'kysely';
import type pg from 'pg';
import type { components } from '../../generated/api.js';
import type { Database } from './schema.js';

export type ReadConsistency = components['schemas']['ReadConsistency'];

export interface Served<T> {
  value: T;
  /** Where it was read: `eventual` on the replica, `strong` on the primary. */
  consistency: ReadConsistency;
}

/** The databases a read may use. Services choose: only a read that may be stale asks for `eventual`. */
export interface Reads {
  /** Runs `read` on the replica when `consistency` is `eventual` and the replica is within its bound, else on the primary. */
  read<T>(consistency: ReadConsistency, read: (db: Kysely<Database>) => Promise<T>): Promise<Served<T>>;
}

/** No replica (none configured, or the embedded database): every read is the primary's. */
export function primaryReads(db: Kysely<Database>): Reads {
  return { read: async (_consistency, read) => ({ value: await read(db), consistency: 'strong' }) };
}

/** What the last check found: `usable` within the bound, or why not. */
export type ReplicaState = 'unknown' | 'usable' | 'lagging' | 'unreachable' | 'not_a_standby' | 'primary_unreachable';

export interface ReplicaChange {
  state: ReplicaState;
  /** Milliseconds the replica took to reach the primary's position (usable), or at least this (lagging). */
  lagMs?: number;
  error?: Error;
}

export interface Replica extends Reads {
  pool: pg.Pool;
  state(): ReplicaState;
  /** Seconds of acknowledged writes an eventual read served now could miss at most; Infinity while the replica is out. */
  stalenessSeconds(): number;
  close(): Promise<void>;
}
