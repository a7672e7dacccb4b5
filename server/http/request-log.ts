/**
 * The request id, the headers every answer carries, and the one log line of every request. Each
 * answer carries `X-Request-Id` (the caller's own, when it is a sane token, else a new UUID) and
 * `X-Content-Type-Options: nosniff` (so that no browser ever runs an answer as something other
 * than its declared type); set here, where every request passes before anything can answer it.
 * When the answer is done one line is logged: `req` {id, method, path, operationId, query},
 * `res` {statusCode}, `responseTime` in ms; at error level for a 5xx, warn when the caller went
 * away first. Never a header, never a body, and never a query string's values (search text,
 * e-mail addresses, cursors): only its parameters' names. The Authorization header cannot reach
 * the log from here.
 *
 * Lean on purpose, since it runs on every request: one listener, and the log's fields worked out
 * only once the answer is done. `req.log`, a child logger whose lines carry the same `req`, is
 * made only when something logs through it.
 */
import { randomUUID } from 'node:crypto';
import type { Express, Request, RequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import { bindActiveContext } from '../shared/tracing.js';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,200}$/;
/** A parameter name logged as it is; any other (it could be anything the caller typed) is `?`. */
const PLAIN_NAME = /^[A-Za-z0-9_.[\]-]{1,64}$/;

interface RequestLogState {
  childLogger?: Logger;
}

interface RequestFields {
  id: string;
  method: string;
  path: string;
  operationId?: string;
  /** The query's parameter names, in order; their values never. */
  query?: string[];
}

/** Probes a load balancer polls every few seconds: logged at debug, not one info line each. */
const PROBES = new Set(['getHealth', 'getReadiness']);

/** The name of each `name=value` of a query string; a name that is not plain is `?`. */
function parameterNames(query: string): string[] {
  return query
    .split('&')
    .filter(Boolean)
    .map((pair) => {
      const raw = pair.split('=', 1)[0]!;
      let name: string;
      try {
        name = decodeURIComponent(raw.replace(/\+/g, ' '));
      } catch {
        return '?';
      }
      return PLAIN_NAME.test(name) ? name : '?';
    });
}

/** What a log line says of its request. */
function requestFields(req: Request): RequestFields {
  const url = req.originalUrl;
  const mark = url.indexOf('?');
  const fields: RequestFields = { id: req.id, method: req.method, path: mark === -1 ? url : url.slice(0, mark) };
  const operationId = req.operation?.operationId;
  if (operationId) fields.operationId = operationId;
  if (mark !== -1) fields.query = parameterNames(url.slice(mark + 1));
  return fields;
}

/** `onDone`: told of each request once its answer is done (metrics), with its time in seconds. */
export function requestLog(app: Express, logger: Logger, onDone?: (req: Request, res: Response, seconds: number) => void): RequestHandler {
  // On the app's request prototype, so that no request pays for a logger it never uses.
  Object.defineProperty(app.request, 'log', {
    configurable: true,
    get(this: Request & RequestLogState): Logger {
      if (!this.childLogger) this.childLogger = logger.child({ req: requestFields(this) });
      return this.childLogger;
    },
  });
  return (req, res, next) => {
    const incoming = req.headers['x-request-id'];
    const id = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    req.id = id;
    res.setHeader('X-Request-Id', id);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    const startedAt = performance.now();
    // 'close' comes once the answer is done, or when the connection went before it was. Bound to
    // the request's context when tracing is on, so that the line carries its trace id.
    res.once(
      'close',
      bindActiveContext(() => {
        const elapsed = performance.now() - startedAt;
        onDone?.(req, res, elapsed / 1000);
        const line = { req: requestFields(req), res: { statusCode: res.statusCode }, responseTime: Math.round(elapsed) };
        if (!res.writableFinished) logger.warn(line, 'request aborted');
        // A probe's 503 (draining, database away) is its answer, not a failure: debug as well.
        else if (PROBES.has(req.operation?.operationId as string) && res.statusCode !== 500) logger.debug(line, 'request completed');
        else if (res.statusCode >= 500) logger.error(line, 'request errored');
        else logger.info(line, 'request completed');
      }),
    );
    next();
  };
}
