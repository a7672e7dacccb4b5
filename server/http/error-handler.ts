/**
 * The one place failures become responses, in the seed's envelope. The validator's errors are
 * translated to `fields` keyed by the request's own names, worded by the spec (`x-error-message`).
 * The database being away (refused, terminated, starting up: server/db/faults.ts) is a 503 with
 * Retry-After. Anything unexpected is a 500 whose body says nothing of the cause; the log has the detail.
 */
import type { ErrorRequestHandler } from 'express';
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
    const field = name ? decodeURIComponent(name) : location || 'request';
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

export function errorHandler(spec: SpecIndex): ErrorRequestHandler {
  return (error, req, res, _next) => {
    let apiError = toApiError(error, spec, req.operation?.operationId);
    if (apiError?.status === 503 && !(error instanceof ApiError))
      req.log.warn(
        { err: error, operation: req.operation?.operationId },
        isStatementTimeout(error) ? 'statement timeout' : 'database unavailable',
      );
    if (!apiError) {
      req.log.error({ err: error }, 'request failed');
      apiError = new ApiError('internal_error', 'Something went wrong on our side. Quote the request id when you contact support.');
    }
    if (res.headersSent) return res.end();
    for (const [name, value] of Object.entries(apiError.details.headers ?? {})) res.setHeader(name, value);
    // A request that matched no operation has no documented responses to be validated against:
    // sent as text, so the validator's response hook (which would guess an operation) stays out.
    if (!req.operation) res.status(apiError.status).type('application/json').send(JSON.stringify(apiError.toBody()));
    else res.status(apiError.status).json(apiError.toBody());
  };
}
