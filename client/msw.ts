/**
 * Mocks of the Clients API for your tests (`@clients-api/client/msw`): MSW request handlers for
 * every operation, answering from the spec's own examples, so that code built on the client can be
 * tested without the server and without hand-written mocks that drift from the spec. Needs `msw`
 * (2.x, or 3.x on Node 22.12 and later), an optional peer dependency used by this entry only.
 *
 * @example
 * ```ts
 * import { setupServer } from 'msw/node';
 * import { clientsApiHandlers, exampleBody, exampleResponse } from '@clients-api/client/msw';
 *
 * const server = setupServer(
 *   ...clientsApiHandlers({
 *     // A body of the operation's success type: a misspelt field does not compile.
 *     getClient: { data: { ...exampleBody('getClient').data, name: 'Initech' } },
 *     // Or a function of the request that answers a Response: `reply(body)`, or the spec's example
 *     // of another status, here its 404.
 *     deleteClient: ({ params, reply }) =>
 *       params.id === 'gone' ? exampleResponse('deleteClient', 404) : reply(exampleBody('deleteClient', 'deleted')),
 *   }),
 * );
 * server.listen({ onUnhandledRequest: 'error' });
 * ```
 */
import { http, type HttpHandler, type HttpResponseResolver } from 'msw';
import type { operations } from './generated/api.js';
import { type MockAnswer, type MockOperationId, operationExamples } from './generated/examples.js';

/** The operationId of every operation the handlers answer: each one of the spec's paths. */
export type ClientsApiOperationId = MockOperationId;

type Responses<Id extends ClientsApiOperationId> = operations[Id]['responses'];
type SuccessStatus<Id extends ClientsApiOperationId> = Extract<keyof Responses<Id>, 200 | 201 | 202 | 203 | 204>;
type ContentOf<Response> = Response extends { content: infer Content } ? Content[keyof Content] : never;

/** The body an operation answers on success, as the spec types it (`operations[id]['responses'][2xx]`). */
export type ClientsApiSuccessBody<Id extends ClientsApiOperationId> = ContentOf<Responses<Id>[SuccessStatus<Id>]>;

/** A status the spec documents for the operation. */
export type ClientsApiStatus<Id extends ClientsApiOperationId> = Extract<keyof Responses<Id>, number>;

/**
 * What an override function gets: what MSW hands a resolver (the `request`, the path's `params`
 * such as `params.id`, `cookies`), and `reply`, which makes the operation's success answer of a
 * body of its type (with the success status and the spec's example headers).
 */
export type ClientsApiResolverInfo<Id extends ClientsApiOperationId> = Parameters<HttpResponseResolver>[0] & {
  reply(body: ClientsApiSuccessBody<Id>): Response;
};

/**
 * How one operation answers instead of its first success example: a body of its success type,
 * or a function of the request that returns a `Response`: `reply(body)`, the spec's example of
 * another status (`exampleResponse('getClient', 404)`), or any Response of your own. The function
 * answers a Response, not a body, because TypeScript does not check a returned object literal for
 * misspelt fields; `reply`'s argument is checked.
 */
export type ClientsApiOverride<Id extends ClientsApiOperationId> =
  | ClientsApiSuccessBody<Id>
  | ((info: ClientsApiResolverInfo<Id>) => Response | Promise<Response>);

/** Overrides by operationId; an operation left out answers its first success example. */
export type ClientsApiOverrides = { [Id in ClientsApiOperationId]?: ClientsApiOverride<Id> };

export interface ClientsApiHandlersOptions {
  /**
   * Where the code under test sends its requests, such as `https://api.example.com`. By default the
   * handlers answer the API's paths on any origin.
   */
  baseUrl?: string;
}

function answerOf(operationId: ClientsApiOperationId, status: number): MockAnswer {
  const answer = operationExamples[operationId]?.responses[status];
  if (!answer) throw new Error(`The spec documents no ${status} answer for ${operationId}`);
  return answer;
}

function exampleOf(operationId: ClientsApiOperationId, status: number, name: string | undefined): unknown {
  const examples = answerOf(operationId, status).examples;
  const chosen = name ?? Object.keys(examples)[0];
  if (chosen === undefined) return undefined;
  if (!(chosen in examples)) {
    throw new Error(`${operationId} ${status} has no example named ${chosen}; it has ${Object.keys(examples).join(', ') || 'none'}`);
  }
  // A copy, so that a test that changes what it got changes no other test's answer.
  return structuredClone(examples[chosen]);
}

function respond(operationId: ClientsApiOperationId, status: number, body: unknown, requestPath?: string): Response {
  const operation = operationExamples[operationId];
  const answer = answerOf(operationId, status);
  const headers = new Headers(answer.headers);
  if (answer.contentType === null || body === undefined) return new Response(null, { status, headers });
  headers.set('Content-Type', answer.contentType);
  // The spec gives Location no example: it is the created resource's own path, under the
  // collection the request named (`/clients/{id}/contacts` has the client's id in it).
  const id = (body as { data?: { id?: unknown } } | null)?.data?.id;
  if (status === 201 && typeof id === 'string') headers.set('Location', `${requestPath ?? operation.path}/${id}`);
  return new Response(typeof body === 'string' ? body : JSON.stringify(body), { status, headers });
}

/**
 * The spec's example body of an operation's success answer: its first one, or the one named.
 * A fresh copy each time: change it freely, such as `{ data: { ...exampleBody('getClient').data, name: 'Initech' } }`.
 */
export function exampleBody<Id extends ClientsApiOperationId>(operationId: Id, name?: string): ClientsApiSuccessBody<Id> {
  return exampleOf(operationId, operationExamples[operationId].success, name) as ClientsApiSuccessBody<Id>;
}

/**
 * A Response as the spec documents it for this operation and status (its success status by
 * default), with the spec's example body (the first, or the one named) and headers, such as
 * `exampleResponse('getClient', 404)` for the spec's `not_found` answer.
 */
export function exampleResponse<Id extends ClientsApiOperationId>(operationId: Id, status?: ClientsApiStatus<Id>, name?: string): Response {
  const chosen = status ?? operationExamples[operationId].success;
  return respond(operationId, chosen, exampleOf(operationId, chosen, name));
}

/**
 * MSW request handlers for every operation of the Clients API. Each answers its first success
 * example from the spec, with the spec's example headers (an `ETag`, the `RateLimit` fields, a
 * `Location` for a create), unless `overrides` says otherwise for its operationId.
 */
export function clientsApiHandlers(overrides: ClientsApiOverrides = {}, options: ClientsApiHandlersOptions = {}): HttpHandler[] {
  const origin = options.baseUrl === undefined ? '*' : options.baseUrl.replace(/\/+$/, '');
  return (Object.keys(operationExamples) as ClientsApiOperationId[]).map((operationId) => {
    const operation = operationExamples[operationId];
    const override = overrides[operationId] as ClientsApiOverride<ClientsApiOperationId> | undefined;
    return http[operation.method](`${origin}${operation.path}`, async (info) => {
      const path = new URL(info.request.url).pathname;
      if (override === undefined)
        return respond(operationId, operation.success, exampleOf(operationId, operation.success, undefined), path);
      if (typeof override !== 'function') return respond(operationId, operation.success, override, path);
      return override({ ...info, reply: (body) => respond(operationId, operation.success, body, path) });
    });
  });
}
