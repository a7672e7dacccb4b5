/** server/http/series.ts: a pipeline as one Express layer keeps Express 5's semantics. */
import express, { type RequestHandler } from 'express';
import { expect, it } from 'vitest';
import { createHttpServer } from '../../server/http/http-server.js';
import { series } from '../../server/http/series.js';

/** Serves `pipeline` then an error handler that answers with the error's message. */
async function answer(pipeline: RequestHandler[]): Promise<{ status: number; body: string; order: string[] }> {
  const order: string[] = [];
  const app = express();
  app.use(
    series(
      pipeline.map(
        (handler, i) =>
          ((req, res, next) => {
            order.push(`h${i}`);
            return handler(req, res, next);
          }) as RequestHandler,
      ),
    ),
  );
  app.use((_req, res) => void res.status(404).send('after'));
  app.use(((error: Error, _req, res, _next) => void res.status(500).send(`error: ${error.message}`)) as express.ErrorRequestHandler);
  const server = createHttpServer(app);
  await new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening));
  try {
    const { port } = server.address() as { port: number };
    const response = await fetch(`http://127.0.0.1:${port}/`);
    return { status: response.status, body: await response.text(), order };
  } finally {
    server.close();
  }
}

const pass: RequestHandler = (_req, _res, next) => next();

it('runs the handlers in order, and next() from the last goes on to the next layer', async () => {
  expect(await answer([pass, pass, pass])).toEqual({ status: 404, body: 'after', order: ['h0', 'h1', 'h2'] });
});

it('stops at a handler that answers', async () => {
  const result = await answer([pass, (_req, res) => void res.status(200).send('done'), pass]);
  expect(result).toEqual({ status: 200, body: 'done', order: ['h0', 'h1'] });
});

it('sends an error passed to next, a thrown one, or a rejected promise to the error handlers, skipping the rest', async () => {
  const viaNext = await answer([(_req, _res, next) => next(new Error('next')), pass]);
  expect(viaNext).toEqual({ status: 500, body: 'error: next', order: ['h0'] });
  const thrown = await answer([
    () => {
      throw new Error('thrown');
    },
    pass,
  ]);
  expect(thrown).toEqual({ status: 500, body: 'error: thrown', order: ['h0'] });
  const rejected = await answer([pass, async () => Promise.reject(new Error('rejected')), pass]);
  expect(rejected).toEqual({ status: 500, body: 'error: rejected', order: ['h0', 'h1'] });
});

it('waits for an async handler to call next', async () => {
  const later: RequestHandler = (_req, _res, next) => void setTimeout(next, 5);
  expect(await answer([later, later])).toEqual({ status: 404, body: 'after', order: ['h0', 'h1'] });
});
