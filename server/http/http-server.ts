/**
 * The HTTP server of an Express app, with requests and responses born with the app's prototypes.
 *
 * Express gives each request and response the app's prototype as it arrives
 * (`Object.setPrototypeOf`, in express/lib/application.js). Changing an object's prototype gives
 * it a new hidden class in V8, so every request used to leave Node's HTTP code, Express and every
 * middleware looking at objects of unstable shape, and all of it ran slower (about half of a
 * minimal Express app's time per request, measured on this machine with `npm run bench`). Node's
 * `http.createServer` takes the classes it constructs requests and responses with; these have the
 * app's prototypes from the start, so Express's `setPrototypeOf` finds the prototype already in
 * place and changes nothing. Everything else is Express as it is.
 */
import http, { IncomingMessage, ServerResponse, type ServerOptions } from 'node:http';
import type { Express } from 'express';

type Constructor = new (...args: never[]) => object;

/** A class that builds `base`'s objects with `prototype` as theirs (Reflect.construct, as `new` would with a subclass). */
function bornWith(base: Constructor, prototype: object): Constructor {
  function Born(...args: unknown[]) {
    return Reflect.construct(base, args, Born);
  }
  Born.prototype = prototype;
  return Born as unknown as Constructor;
}

/** `options`: Node's server options (timeouts, limits); the two classes are this module's. */
export function createHttpServer(app: Express, options: ServerOptions = {}): http.Server {
  const AppRequest = bornWith(IncomingMessage, app.request);
  const AppResponse = bornWith(ServerResponse, app.response);
  return http.createServer({ ...options, IncomingMessage: AppRequest as never, ServerResponse: AppResponse as never }, app);
}
