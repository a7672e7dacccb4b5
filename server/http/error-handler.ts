/**
 * The one place failures become responses, in the seed's envelope. The validator's errors are
 * translated to `fields` keyed by the request's own names, worded by the spec (`x-error-message`).
 * The database being away (refused, terminated, starting up: server/db/faults.ts) is a 503 with
 * Retry-After. Anything unexpected is a 500 whose body says nothing of the cause; the log has the detail.
 *
 * Nothing that reaches it escapes the envelope, whatever it is (an object whose every property
 * throws included): reading the error, logging it and answering are each guarded, and should
 * answering itself fail, `lastResort` (the app's very last handler) answers a fixed 500 with
 * Node's own calls. Express's final handler, which renders an HTML page with the stack, is never
 * reached.
 */
import { randomUUID } from 'node:crypto';
import type { ErrorRequestHandler, Request } from 'express';
import { databaseFault, isStatementTimeout } from '../db/faults.js';
import { ApiError, validationFailed } from '../shared/errors.js';
import { BODY_LIMIT_BYTES } from './body-parser.js';
import type { SpecIndex } from './spec.js';

interface ValidatorIssue {
  path?: string;
  message?: string;
  errorCode?: string;
}

interface HttpLikeError {
  status?: number;
  statusCode?: number;
  type?: string;
  errors?: ValidatorIssue[];
  message?: string;
}

/** A name that does not decode (`%`, `%E0%A4%A`) is named as it came. */
function decodedOrAsSent(name: string): string {
  try {
    return decodeURIComponent(name);
  } catch {
    return name;
  }
}

