/**
 * The typed client of the Clients API (`@clients-api/client`), openapi-fetch over the spec's
 * types: every path, parameter, body and answer is typed, so a call that the spec does not allow
 * does not compile. Calls return `{ data, error, response }`; `error` is the API's error envelope.
 *
 * @example
 * ```ts
 * import { createClientsApi } from '@clients-api/client';
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
import type { components, operations, paths } from './generated/api.js';

export type { components, operations, paths };
export type * from './schemas.js';
export { type UnknownEvent, type UnknownEventType, type WebhookHeaders, WebhookVerificationError, verifyWebhook } from './webhooks.js';

export type Fetch = (request: Request) => Promise<Response>;

export interface ClientsApiOptions {
  /** Where the API is served, such as `http://127.0.0.1:3000`. */
  baseUrl: string;
  /** A Personal Access Token, `hsk_<env>_<prefix12>_<secret32>`. */
  token: string;
  /** A fetch to send requests with (a proxy, a test double); the global fetch by default. */
  fetch?: Fetch;
  /**
   * Give every POST and PATCH an `Idempotency-Key` (a random UUID) unless the call sets one, so
   * that retries are safe. On by default.
   */
  idempotencyKeys?: boolean;
  /** How failed requests are retried (see {@link RetryOptions}); `false` sends each request once. */
  retry?: RetryOptions | false;
}

export interface RetryOptions {
  /** Attempts in all, the first included. Default 4. */
  maxAttempts?: number;
  /** The first backoff; each further one doubles, with full jitter. Default 250 ms. */
  baseDelayMs?: number;
  /** No single wait is longer. Default 5 s. */
  maxDelayMs?: number;
  /** No retry starts after this long since the first attempt. Default 30 s. */
  maxElapsedMs?: number;
  /** How to wait (tests pass a fake). */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Random number in [0, 1) for the jitter. */
  random?: () => number;
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

const WRITES = new Set(['POST', 'PATCH']);

/**
 * Middleware that gives every POST and PATCH an `Idempotency-Key` unless one is set. The key is
 * made before the request is sent, so every retry of it (see {@link retryingFetch}) reuses it.
 */
export function idempotencyKeys(generate: () => string = () => crypto.randomUUID()): Middleware {
  return {
    onRequest({ request }) {
      if (WRITES.has(request.method) && !request.headers.has('Idempotency-Key')) request.headers.set('Idempotency-Key', generate());
      return request;
    },
  };
}

const SAFE_TO_REPEAT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

function sleepFor(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}

/**
 * A fetch that retries what is safe to retry: network errors and 5xx (only for requests that are
 * idempotent by method or carry an `Idempotency-Key`), 429, and 409 with `Retry-After` (the same
 * key still in progress). It waits `Retry-After` when the server sends one, otherwise exponential
 * backoff with full jitter, and gives up after `maxAttempts` or `maxElapsedMs`, answering with the
 * last response (or throwing the last network error). openapi-fetch middleware cannot retry, which
 * is why this is a fetch.
 */
export function retryingFetch(inner: Fetch = (request) => fetch(request), options: RetryOptions = {}): Fetch {
  const maxAttempts = options.maxAttempts ?? 4;
  const baseDelayMs = options.baseDelayMs ?? 250;
  const maxDelayMs = options.maxDelayMs ?? 5_000;
  const maxElapsedMs = options.maxElapsedMs ?? 30_000;
  const sleep = options.sleep ?? sleepFor;
  const random = options.random ?? Math.random;

  return async (request) => {
    const started = Date.now();
    const repeatable = SAFE_TO_REPEAT.has(request.method) || request.headers.has('Idempotency-Key');
    for (let attempt = 1; ; attempt++) {
      let response: Response | undefined;
      let failure: unknown;
      try {
        response = await inner(request.clone());
      } catch (error) {
        if (request.signal.aborted) throw error;
        failure = error;
      }
      const retryAfter = response?.headers.get('Retry-After');
      const retryable = response
        ? response.status === 429 || (response.status === 409 && retryAfter !== null) || (response.status >= 500 && repeatable)
        : repeatable;
      const backoff = Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1)) * random();
      const wait = retryAfter !== null && retryAfter !== undefined && /^\d+$/.test(retryAfter) ? Number(retryAfter) * 1000 : backoff;
      if (!retryable || attempt >= maxAttempts || Date.now() - started + wait > maxElapsedMs) {
        if (response) return response;
        throw failure;
      }
      await response?.body?.cancel();
      await sleep(wait, request.signal);
    }
  };
}

/**
 * Creates a typed client that authenticates every request with `token`, gives every POST and
 * PATCH an Idempotency-Key, and retries what is safe to retry.
 */
export function createClientsApi(options: ClientsApiOptions): ClientsApi {
  const inner = options.fetch ?? ((request: Request) => fetch(request));
  const send = options.retry === false ? inner : retryingFetch(inner, options.retry);
  const client = createClient<paths>({ baseUrl: options.baseUrl, fetch: send });
  client.use(bearerAuth(options.token));
  if (options.idempotencyKeys !== false) client.use(idempotencyKeys());
  return client;
}
