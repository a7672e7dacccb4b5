/**
 * Graceful shutdown on SIGTERM or SIGINT (a deploy, a scale-in, Ctrl-C):
 *  1. readiness answers 503 at once, so that load balancers stop sending new requests;
 *  2. for `delayMs` (SHUTDOWN_DELAY) nothing else changes: a load balancer takes a few seconds to
 *     notice, and whatever it still sends meanwhile is served as usual;
 *  3. the connections drain without failing a request (drain.ts): new connections are refused,
 *     each open connection closes after its next answer (which says `Connection: close`) or once
 *     idle for the keep-alive time it was told;
 *  4. then `cleanup` (timers, the metrics listener, the database pools) and exit 0.
 * Whatever is left `timeoutMs` (SHUTDOWN_TIMEOUT) after the drain began is cut: the exit is then
 * 1, logged with the number of requests cut and of idle connections closed early.
 */
import type http from 'node:http';
import type { Logger } from 'pino';
import type { Readiness } from '../health/readiness.js';
import { trackConnections } from './drain.js';

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

/** Returns `stop(signal)`; calls after the first do nothing. Call it before the server accepts connections. */
export function createShutdown(options: ShutdownOptions): (signal: string) => Promise<void> {
  const { server, readiness, logger } = options;
  const connections = trackConnections(server);
  let stopping: Promise<void> | undefined;

  return (signal) => {
    stopping ??= (async () => {
      readiness.startDraining();
      logger.info({ signal, delayMs: options.delayMs, timeoutMs: options.timeoutMs }, 'stopping: readiness now 503');
      if (options.delayMs > 0) await sleep(options.delayMs);
      logger.info(
        { connections: connections.open, keepAliveTimeoutMs: server.keepAliveTimeout },
        'draining: new connections refused; each connection closes after its next answer, or once idle for the keep-alive time',
      );
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), options.timeoutMs)));
      const drainAndClean = async () => {
        await connections.drain();
        await options.cleanup();
        return 'stopped' as const;
      };
      const outcome = await Promise.race([drainAndClean(), deadline]).catch((error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        return 'failed' as const;
      });
      clearTimeout(timer);
      if (outcome === 'stopped') {
        logger.info('stopped');
        return options.exit(0);
      }
      if (outcome === 'timeout')
        logger.error({ ...connections.closeAll(), timeoutMs: options.timeoutMs }, 'shutdown timed out: cutting the requests still running');
      options.exit(1);
    })();
    return stopping;
  };
}
