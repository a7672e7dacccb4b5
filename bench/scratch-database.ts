/**
 * A scratch PostgreSQL database for one benchmark run, on the server of an admin connection string:
 * created, opened (server/db/database.ts, as the server opens it), and dropped with everything in
 * it when the run ends.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { type DatabaseHandle, openDatabase } from '../server/db/database.js';

export interface ScratchDatabase {
  /** Its connection string, for the processes the benchmark starts. */
  url: string;
  handle: DatabaseHandle;
  /** Closes the handle and drops the database, whoever is still connected. */
  drop(): Promise<void>;
}

async function asAdmin(adminUrl: string, statement: string): Promise<void> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(statement);
  } finally {
    await admin.end();
  }
}

export async function createScratchDatabase(
  adminUrl: string,
  prefix: string,
  options: { poolSize?: number } = {},
): Promise<ScratchDatabase> {
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  await asAdmin(adminUrl, `create database ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const handle = await openDatabase({ databaseUrl: url.toString(), poolSize: options.poolSize });
  return {
    url: url.toString(),
    handle,
    drop: async () => {
      await handle.close();
      await asAdmin(adminUrl, `drop database if exists ${name} with (force)`);
    },
  };
}
