/**
 * Hostile requests, each refused the documented way where it reaches the app (400 naming the
 * field or `body`, 413) and Node's own way where it does not (431 for too many headers, 408 for a
 * connection that never finishes its headers), while other requests are served meanwhile. The
 * server is the app's own (server/http/http-server.ts) with short header timeouts, so that the
 * slow connections are refused in a second rather than Node's default minute.
 */
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../server/app.js';
import { mintTokenForOrganisation } from '../../server/tokens/tokens.service.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

let database: TestDatabase;
let server: Server;
let base: string;
let port: number;
let token: string;
let orgId: string;

beforeAll(async () => {
  database = await createTestDatabase();
  ({ token, orgId } = await mintTokenForOrganisation(database.db, { orgName: 'Hostile', plan: 'studio' }));
  const { createServer } = createApp({
    db: database.db,
    pool: database.counterPool,
    logger: pino({ level: 'silent' }),
    validateResponses: true,
    rateLimits: false,
  });
  server = createServer({ headersTimeout: 1_000, requestTimeout: 10_000, connectionsCheckingInterval: 250 });
  await new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening));
  port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((closed) => server?.close(closed));
  await database?.close();
});

const post = (body: RequestInit['body'], headers: Record<string, string> = {}) =>
  fetch(`${base}/clients`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', ...headers },
    body,
  });

/** A request of a well-behaved caller, made while the hostile one is under way. */
async function servedMeanwhile(): Promise<void> {
  const response = await post(JSON.stringify({ name: `meanwhile-${randomUUID()}` }), { 'Idempotency-Key': randomUUID() });
  expect(response.status).toBe(201);
}

const clientsCount = async () =>
  (await database.db.selectFrom('clients').select('id').where('org_id', '=', orgId).where('name', 'not like', 'meanwhile-%').execute())
    .length;

/** Writes raw bytes on a new connection and resolves with what came back once the server closed it. */
function raw(bytes: string | Buffer): Promise<string> {
  return new Promise((done, fail) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk.toString('latin1')));
    socket.on('close', () => done(answer));
    socket.on('error', (error) => (answer ? done(answer) : fail(error)));
    socket.end(bytes);
  });
}

async function expectRefusal(response: Response, status: number, code: string, field?: string) {
  const body = (await response.json()) as { error: { code: string; fields?: Record<string, string> } };
  expect({ status: response.status, code: body.error.code }).toEqual({ status, code });
  if (field) expect(Object.keys(body.error.fields ?? {})).toContain(field);
}

describe('bodies', () => {
  it('invalid UTF-8 is 400 naming body, and nothing is stored', async () => {
    const bytes = Buffer.concat([Buffer.from('{"name":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
    const [response] = await Promise.all([post(bytes, { 'Idempotency-Key': randomUUID() }), servedMeanwhile()]);
    await expectRefusal(response, 400, 'validation_failed', 'body');
    // Also with the charset said out loud, and a truncated sequence.
    await expectRefusal(await post(bytes, { 'Content-Type': 'application/json; charset=utf-8' }), 400, 'validation_failed', 'body');
    await expectRefusal(
      await post(Buffer.from([0x7b, 0x22, 0x6e, 0x61, 0x6d, 0x65, 0x22, 0x3a, 0x22, 0xe2, 0x82, 0x22, 0x7d])),
      400,
      'validation_failed',
      'body',
    );
    expect(await clientsCount()).toBe(0);
  });

  it('a 12 MB body is 413', async () => {
    const big = JSON.stringify({ name: 'Big', notes: 'x'.repeat(12 * 1024 * 1024) });
    const [response] = await Promise.all([post(big), servedMeanwhile()]);
    await expectRefusal(response, 413, 'payload_too_large');
    expect(await clientsCount()).toBe(0);
  });

  it('JSON nested 20,000 deep is 400 naming the field (or body)', async () => {
    const deep = `${'['.repeat(20_000)}${']'.repeat(20_000)}`;
    const [inField] = await Promise.all([post(`{"name":"Deep","notes":${deep}}`), servedMeanwhile()]);
    await expectRefusal(inField, 400, 'validation_failed', 'notes');
    await expectRefusal(await post(deep), 400, 'validation_failed', 'body');
    const deepObject = `${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}`;
    await expectRefusal(await post(`{"name":"Deep","nmae":${deepObject}}`), 400, 'validation_failed', 'nmae');
    expect(await clientsCount()).toBe(0);
  });

  it('__proto__ and constructor keys are unknown fields (400 naming them), and pollute nothing', async () => {
    const [proto] = await Promise.all([post('{"name":"Proto","__proto__":{"polluted":true}}'), servedMeanwhile()]);
    await expectRefusal(proto, 400, 'validation_failed', '__proto__');
    await expectRefusal(
      await post('{"name":"Proto","constructor":{"prototype":{"polluted":true}}}'),
      400,
      'validation_failed',
      'constructor',
    );
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(await clientsCount()).toBe(0);
  });
});

describe('connections', () => {
  it('3,000 headers are 431 (Node refuses them before the app)', async () => {
    const headers = Array.from({ length: 3_000 }, (_, i) => `X-Header-${i}: ${i}\r\n`).join('');
    const [answer] = await Promise.all([raw(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers}\r\n`), servedMeanwhile()]);
    expect(answer).toMatch(/^HTTP\/1\.1 431 /);
  });

  it('300 connections trickling headers are refused after the headers timeout (408), while others are served', {
    timeout: 120_000,
  }, async () => {
    const sockets: Socket[] = [];
    const answers = await new Promise<string[]>((done, fail) => {
      const got: string[] = [];
      let open = 300;
      for (let i = 0; i < 300; i++) {
        const socket = connect(port, '127.0.0.1');
        sockets.push(socket);
        let answer = '';
        socket.on('data', (chunk) => (answer += chunk.toString('latin1')));
        socket.on('error', () => {});
        socket.on('close', () => {
          got.push(answer);
          if (--open === 0) done(got);
        });
        // Written now, not on 'connect': writes before it are queued in order, so the first
        // trickled header line can never overtake the request line on a slow machine.
        socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n');
      }
      // A header line every 100 ms, never the blank line that ends them.
      const trickle = setInterval(() => {
        for (const socket of sockets) if (!socket.destroyed && socket.writable) socket.write('X-Slow: 1\r\n');
      }, 100);
      const served = (async () => {
        // Meanwhile: well-behaved requests, served as usual.
        for (let i = 0; i < 5; i++) await servedMeanwhile();
        const health = await fetch(`${base}/healthz`);
        expect(health.status).toBe(200);
      })();
      served.catch(fail);
      const finished = setInterval(() => {
        if (open === 0) {
          clearInterval(trickle);
          clearInterval(finished);
        }
      }, 50);
    });
    expect(answers).toHaveLength(300);
    expect(answers.filter((answer) => !/^HTTP\/1\.1 408 /.test(answer))).toEqual([]);
  });
});
