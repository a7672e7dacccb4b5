/**
 * DATABASE_POOLING=transaction behind a real PgBouncer in transaction mode (Debian's 1.18), given
 * one server connection so that every client connection shares it: with named prepared statements
 * (the direct-connection default) the second connection to prepare a hot statement meets the
 * first one's (42P05), and creates fail; in pooler mode every create succeeds.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { openDatabase } from '../../server/db/database.js';
import type { DatabasePooling } from '../../server/db/handle.js';
import { mintTokenForOrganisation } from '../../server/tokens/tokens.service.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { havePgbouncer, startPgbouncer, throughPort, type Daemon } from '../support/external.js';
import { startTestServer } from '../support/server.js';

const configured = havePgbouncer && Boolean(process.env.TEST_DATABASE_URL);

describe.runIf(configured)('behind PgBouncer in transaction mode', () => {
  let direct: TestDatabase;
  let bouncer: Daemon;

  beforeAll(async () => {
    direct = await createTestDatabase();
    bouncer = await startPgbouncer(direct.url!, { mode: 'transaction', poolSize: 1 });
  }, 60_000);
  afterAll(async () => {
    await bouncer?.stop();
    await direct?.close();
  });

  /** 20 concurrent creates through PgBouncer; the statuses answered. */
  async function createsThrough(pooling: DatabasePooling): Promise<number[]> {
    const handle = await openDatabase({ databaseUrl: throughPort(direct.url!, bouncer.port), poolSize: 8, pooling });
    // 20 requests of one organisation at once: no concurrency limit.
    const server = await startTestServer({ concurrencyLimit: false }, { database: { ...handle, url: undefined } });
    try {
      const { token } = await mintTokenForOrganisation(direct.db, { orgName: `pooler-${pooling}-${Date.now()}`, plan: 'studio' });
      // Plain fetch: a 500 here is what the test looks for, not a response for contract coverage.
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          fetch(`${server.serverUrl}/clients`, {
            method: 'POST',
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': randomUUID() },
            body: JSON.stringify({ name: `Client ${i}` }),
          }).then(async (response) => {
            await response.arrayBuffer();
            return response.status;
          }),
        ),
      );
      return answers;
    } finally {
      await server.close();
      await handle.close();
    }
  }

  test('named prepared statements fail through it (the reason for pooler mode)', async () => {
    const statuses = await createsThrough('session');
    expect(statuses.filter((status) => status === 201).length).toBeGreaterThan(0);
    expect(statuses.filter((status) => status >= 500).length).toBeGreaterThan(0);
  }, 60_000);

  test('with DATABASE_POOLING=transaction every create succeeds', async () => {
    const statuses = await createsThrough('transaction');
    expect(statuses).toEqual(Array(20).fill(201));
  }, 60_000);
});
