/**
 * Middlewares run one after another as a single Express layer. Every layer the router walks costs
 * on every request (matching, parameter bookkeeping, a promise check), and the pipeline of this
 * API is the same for every request, so it is one layer. Semantics are Express 5's: an error
 * passed to `next`, thrown, or a rejected promise goes to the error handlers; `next()` from the
 * last one goes on to the layers after this one.
 */
import type { RequestHandler } from 'express';

export function series(handlers: readonly RequestHandler[]): RequestHandler {
  return (req, res, done) => {
    let index = 0;
    const fail = (error: unknown) => done(error ?? new Error('Rejected promise'));
    const next = (error?: unknown): void => {
      if (error !== undefined && error !== null) {
        done(error);
        return;
      }
      const handler = handlers[index++];
      if (!handler) {
        done();
        return;
      }
      try {
        const result: unknown = handler(req, res, next);
        if (result instanceof Promise) result.catch(fail);
      } catch (thrown) {
        fail(thrown);
      }
    };
    next();
  };
}
