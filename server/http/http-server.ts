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
import http, { IncomingMessage, ServerResponse } from 'node:http';
import type { Express } from 'express';

type Construct = (this: unknown, ...args: unknown[]) => void;

export function createHttpServer(app: Express): http.Server {
  function AppRequest(this: unknown, ...args: unknown[]) {
    (IncomingMessage as unknown as Construct).apply(this, args);
  }
  AppRequest.prototype = app.request;
  function AppResponse(this: unknown, ...args: unknown[]) {
    (ServerResponse as unknown as Construct).apply(this, args);
  }
  AppResponse.prototype = app.response;
  return http.createServer({ IncomingMessage: AppRequest as never, ServerResponse: AppResponse as never }, app);
}
