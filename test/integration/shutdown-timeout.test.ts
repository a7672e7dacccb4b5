/**
 * server/lifecycle/shutdown.ts and drain.ts in one process: what a drain cannot finish within its
 * timeout is cut, the exit is 1, and the log says how many requests were cut; a drain that
 * finishes runs the cleanup and exits 0; and the drain never closes a connection under a request a
 * client may be writing: not an idle keep-alive connection before the keep-alive time it announced
 * has run out, not one accepted but never used before that same time. (The drain under load, on the
 * built server and through npm: built-server.test.ts.)
 */
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { pino } from 'pino';
import { expect, it } from 'vitest';
import { createReadiness } from '../../server/health/readiness.js';
import { createShutdown } from '../../server/lifecycle/shutdown.js';

function capturingLogger() {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { logger, lines };
}

async function listen(handler: http.RequestListener, options: http.ServerOptions = {}) {
  const server = http.createServer(options, handler);
  await new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening));
  const { port } = server.address() as AddressInfo;
  return { server, port, url: `http://127.0.0.1:${port}` };
}

/** A shutdown of `server` with no delay, whose exit code the promise gives. */
function shutdownOf(server: http.Server) {
  let stop!: (signal: string) => Promise<void>;
  const exited = new Promise<number>((exit) => {
    stop = createShutdown({
      server,
      readiness: createReadiness(),
      logger: capturingLogger().logger,
      delayMs: 0,
      timeoutMs: 30_000,
      cleanup: async () => {},
      exit,
    });
  });
  return { stop, exited };
}

/** Resolves once the server refuses new connections: the drain has begun. */
const refused = (url: string) =>
  expect
    .poll(() =>
      fetch(url).then(
        () => 'accepted',
        (error: Error) => String((error.cause as { code?: string })?.code),
      ),
    )
    .toBe('ECONNREFUSED');

/** A raw connection, so that the test decides when each request is written; `closed`: when it closed (performance.now()). */
async function connect(port: number): Promise<{ socket: net.Socket; closed: Promise<number> }> {
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const opened = net.connect(port, '127.0.0.1', () => resolve(opened)).once('error', reject);
  });
  return { socket, closed: new Promise((resolve) => socket.once('close', () => resolve(performance.now()))) };
}

/** Writes a GET on `socket` and resolves with the whole answer as text; fails if the connection closes first. */
function exchange(socket: net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const complete = () => {
      const end = text.indexOf('\r\n\r\n');
      const length = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? 0);
      return end >= 0 && text.length >= end + 4 + length;
    };
    const onData = (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (!complete()) return;
      socket.off('data', onData).off('close', onClose).off('error', onClose);
      resolve(text);
    };
    const onClose = () => reject(new Error(`the connection closed before an answer: ${JSON.stringify(text)}`));
    if (socket.destroyed) return onClose();
    socket.on('data', onData).once('close', onClose).once('error', onClose);
    socket.write('GET / HTTP/1.1\r\nHost: test\r\n\r\n');
  });
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

it('answers a request written on an idle keep-alive connection after the drain began, with Connection: close, then closes it', async () => {
  const { server, port, url } = await listen((_req, res) => res.end('ok'));
  const { stop, exited } = shutdownOf(server);
  const { socket, closed } = await connect(port);
  expect(await exchange(socket)).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n/);
  // Idle now, as a client's pooled connection is between two requests: the drain begins.
  void stop('SIGTERM');
  await refused(url);
  const answer = await exchange(socket);
  expect(answer).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
  expect(answer).toMatch(/\r\nConnection: close\r\n/);
  expect(answer).toMatch(/\r\n\r\nok$/);
  await closed;
  expect(await exited).toBe(0);
});

it('closes an idle connection only once the keep-alive time it announced has run out, and one never used no sooner', async () => {
  const { server, port, url } = await listen((_req, res) => res.end('ok'), { keepAliveTimeout: 1000 });
  const { stop, exited } = shutdownOf(server);
  const used = await connect(port);
  expect(await exchange(used.socket)).toMatch(/\r\nKeep-Alive: timeout=1\r\n/);
  const answeredAt = performance.now();
  const unused = await connect(port);
  // A connection accepted but not written on yet: its client may be writing its first request.
  const firstRequestLater = await connect(port);
  await new Promise((resolve) => setTimeout(resolve, 50)); // the server has accepted all three
  const drainBegan = performance.now();
  void stop('SIGTERM');
  await refused(url);
  const late = await exchange(firstRequestLater.socket);
  expect(late).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
  expect(late).toMatch(/\r\nConnection: close\r\n/);
  // Lower bounds only: a timer never fires early, and a slow machine only makes them later.
  expect((await used.closed) - answeredAt).toBeGreaterThanOrEqual(1000);
  expect((await unused.closed) - drainBegan).toBeGreaterThanOrEqual(1000);
  expect(await exited).toBe(0);
});
