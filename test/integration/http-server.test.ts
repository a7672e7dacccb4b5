/**
 * server/http/http-server.ts: requests and responses are constructed with the app's prototypes, so
 * Express's per-request setPrototypeOf finds nothing to change (see the module for why it matters).
 */
import { createServer, IncomingMessage, ServerResponse, type Server } from 'node:http';
import express from 'express';
import { expect, it } from 'vitest';
import { createHttpServer } from '../../server/http/http-server.js';

/** The prototypes a request and its response have before Express sees them, and after. */
async function prototypes(make: (app: express.Express) => Server) {
  const app = express();
  const seen: { before?: [object | null, object | null]; after?: [object | null, object | null] } = {};
  app.get('/', (req, res) => {
    seen.after = [Object.getPrototypeOf(req), Object.getPrototypeOf(res)];
    res.send('ok');
  });
  const server = make(app);
  // Runs before the app, which is the server's first 'request' listener.
  server.prependListener('request', (req, res) => (seen.before = [Object.getPrototypeOf(req), Object.getPrototypeOf(res)]));
  await new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening));
  try {
    const { port } = server.address() as { port: number };
    const response = await fetch(`http://127.0.0.1:${port}/`);
    expect(await response.text()).toBe('ok');
  } finally {
    server.close();
  }
  return { app, ...seen };
}

it('constructs requests and responses with the app’s prototypes, which Express then keeps', async () => {
  const { app, before, after } = await prototypes(createHttpServer);
  expect(before).toEqual([app.request, app.response]);
  expect(after).toEqual([app.request, app.response]);
  // Still Node's own classes underneath.
  expect(app.request instanceof IncomingMessage && app.response instanceof ServerResponse).toBe(true);
});

it('builds them as subclasses of Node’s classes, made once per app (a second server of the app shares them)', async () => {
  const app = express();
  const first = createHttpServer(app);
  const request = app.request;
  const second = createHttpServer(app);
  expect(app.request).toBe(request);
  for (const server of [first, second]) server.close();
  // A class constructor, which only `new` can call: the objects are constructed, not patched.
  const AppRequest = request.constructor as typeof IncomingMessage;
  expect(Object.getPrototypeOf(AppRequest)).toBe(IncomingMessage);
  expect(() => (AppRequest as unknown as () => void)()).toThrow(TypeError);
});

it('differs from a plain node:http server, whose objects Express re-prototypes on every request', async () => {
  const { app, before, after } = await prototypes((a) => createServer(a));
  expect(before).toEqual([IncomingMessage.prototype, ServerResponse.prototype]);
  expect(after).toEqual([app.request, app.response]);
});
