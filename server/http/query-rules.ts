/**
 * What the validator lets through in a query string: a parameter of style deepObject
 * (`metadata[key]=value`) given bare (`metadata=`, `metadata=x`) names no key, and
 * express-openapi-validator drops it rather than refuse it, which would answer as if the filter
 * had not been asked for. Refused here, before the validator, naming the parameter in the spec's
 * words. Which operations have such parameters is read from the spec once.
 */
import type { RequestHandler } from 'express';
import { validationFailed } from '../shared/errors.js';
import type { SpecIndex } from './spec.js';

export function queryRules(spec: SpecIndex): RequestHandler {
  const refusals = new Map(
    [...spec.operations.values()]
      .filter((info) => info.deepObjectParameters.length > 0)
      .map((info) => [
        info.entry.operationId,
        info.deepObjectParameters.map((name) => [name, info.messages.get(name) ?? 'must name a key: name[key]=value'] as const),
      ]),
  );
  return (req, _res, next) => {
    const parameters = req.operation && refusals.get(req.operation.operationId);
    const bare = parameters?.find(([name]) => Object.hasOwn(req.query, name));
    next(bare ? validationFailed({ [bare[0]]: bare[1] }) : undefined);
  };
}
