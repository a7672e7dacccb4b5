/** The operations that need no token: health, readiness, the API reference and the spec itself. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReadiness } from '../../server/health/readiness.js';
import bundledSpec from '../../generated/openapi.json' with { type: 'json' };
import { startTestServer, type TestServer } from '../support/server.js';
import { specCheckingFetch } from '../support/spec-check.js';

let server: TestServer;
let failing: TestServer;
beforeAll(async () => {
  server = await startTestServer();
  const fault = async (): Promise<never> => {
    throw new Error('disk on fire');
  };
  failing = await startTestServer({ handlers: { getHealth: fault, getDocs: fault, getOpenApiDocument: fault } });
});
afterAll(async () => {
  await server?.close();
  await failing?.close();
});

// No Authorization header at all: these operations need none.
const get = (base: TestServer, path: string) => specCheckingFetch()(new Request(`${base.baseUrl}${path}`));

describe('without a token', () => {
  it('GET /healthz is 200 ok', async () => {
    const response = await get(server, '/healthz');
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ok' });
  });

  it('GET /readyz is 200 ready, without rate-limit fields', async () => {
    const response = await get(server, '/readyz');
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ready' });
    expect(response.headers.get('RateLimit-Policy')).toBeNull();
  });

  it('GET /openapi.json is the bundled spec', async () => {
    const response = await get(server, '/openapi.json');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await response.json()).toEqual(bundledSpec);
  });

  it('GET /docs is the reference page, with every operation', async () => {
    const response = await get(server, '/docs');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/html/);
    const page = await response.text();
    for (const op of Object.values(bundledSpec.paths).flatMap((item) => Object.values(item))) expect(page).toContain(op.summary);
    // Nothing loaded from elsewhere: no external script, style sheet or font.
    expect(page).not.toMatch(/<(script|link)[^>]+(src|href)="https?:/);
  });
});

describe('a failure inside the server', () => {
  it.each([['/healthz'], ['/openapi.json'], ['/docs']])('GET %s is a 500 internal_error', async (path) => {
    const response = await get(failing, path);
    expect(response.status).toBe(500);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('internal_error');
  });
});

describe('readiness', () => {
  it('is 503 with Retry-After once the instance drains, while liveness stays 200', async () => {
    const readiness = createReadiness();
    const draining = await startTestServer({ readiness }, { database: server.database });
    try {
      expect((await get(draining, '/readyz')).status).toBe(200);
      readiness.startDraining();
      const response = await get(draining, '/readyz');
      expect(response.status).toBe(503);
      expect(Number(response.headers.get('Retry-After'))).toBeGreaterThan(0);
      expect(await response.json()).toMatchObject({
        error: { code: 'service_unavailable', message: expect.stringContaining('shutting down') },
      });
      expect((await get(draining, '/healthz')).status).toBe(200);
    } finally {
      await draining.close();
    }
  });

  it('stays 200 when a newer version has run a migration this one does not know (a rolling deploy)', async () => {
    const { sql } = await import('kysely');
    await sql`insert into kysely_migration (name, timestamp) values ('2999_01_01_0001_from_a_newer_version', ${new Date().toISOString()})`.execute(
      server.database.db,
    );
    try {
      expect((await get(server, '/readyz')).status).toBe(200);
    } finally {
      await sql`delete from kysely_migration where name = '2999_01_01_0001_from_a_newer_version'`.execute(server.database.db);
    }
  });

  it('is 503 while the database lacks a migration this version needs', async () => {
    const { sql } = await import('kysely');
    const db = server.database.db;
    const { rows } = await sql<{
      name: string;
      timestamp: string;
    }>`select name, timestamp from kysely_migration order by name desc limit 1`.execute(db);
    const last = rows[0]!;
    await sql`delete from kysely_migration where name = ${last.name}`.execute(db);
    try {
      const response = await get(server, '/readyz');
      expect(response.status).toBe(503);
      expect(await response.json()).toMatchObject({ error: { code: 'service_unavailable', message: expect.stringContaining('migrat') } });
    } finally {
      await sql`insert into kysely_migration (name, timestamp) values (${last.name}, ${last.timestamp})`.execute(db);
    }
    expect((await get(server, '/readyz')).status).toBe(200);
  });
});
