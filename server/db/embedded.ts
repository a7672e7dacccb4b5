/** The embedded database: PGlite in this process, its files guarded by a lock file. */
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { Kysely } from 'kysely';
import { PGliteDialect } from 'kysely-pglite-dialect';
import lockfile from 'proper-lockfile';
import type { DatabaseHandle } from './handle.js';
import type { Database } from './schema.js';
import { withStatementSpans } from './traced.js';

type PGliteClient = ConstructorParameters<typeof PGliteDialect>[0];

export class DatabaseInUseError extends Error {
  constructor(dir: string) {
    super(
      `The embedded database in ${dir} is in use by another process (a running server?). ` +
        'Stop that process first, or set DATABASE_URL to use a PostgreSQL server, which many processes can share.',
    );
    this.name = 'DatabaseInUseError';
  }
}

/**
 * PGlite runs in this thread, and the dialect hands its one connection from query to query in
 * promise callbacks: with requests queued for it, query after query ran without the event loop
 * ever reaching its I/O phase, so requests that had arrived waited unread at the tail under load
 * (`npm run bench` shows it). Each query first lets the loop
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

export async function openPglite(dataDir: string): Promise<DatabaseHandle> {
  const { PGlite } = await import('@electric-sql/pglite');
  // pg_trgm ships with PGlite as a contrib extension; loaded, it backs the `q` search indexes.
  const { pg_trgm } = await import('@electric-sql/pglite/contrib/pg_trgm');
  const options = { extensions: { pg_trgm } };
  if (dataDir.startsWith('memory://')) {
    const client = await PGlite.create(options);
    const db = new Kysely<Database>({ dialect: withStatementSpans(new PGliteDialect(yieldingToIo(client))) });
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
    const db = new Kysely<Database>({ dialect: withStatementSpans(new PGliteDialect(yieldingToIo(client))) });
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
