/**
 * server/lifecycle/shutdown.ts in one process: what a drain cannot finish within its timeout is
 * cut, the exit is 1, and the log says how many requests were cut; a drain that finishes runs the
 * cleanup and exits 0. (The drain under load, on the built server: built-server.test.ts.)
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { expect, it } from 'vitest';
import { createReadiness } from '../../server/health/readiness.js';
import { createShutdown } from '../../server/lifecycle/shutdown.js';

function capturingLogger() {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { logger, lines };
}

async function listen(handler: http.RequestListener) {
  const server = http.createServer(handler);
  await new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

it('cuts what still runs after the timeout, exits 1 and logs how many were cut', async () => {
  let received = 0;
  const { server, url } = await listen(() => {
    received++; // and never answers
  });
  const { logger, lines } = capturingLogger();
  const readiness = createReadiness();
  let cleaned = false;
  const exited = new Promise<number>((resolve) => {
    const stop = createShutdown({
      server,
      readiness,
      logger,
      delayMs: 0,
      timeoutMs: 300,
      cleanup: async () => {
        cleaned = true;
      },
      exit: resolve,
    });
    const hanging = [fetch(url).catch(() => 'cut'), fetch(url).catch(() => 'cut')];
    // Both requests reach the server before the signal.
    void (async () => {
      while (received < 2) await new Promise((r) => setTimeout(r, 10));
      void stop('SIGTERM');
      void Promise.all(hanging);
    })();
  });
  expect(await exited).toBe(1);
  expect(readiness.draining).toBe(true);
  expect(cleaned).toBe(false);
  expect(lines.find((line) => line.msg === 'shutdown timed out: cutting the requests still running')).toMatchObject({
    level: 50,
    cut: 2,
    timeoutMs: 300,
  });
  server.closeAllConnections();
});

it('answers a request in flight with Connection: close, then cleans up and exits 0', async () => {
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let received!: () => void;
  const arrived = new Promise<void>((resolve) => (received = resolve));
  const { server, url } = await listen(async (_req, res) => {
    received();
    await held;
    res.end('done');
  });
  const { logger } = capturingLogger();
  let cleaned = false;
  const exited = new Promise<number>((resolve) => {
    const stop = createShutdown({
      server,
      readiness: createReadiness(),
      logger,
      delayMs: 0,
      timeoutMs: 30_000,
      cleanup: async () => {
        cleaned = true;
      },
      exit: resolve,
    });
    void arrived.then(() => stop('SIGTERM'));
  });
  const agent = new http.Agent({ keepAlive: true });
  const response = new Promise<{ connection?: string; body: string }>((resolve, reject) => {
    http
      .get(`${url}/`, { agent }, (res) => {
        let body = '';
        res.on('data', (chunk) => (body += chunk)).on('end', () => resolve({ connection: res.headers.connection, body }));
      })
      .on('error', reject);
  });
  await arrived;
  // Stopped accepting: a new connection is refused.
  await expect
    .poll(() =>
      fetch(url).then(
        () => 'accepted',
        (error: Error) => String((error.cause as { code?: string })?.code),
      ),
    )
    .toBe('ECONNREFUSED');
  release();
  expect(await response).toEqual({ connection: 'close', body: 'done' });
  expect(await exited).toBe(0);
  expect(cleaned).toBe(true);
  agent.destroy();
});
