/**
 * The request id and the one log line of every request. Each answer carries `X-Request-Id` (the
 * caller's own, when it is a sane token, else a new UUID), and when the answer is done one line is
 * logged: `req` {id, method, url}, `res` {statusCode}, `responseTime` in ms; at error level for a
 * 5xx, warn when the caller went away first. Never a header, never a body: the Authorization
 * header cannot reach the log from here.
 *
 * Lean on purpose, since it runs on every request: one listener and nothing else. `req.log`, a
 * child logger whose lines carry the same `req`, is made only when something logs through it.
 */
import { randomUUID } from 'node:crypto';
import type { Express, Request, RequestHandler, Response } from 'express';
import type { Logger } from 'pino';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,200}$/;

interface RequestLogState {
  logFields?: { id: string; method: string; url: string };
  childLogger?: Logger;
}

/** Probes a load balancer polls every few seconds: logged at debug, not one info line each. */
const PROBES = new Set(['getHealth', 'getReadiness']);

/** `onDone`: told of each request once its answer is done (metrics), with its time in seconds. */
export function requestLog(app: Express, logger: Logger, onDone?: (req: Request, res: Response, seconds: number) => void): RequestHandler {
  // On the app's request prototype, so that no request pays for a logger it never uses.
  Object.defineProperty(app.request, 'log', {
    configurable: true,
    get(this: Request & RequestLogState): Logger {
      if (!this.childLogger)
        this.childLogger = logger.child({ req: this.logFields ?? { id: this.id, method: this.method, url: this.originalUrl } });
      return this.childLogger;
    },
  });
  return (req, res, next) => {
    const incoming = req.headers['x-request-id'];
    const id = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    req.id = id;
    res.setHeader('X-Request-Id', id);
    const fields = { id, method: req.method, url: req.originalUrl };
    (req as RequestLogState).logFields = fields;
    const startedAt = performance.now();
    // 'close' comes once the answer is done, or when the connection went before it was.
    res.once('close', () => {
      const elapsed = performance.now() - startedAt;
      onDone?.(req, res, elapsed / 1000);
      const line = { req: fields, res: { statusCode: res.statusCode }, responseTime: Math.round(elapsed) };
      if (!res.writableFinished) logger.warn(line, 'request aborted');
      // A probe's 503 (draining, database away) is its answer, not a failure: debug as well.
      else if (PROBES.has(req.operation?.operationId as string) && res.statusCode !== 500) logger.debug(line, 'request completed');
      else if (res.statusCode >= 500) logger.error(line, 'request errored');
      else logger.info(line, 'request completed');
    });
    next();
  };
}
