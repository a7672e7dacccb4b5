/**
 * A fresh, migrated database per caller: a new PostgreSQL database when TEST_DATABASE_URL is set
 * (dropped again on close), an in-memory PGlite otherwise.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openDatabase, type DatabaseHandle } from '../../server/db/database.js';
import { migrateOrThrow } from '../../server/db/migrate.js';

export const usingPostgres = Boolean(process.env.TEST_DATABASE_URL);

export interface TestDatabase extends DatabaseHandle {
  /** The connection string of this database (PostgreSQL only), for a second server process. */
  url: string | undefined;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const adminUrl = process.env.TEST_DATABASE_URL;
  if (!adminUrl) {
    const handle = await openDatabase({ dataDir: 'memory://' });
    await migrateOrThrow(handle.db);
    return { ...handle, url: undefined };
  }
  const name = `clients_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const handle = await openDatabase({ databaseUrl: url.toString(), poolSize: 10 });
  await migrateOrThrow(handle.db);
  return {
    ...handle,
    url: url.toString(),
    close: async () => {
      await handle.close();
      const dropper = new pg.Client({ connectionString: adminUrl });
      await dropper.connect();
      await dropper.query(`drop database if exists ${name} with (force)`);
      await dropper.end();
    },
  };
}

/**
 * Runs `during` while another session of the database at `url` holds `lock`: the statements run
 * in its open transaction (`select … for update`, `lock table …`), rolled back afterwards.
 */
export async function whileLocked<T>(url: string, lock: string, during: () => Promise<T>): Promise<T> {
  const blocker = new pg.Client({ connectionString: url });
  await blocker.connect();
  try {
    await blocker.query('begin');
    await blocker.query(lock);
    return await during();
  } finally {
    await blocker.query('rollback').catch(() => {});
    await blocker.end();
  }
}
