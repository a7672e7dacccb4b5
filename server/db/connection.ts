/** A PostgreSQL server: the pool, the rate-limit counters' pool, and hot statements prepared per connection. */
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { DatabaseHandle } from './handle.js';
import { preparedStatementNames } from './prepared.js';
import type { Database } from './schema.js';

export function openPostgres(connectionString: string, max: number): DatabaseHandle {
  const pool = new pg.Pool({ connectionString, max });
  // An idle client that loses its connection must not crash the process; the pool replaces it.
  pool.on('error', () => {});
  pool.on('connect', prepareHotStatements);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const counterPool = new pg.Pool({ connectionString, max: Math.max(2, Math.ceil(max / 2)), options: '-c synchronous_commit=off' });
  counterPool.on('error', () => {});
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
