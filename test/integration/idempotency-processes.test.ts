/** The promise under real concurrency: two server processes on one PostgreSQL, one key. */
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { mintTokenForOrganisation } from '../../server/tokens/tokens.service.js';
import { createTestDatabase, usingPostgres, type TestDatabase } from '../support/database.js';
import { readJson } from '../support/json.js';
import { startServerProcess, type RunningServer } from '../support/processes.js';
import { checkResponse } from '../support/spec-check.js';

describe.runIf(usingPostgres)('two server processes, one key', () => {
  let database: TestDatabase;
  const servers: RunningServer[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    await database?.close();
  });

  it('30 concurrent requests: exactly one client; every answer the same 201 or a 409; no 500', { timeout: 120_000 }, async () => {
    database = await createTestDatabase();
    const { token, orgId } = await mintTokenForOrganisation(database.db, { orgName: 'Two processes', plan: 'studio' });
    // 30 requests of one organisation at once: no concurrency limit.
    servers.push(...(await Promise.all([0, 1].map(() => startServerProcess({ DATABASE_URL: database.url, CONCURRENCY_LIMIT: '0' })))));
    for (let round = 0; round < 3; round++) {
      const key = randomUUID();
      const answers = await Promise.all(
        Array.from({ length: 30 }, async (_, i) => {
          const response = await fetch(`${servers[i % 2]!.url}/clients`, {
            method: 'POST',
            headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', 'Idempotency-Key': key },
            body: JSON.stringify({ name: `Round ${round}` }),
          });
          const body = await readJson(response);
          expect(checkResponse('POST', '/clients', response.status, response.headers, body)).toEqual([]);
          return { status: response.status, body };
        }),
      );
      const statuses = answers.map((a) => a.status);
      expect(
        statuses.every((s) => s === 201 || s === 409),
        statuses.join(','),
      ).toBe(true);
      const created = answers.filter((a) => a.status === 201).map((a) => JSON.stringify(a.body));
      expect(created.length).toBeGreaterThanOrEqual(1);
      expect(new Set(created).size).toBe(1);
      const rows = await database.db
        .selectFrom('clients')
        .select('id')
        .where('org_id', '=', orgId)
        .where('name', '=', `Round ${round}`)
        .execute();
      expect(rows).toHaveLength(1);
    }
  });
});
