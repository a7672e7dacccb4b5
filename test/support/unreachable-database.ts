/**
 * A database that cannot be reached: a Kysely over a pg pool pointed at a port where nothing
 * listens (every connection refused). The app's first query on a request, the token lookup,
 * fails as it does when PostgreSQL is down: a real 503 path, with no PostgreSQL server needed, so
 * it runs in the PGlite suite too.
 */
import { createServer } from 'node:net';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { guardConnections } from '../../server/db/connection.js';
import type { Database } from '../../server/db/schema.js';

/** A TCP port that was free a moment ago: bound, then released. */
export async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((listening) => probe.listen(0, '127.0.0.1', listening));
  const { port } = probe.address() as { port: number };
  await new Promise<void>((closed) => probe.close(() => closed()));
  return port;
}

export async function unreachableDatabase(): Promise<{ db: Kysely<Database>; pool: pg.Pool; close(): Promise<void> }> {
  const port = await closedPort();
  const pool = guardConnections(
    new pg.Pool({ host: '127.0.0.1', port, user: 'postgres', database: 'unreachable', connectionTimeoutMillis: 2_000 }),
    () => {},
  );
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return { db, pool, close: () => db.destroy() };
}