function translateValidation(error: HttpLikeError, spec: SpecIndex, operationId: string | undefined): ApiError {
  const info = operationId ? spec.operations.get(operationId as never) : undefined;
  const headerNames = new Map([...(info?.messages.keys() ?? [])].map((name) => [name.toLowerCase(), name]));
  // Without a prototype: a body's own `__proto__` key is named like any other unknown field
  // (on a plain object, assigning it would set the prototype instead of adding a key).
  const fields = Object.create(null) as Record<string, string>;
  for (const issue of error.errors ?? []) {
    const path = issue.path ?? '';
    const message = issue.message ?? 'is invalid';
    const [, location = '', name] =
      /^\/?(body|headers|query|path|params)(?:\/([^/]+))?/.exec(path.replace(/^\./, '/').replace(/\./g, '/')) ?? [];
    if (location === 'body' && issue.errorCode?.startsWith('additionalProperties')) {
      const unknown = /additional propert(?:y|ies)[^']*'([^']+)'/.exec(message)?.[1] ?? name;
      if (unknown) fields[unknown] = info?.unknownFieldMessage ?? 'is not a known field';
      continue;
    }
    if (location === 'body' && issue.errorCode?.startsWith('required')) {
      const missing = /required property '([^']+)'/.exec(message)?.[1];
      if (missing) {
        fields[missing] = 'is required';
        continue;
      }
    }
    if (location === 'body' && !name) {
      fields.body = /required/.test(message) ? 'is required: send a JSON object' : 'must be a JSON object';
      continue;
    }
    if (location === 'headers' && name) {
      const header = headerNames.get(name.toLowerCase()) ?? name;
      fields[header] = info?.messages.get(header) ?? message;
      continue;
    }
    // The name as the validator read it (decoded once already: `?%25=1` is a parameter named
    // `%`), whole even when it holds a dot or a slash, which the path above splits on.
    const unknownQuery = location === 'query' ? /^Unknown query parameter '(.*)'$/s.exec(message)?.[1] : undefined;
    const field = unknownQuery ?? (name ? decodedOrAsSent(name) : location || 'request');
    fields[field] ??= info?.messages.get(field) ?? message;
  }
  return validationFailed(
    Object.keys(fields).length > 0 ? Object.fromEntries(Object.entries(fields)) : { request: error.message ?? 'is invalid' },
  );
}

export function toApiError(error: unknown, spec: SpecIndex, operationId?: string): ApiError | undefined {
  if (error instanceof ApiError) return error;
  // The database away for a moment (refused, terminated, starting up), or a statement past its
  // time limit: 503, never a 500.
  const fault = databaseFault(error);
  if (fault) return fault;
  const e = error as HttpLikeError;
  const status = e?.status ?? e?.statusCode;
  if (!status || status >= 500) return undefined;
  if (e.type === 'entity.too.large' || status === 413) {
    return new ApiError('payload_too_large', `The request body must not be larger than ${BODY_LIMIT_BYTES} bytes.`);
  }
  if (status === 415 || e.type === 'charset.unsupported' || e.type === 'encoding.unsupported') {
    return new ApiError('unsupported_media_type', 'The request body must be application/json in UTF-8.');
  }
  if (status === 404) return new ApiError('not_found', 'No such resource.');
  if (status === 405) return new ApiError('method_not_allowed', 'This method is not allowed on this path.');
  if (status === 400) {
    // A path segment with broken percent-encoding names no resource: the same 404 as an unknown id.
    if (e.message?.startsWith('malformed uri')) return new ApiError('not_found', 'No such resource.');
    if (e.errors) return translateValidation(e, spec, operationId);
    return validationFailed({ body: 'could not be read' });
  }
  return undefined;
}

const INTERNAL_MESSAGE = 'Something went wrong on our side. Quote the request id when you contact support.';

/** Logs without ever throwing: an error whose properties throw is logged as that it could not be. */
function logSafely(req: Request, level: 'warn' | 'error', error: unknown, message: string): void {
  try {
    req.log[level]({ err: error, operation: req.operation?.operationId }, message);
  } catch {
    try {
      req.log[level](`${message} (the error could not be logged)`);
    } catch {
      // No logger left to tell: the answer still goes out.
    }
  }
}

/** What to answer for `error`: its own ApiError, a translation, or a 500 (logged) when there is none or reading it fails. */
function answerFor(error: unknown, req: Request, spec: SpecIndex): ApiError {
  let apiError: ApiError | undefined;
  try {
    apiError = toApiError(error, spec, req.operation?.operationId);
  } catch (failure) {
    logSafely(req, 'error', failure, 'error handler could not read the error');
  }
  if (apiError?.status === 503 && !(error instanceof ApiError))
    logSafely(req, 'warn', error, isStatementTimeout(error) ? 'statement timeout' : 'database unavailable');
  if (apiError) return apiError;
  logSafely(req, 'error', error, 'request failed');
  return new ApiError('internal_error', INTERNAL_MESSAGE);
}

export function errorHandler(spec: SpecIndex): ErrorRequestHandler {
  return (error, req, res, next) => {
    try {
      const apiError = answerFor(error, req, spec);
      // An answer already begun cannot become an error: cut it, so that the client sees a broken
      // answer (and may retry) rather than a short body that ends as if it were whole.
      if (res.headersSent) {
        res.destroy();
        return;
      }
      for (const [name, value] of Object.entries(apiError.details.headers ?? {})) res.setHeader(name, value);
      // A request that matched no operation has no documented responses to be validated against:
      // sent as text, so the validator's response hook (which would guess an operation) stays out.
      if (!req.operation) res.status(apiError.status).type('application/json').send(JSON.stringify(apiError.toBody()));
      else res.status(apiError.status).json(apiError.toBody());
    } catch (failure) {
      // Answering failed (a bug here, an answer the response validator refused): the last resort answers.
      next(failure);
    }
  };
}

const LAST_RESORT_BODY = Buffer.from(JSON.stringify(new ApiError('internal_error', INTERNAL_MESSAGE).toBody()));
/** The headers a 500 keeps from what was set before: the request's id and its rate-limit fields. */
const KEPT_HEADERS = new Set(['x-request-id', 'ratelimit-policy', 'ratelimit']);

/**
 * The app's last handler: reached only when the error handler itself failed. A fixed 500 in the
 * envelope, written with Node's own calls (no Express helper, no response validation, nothing
 * computed from the error); when even that fails, or an answer had begun, the connection is cut.
 */
export const lastResort: ErrorRequestHandler = (failure, req, res, _next) => {
  logSafely(req, 'error', failure, 'error handler failed');
  try {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    for (const name of res.getHeaderNames()) if (!KEPT_HEADERS.has(name)) res.removeHeader(name);
    if (!res.hasHeader('X-Request-Id')) res.setHeader('X-Request-Id', typeof req.id === 'string' ? req.id : randomUUID());
    res.writeHead(500, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': LAST_RESORT_BODY.length,
      'X-Content-Type-Options': 'nosniff',
    });
    res.end(LAST_RESORT_BODY);
  } catch {
    res.destroy();
  }
};
