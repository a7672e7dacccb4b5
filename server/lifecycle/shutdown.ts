/**
 * Graceful shutdown on SIGTERM or SIGINT (a deploy, a scale-in, Ctrl-C), drained by
 * http-terminator:
 *  1. readiness answers 503 at once, so that load balancers stop sending new requests;
 *  2. for `delayMs` (SHUTDOWN_DELAY) nothing else changes: a load balancer takes a few seconds to
 *     notice, and whatever it still sends meanwhile is served as usual;
 *  3. the server stops accepting connections (a new one is refused) and idle keep-alive
 *     connections are closed; every request already received is answered, with `Connection:
 *     close`, and its connection closed after it;
 *  4. then `cleanup` (timers, the metrics listener, the database pools) and exit 0.
 * Whatever is still running `timeoutMs` (SHUTDOWN_TIMEOUT) after the drain began is cut: the exit
 * is then 1, logged with the number of requests cut.
 *
 * Why http-terminator and not server.close() alone: close() leaves busy keep-alive connections
 * open, so they keep taking requests and the server never drains; a request that arrives on one
 * after its last answer is reset. http-terminator marks each answer still to come
 * `Connection: close` (Node then closes the connection after it) and ends idle connections.
 * (@godaddy/terminus, through stoppable, instead ends a connection right after its response
 * without telling the client, which is that same reset.) It reads `socket._httpMessage`, the
 * response Node attaches to the socket, and calls setHeader on it: the app's responses
 * (server/http/http-server.ts) are Node ServerResponses with Express's prototype in between, so
 * both work unchanged.
 */
import type http from 'node:http';
import { createHttpTerminator } from 'http-terminator';
import type { Logger } from 'pino';
import type { Readiness } from '../health/readiness.js';

export interface ShutdownOptions {
  server: http.Server;
  readiness: Readiness;
  logger: Logger;
  delayMs: number;
  timeoutMs: number;
  /** After the drain: stop timers, close listeners and pools. */
  cleanup: () => Promise<void>;
  /** Ends the process (process.exit; tests pass their own). */
  exit: (code: number) => void;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Returns `stop(signal)`; calls after the first do nothing. */
export function createShutdown(options: ShutdownOptions): (signal: string) => Promise<void> {
  const { server, readiness, logger } = options;
  // Created now: it tracks connections from their start. Its own deadline stays out of the way
  // (ours, below, counts what is cut, then exits).
  const terminator = createHttpTerminator({ server, gracefulTerminationTimeout: options.timeoutMs + 60_000 });
  /**
   * Connections still open. Once the drain has begun the idle ones are closed at once, so at the
   * deadline each one left is a request still running.
   */
  const openConnections = () => new Promise<number>((resolve) => server.getConnections((error, count) => resolve(error ? -1 : count)));
  let stopping: Promise<void> | undefined;

  const drainAndClean = async () => {
    // Stop listening first, so that a new connection is refused rather than accepted and reset;
    // Node also closes the idle keep-alive connections here. http-terminator closes the server
    // again at its end, which then says it was not running: that is the drain being done.
    server.close();
    await terminator.terminate().catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ERR_SERVER_NOT_RUNNING') throw error;
    });
    await options.cleanup();
  };

  return (signal) => {
    stopping ??= (async () => {
      readiness.startDraining();
      logger.info({ signal, delayMs: options.delayMs, timeoutMs: options.timeoutMs }, 'stopping: readiness now 503');
      if (options.delayMs > 0) await sleep(options.delayMs);
      logger.info({ connections: await openConnections() }, 'draining: no new connections; answering the requests received');
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), options.timeoutMs)));
      const outcome = await Promise.race([drainAndClean().then(() => 'drained' as const), deadline]).catch((error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        return 'failed' as const;
      });
      clearTimeout(timer);
      if (outcome === 'drained') {
        logger.info('stopped');
        return options.exit(0);
      }
      if (outcome === 'timeout')
        logger.error(
          { cut: await openConnections(), timeoutMs: options.timeoutMs },
          'shutdown timed out: cutting the requests still running',
        );
      options.exit(1);
    })();
    return stopping;
  };
}
