/** The operations that need no token: health, readiness, the API reference and the spec itself. */
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import type { KyselyPlugin } from 'kysely';
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

/** A GET as sent by node:http, which adds no Accept-Encoding of its own (fetch does): the bytes as sent. */
function rawGet(url: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }>((resolve, reject) => {
    httpRequest(url, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    })
      .on('error', reject)
      .end();
  });
}

describe.each([
  { path: '/docs', file: readFileSync(new URL('../../generated/docs.html', import.meta.url)) },
  { path: '/openapi.json', file: Buffer.from(JSON.stringify(bundledSpec)) },
])('GET $path, compressed and revalidated', ({ path, file }) => {
  const decode: Record<string, (body: Buffer) => Buffer> = { br: brotliDecompressSync, gzip: gunzipSync };

  it.each([
    ['br', 'br'],
    ['gzip', 'gzip'],
    // Chromium's, and curl --compressed's: br is the smaller of the two.
    ['gzip, deflate, br, zstd', 'br'],
    ['deflate, gzip;q=1.0, *;q=0.5', 'gzip'],
    ['br;q=0.5, gzip', 'gzip'],
    ['*', 'br'],
  ])('Accept-Encoding %j: %s, the same bytes once decompressed', async (acceptEncoding, coding) => {
    const response = await rawGet(`${server.serverUrl}${path}`, { 'accept-encoding': acceptEncoding });
    expect(response.status).toBe(200);
    expect(response.headers).toMatchObject({ 'content-encoding': coding, vary: 'Accept-Encoding', 'cache-control': 'no-cache' });
    expect(Number(response.headers['content-length'])).toBe(response.body.length);
    expect(response.body.length).toBeLessThan(file.length / 2);
    expect(decode[coding]!(response.body).equals(file)).toBe(true);
  });

  it('sends the body as it is to a client that accepts no compression, or refuses both', async () => {
    const variants: Record<string, string>[] = [
      {},
      { 'accept-encoding': 'identity' },
      { 'accept-encoding': 'br;q=0, gzip;q=0' },
      { 'accept-encoding': 'deflate' },
    ];
    for (const headers of variants) {
      const response = await rawGet(`${server.serverUrl}${path}`, headers);
      expect(response.status).toBe(200);
      expect(response.headers['content-encoding']).toBeUndefined();
      expect(response.headers.vary).toBe('Accept-Encoding');
      expect(response.body.equals(file)).toBe(true);
    }
  });

  it('gives each coding its own strong ETag, the same on every request, and 304 with no body to a match', async () => {
    const tags: Record<string, string> = {};
    for (const coding of ['br', 'gzip', 'identity']) {
      const first = await rawGet(`${server.serverUrl}${path}`, { 'accept-encoding': coding });
      const again = await rawGet(`${server.serverUrl}${path}`, { 'accept-encoding': coding });
      tags[coding] = first.headers.etag as string;
      expect(tags[coding]).toMatch(/^"[A-Za-z0-9_-]+"$/);
      expect(again.headers.etag).toBe(tags[coding]);
      expect(again.body.equals(first.body)).toBe(true);

      for (const ifNoneMatch of [tags[coding], `W/${tags[coding]}`, `"other", ${tags[coding]}`, '*']) {
        const revalidated = await rawGet(`${server.serverUrl}${path}`, { 'accept-encoding': coding, 'if-none-match': ifNoneMatch });
        expect(revalidated.status, ifNoneMatch).toBe(304);
        expect(revalidated.body.length).toBe(0);
        expect(revalidated.headers).toMatchObject({ etag: tags[coding], vary: 'Accept-Encoding', 'cache-control': 'no-cache' });
      }
    }
    expect(new Set(Object.values(tags)).size).toBe(3);
    // A tag of another coding does not name this representation: the whole body again.
    const other = await rawGet(`${server.serverUrl}${path}`, { 'accept-encoding': 'br', 'if-none-match': tags.gzip! });
    expect(other.status).toBe(200);
    expect(brotliDecompressSync(other.body).equals(file)).toBe(true);
  });

  it('is 304 as the spec documents it, through the spec-checking client', async () => {
    const first = await get(server, path);
    expect(first.status).toBe(200);
    const etag = first.headers.get('etag')!;
    const check = specCheckingFetch();
    const revalidated = await check(new Request(`${server.baseUrl}${path}`, { headers: { 'If-None-Match': etag } }));
    expect(revalidated.status).toBe(304);
    expect(revalidated.headers.get('etag')).toBe(etag);
    expect(await revalidated.text()).toBe('');
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
      // Past the age of any check made before the row was there.
      await new Promise((resolve) => setTimeout(resolve, 1_100));
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
      // Seen once the check made before the change (at most a second old) has aged out.
      const response = await readinessOnceItIs(503);
      expect(await response.json()).toMatchObject({ error: { code: 'service_unavailable', message: expect.stringContaining('migrat') } });
    } finally {
      await sql`insert into kysely_migration (name, timestamp) values (${last.name}, ${last.timestamp})`.execute(db);
    }
    await readinessOnceItIs(200);
  });

  /** GET /readyz of `server` until it answers `status`, for at most 5 s (a check lives a second). */
  async function readinessOnceItIs(status: number): Promise<Response> {
    const started = Date.now();
    for (;;) {
      const response = await get(server, '/readyz');
      if (response.status === status || Date.now() - started > 5_000) {
        expect(response.status).toBe(status);
        return response;
      }
      await response.arrayBuffer();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
});

/**
 * A readiness whose database is this test's: each query it sends is counted, and while `away` is
 * set each fails as a refused connection does.
 */
function countingDatabase(base: TestServer) {
  const state = { queries: 0, away: false };
  const plugin: KyselyPlugin = {
    transformQuery: ({ node }) => {
      state.queries++;
      if (state.away) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
      return node;
    },
    transformResult: async ({ result }) => result,
  };
  return { state, db: base.database.db.withPlugin(plugin) };
}

describe('readiness under a flood of probes', () => {
  it('asks the database once for probes that come together, and answers from that check for a second', async () => {
    let now = 0;
    const { state, db } = countingDatabase(server);
    const readiness = createReadiness({ now: () => now });
    const probed = await startTestServer({ db, readiness }, { database: server.database });
    try {
      const together = await Promise.all(Array.from({ length: 50 }, () => fetch(`${probed.baseUrl}/readyz`)));
      expect(together.map((response) => response.status)).toEqual(Array(50).fill(200));
      expect(state.queries).toBe(1);

      // The database goes away: the check of a moment ago still answers, until it is a second old.
      state.away = true;
      now = 999;
      expect((await get(probed, '/readyz')).status).toBe(200);
      expect(state.queries).toBe(1);
      now = 1_000;
      const gone = await get(probed, '/readyz');
      expect(gone.status).toBe(503);
      expect(gone.headers.get('Retry-After')).toBe('2');
      expect(await gone.json()).toMatchObject({ error: { code: 'service_unavailable' } });
      expect(state.queries).toBe(2);
      // The failed check is shared too: a dead database is not asked once per probe either.
      expect((await get(probed, '/readyz')).status).toBe(503);
      expect(state.queries).toBe(2);

      // Back: seen by the first probe after the failed check is a second old.
      state.away = false;
      now = 2_000;
      expect((await get(probed, '/readyz')).status).toBe(200);
      expect(state.queries).toBe(3);

      // Draining is answered at once, without the database, however fresh the last check.
      readiness.startDraining();
      const draining = await get(probed, '/readyz');
      expect(draining.status).toBe(503);
      expect(await draining.json()).toMatchObject({ error: { message: expect.stringContaining('shutting down') } });
      expect(state.queries).toBe(3);
    } finally {
      await probed.close();
    }
  });

  it('costs about one query a second: 500 probes over two seconds make at most one check per second begun', async () => {
    const { state, db } = countingDatabase(server);
    const probed = await startTestServer({ db }, { database: server.database });
    try {
      const started = performance.now();
      const statuses: number[] = [];
      // Ten volleys of 50 probes, one every 200 ms.
      for (let volley = 0; volley < 10; volley++) {
        const answers = await Promise.all(
          Array.from({ length: 50 }, async () => {
            const response = await fetch(`${probed.baseUrl}/readyz`);
            await response.arrayBuffer();
            return response.status;
          }),
        );
        statuses.push(...answers);
        const next = started + (volley + 1) * 200;
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - performance.now())));
      }
      const elapsedSeconds = (performance.now() - started) / 1000;
      expect(statuses).toEqual(Array(500).fill(200));
      // A new check starts only once the last one is a second old.
      expect(state.queries).toBeGreaterThanOrEqual(1);
      expect(state.queries).toBeLessThanOrEqual(Math.floor(elapsedSeconds) + 1);
    } finally {
      await probed.close();
    }
  });
});
