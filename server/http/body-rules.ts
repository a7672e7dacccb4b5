/**
 * Which body each request is read with: an operation that declares a request body gets the JSON
 * parser (server/http/body-parser.ts); one that declares none (GET, DELETE, restore) reads none,
 * since a body there has no meaning and reading it could only produce answers the spec does not
 * list (415).
 */
import type { RequestHandler } from 'express';
import typeis from 'type-is';
import { validationFailed } from '../shared/errors.js';
import { jsonBody } from './body-parser.js';
import type { SpecIndex } from './spec.js';

// Nothing the caller sent is silently dropped: a body where the operation takes none is refused.
const refuseBody: RequestHandler = (req, _res, next) => {
  req.body = undefined;
  next(
    typeis.hasBody(req) && Number(req.headers['content-length'] ?? 1) !== 0
      ? validationFailed({ body: 'must be empty: this operation takes no request body' })
      : undefined,
  );
};

// Not an operation of the API: its answer is 404 or 405, whatever the body.
const dropBody: RequestHandler = (req, _res, next) => {
  req.body = undefined;
  next();
};

export function bodyRules(spec: SpecIndex): RequestHandler {
  const parsers = new Map(
    [...spec.operations.values()].map((info) => [
      info.entry.operationId,
      info.entry.hasBody ? jsonBody(info.decimalFields, info.entry.bodyRequired) : refuseBody,
    ]),
  );
  return (req, res, next) => (req.operation ? parsers.get(req.operation.operationId)! : dropBody)(req, res, next);
}
