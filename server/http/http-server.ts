/**
 * The HTTP server of an Express app, with requests and responses born with the app's prototypes.
 *
 * Express gives each request and response the app's prototype as it arrives
 * (`Object.setPrototypeOf(req, app.request)`, in express/lib/middleware/init.js). Changing an
 * object's prototype gives it a new hidden class in V8, so every request used to leave Node's HTTP
 * code, Express and every middleware looking at objects of unstable shape, and all of it ran slower
 * (docs/performance.md has the figures). Node's `http.createServer` takes the classes it constructs requests and
 * responses with. Here they are subclasses of Node's own, built with `new` and `super` as any
 * subclass is, whose prototypes sit in front of the app's and then become the app's
 * (`app.request`, `app.response`), so Express's `setPrototypeOf` finds the prototype already in
 * place and changes nothing. Everything else is Express as it is.
 *
 * Two other ways were measured and refused: calling Node's constructor on `this` (`apply`) breaks
 * the day Node makes IncomingMessage an ES class; `Reflect.construct` with the app's prototype as
 * `newTarget` is correct but ran 4 to 6 times slower on a minimal app here (wrk, 32 connections).
 */
import http, { IncomingMessage, ServerResponse, type ServerOptions } from 'node:http';
import type { Express } from 'express';

interface BornClasses {
  IncomingMessage: typeof IncomingMessage;
  ServerResponse: typeof ServerResponse;
}

/** Per app, made once: the warm-up's server and the real one share them. */
const bornClasses = new WeakMap<Express, BornClasses>();

function classesOf(app: Express): BornClasses {
  const made = bornClasses.get(app);
  if (made) return made;
  const AppRequest = class extends IncomingMessage {};
  Object.setPrototypeOf(AppRequest.prototype, app.request);
  const AppResponse = class extends ServerResponse {};
  Object.setPrototypeOf(AppResponse.prototype, app.response);
  // The prototypes Express gives every request and response are now these classes' own.
  app.request = AppRequest.prototype as Express['request'];
  app.response = AppResponse.prototype as Express['response'];
  const classes = { IncomingMessage: AppRequest, ServerResponse: AppResponse as unknown as typeof ServerResponse };
  bornClasses.set(app, classes);
  return classes;
}

/** `options`: Node's server options (timeouts, limits); the two classes are this module's. */
export function createHttpServer(app: Express, options: ServerOptions = {}): http.Server {
  return http.createServer({ ...options, ...classesOf(app) }, app);
}
