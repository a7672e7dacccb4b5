/**
 * The typed client of the Clients API, generated from the spec's types by openapi-fetch: every
 * path, parameter, body and answer is typed, so a call that the spec does not allow does not
 * compile. Calls return `{ data, error, response }`; `error` is the API's error envelope.
 *
 * @example
 * ```ts
 * import { createClientsApi } from './client/index.js';
 * const api = createClientsApi({ baseUrl: 'http://127.0.0.1:3000', token: process.env.CLIENTS_API_TOKEN! });
 * const { data, error } = await api.POST('/clients', { body: { name: 'Globex Corporation' } });
 * if (error) console.error(error.error.code, error.error.fields);
 * else console.log(data.data.id);
 *
 * // Every client, page by page: pass nextCursor back as cursor until it is null.
 * let cursor: string | undefined;
 * do {
 *   const page = await api.GET('/clients', { params: { query: { limit: 100, cursor } } });
 *   if (page.error) throw new Error(page.error.error.message);
 *   for (const client of page.data.data) console.log(client.id, client.name);
 *   cursor = page.data.nextCursor ?? undefined;
 * } while (cursor);
 * ```
 */
import createClient, { type Client, type Middleware } from 'openapi-fetch';
import type { components, paths } from '../generated/api.js';

export type { components, paths };
/** A client as the API returns it. */
export type ClientResource = components['schemas']['Client'];
/** The body of `POST /clients`. */
export type ClientCreate = components['schemas']['ClientCreate'];
/** The body of `PATCH /clients/{id}`: only the fields to change; `null` clears one. */
export type ClientUpdate = components['schemas']['ClientUpdate'];
/** A page of `GET /clients`: `{ data, nextCursor }`. */
export type ClientList = components['schemas']['ClientList'];
/** The envelope of every error: `{ error: { code, message, fields?, requiredPlan?, feature? } }`. */
export type ApiErrorBody = components['schemas']['Error'];

export interface ClientsApiOptions {
  /** Where the API is served, such as `http://127.0.0.1:3000`. */
  baseUrl: string;
  /** A Personal Access Token, `hsk_<env>_<prefix12>_<secret32>`. */
  token: string;
  /** A fetch to send requests with (a proxy, a test double); the global fetch by default. */
  fetch?: (request: Request) => Promise<Response>;
}

/** The typed client: `api.POST('/clients', { body })` and so on, one method per HTTP verb. */
export type ClientsApi = Client<paths>;

/** Middleware that sends the token as `Authorization: Bearer <token>` on every request. */
export function bearerAuth(token: string): Middleware {
  return {
    onRequest({ request }) {
      request.headers.set('Authorization', `Bearer ${token}`);
      return request;
    },
  };
}

/** Creates a typed client that authenticates every request with `token`. */
export function createClientsApi(options: ClientsApiOptions): ClientsApi {
  const client = createClient<paths>({ baseUrl: options.baseUrl, ...(options.fetch && { fetch: options.fetch }) });
  client.use(bearerAuth(options.token));
  return client;
}
