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
 * // Every client, page by page: paginate follows nextCursor for you.
 * for await (const client of api.paginate('/clients', { params: { query: { limit: 100 } } })) console.log(client.id, client.name);
 * ```
 */
import createClient, {
  type Client,
  type ClientPathsWithMethod,
  type FetchResponse,
  type MaybeOptionalInit,
  type Middleware,
} from 'openapi-fetch';
import type { components, operations, paths } from './generated/api.js';
import { cursorParameters } from './generated/pagination.js';
import type { ApiErrorBody, ErrorCode, Plan } from './schemas.js';

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
  /**
   * The default {@link CallOptions.timeoutMs} of every call (each call has its own clock); a call's
   * own `timeoutMs` wins. None by default.
   */
  timeoutMs?: number;
}

/** `createClientsApi({ ..., throwOnError: true })`: see {@link CallOptions.throwOnError}. */
export interface ThrowOnErrorOption {
  /**
   * Every call resolves to the answer's `data` alone, and an answer that is not 2xx throws a
   * {@link ClientsApiError}. A call can still ask for `{ data, error, response }` with
   * `throwOnError: false` (to read a header such as `ETag`).
   */
  throwOnError: true;
}

/** What every call takes besides its parameters and body. */
export interface CallOptions {
  /**
   * The longest the whole call may take, in milliseconds: every attempt and every wait between
   * retries together. A retry whose wait would end after it is not made (the call answers what it
   * last got, as when the retry budget runs out); an attempt still running when it passes is
   * aborted and the call rejects with a `TimeoutError` (a `DOMException`).
   */
  timeoutMs?: number;
  /** Aborts the call, retries included: it rejects at once with the signal's reason and retries nothing. */
  signal?: AbortSignal;
  /**
   * `true`: the call resolves to the answer's `data` and throws a {@link ClientsApiError} on any
   * answer that is not 2xx; `false`: it resolves to `{ data, error, response }`. Default: the
   * client's `throwOnError`.
   */
  throwOnError?: boolean;
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
  return retrying(inner, options);
}

/** {@link retryingFetch}, also stopping before a wait that would end after `deadline` (a call's `timeoutMs`). */
function retrying(inner: Fetch, options: RetryOptions, deadline?: number): Fetch {
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
        // A clone's own signal follows the request's only weakly in Node 20's fetch (undici keeps
        // its controller in a WeakRef), so a collected one would never abort: give each attempt
        // the request's signal itself.
        response = await inner(new Request(request.clone(), { signal: request.signal }));
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
      const now = Date.now();
      const outOfTime = now - started + wait > maxElapsedMs || (deadline !== undefined && now + wait >= deadline);
      if (!retryable || attempt >= maxAttempts || outOfTime) {
        if (response) return response;
        throw failure;
      }
      await response?.body?.cancel();
      await sleep(wait, request.signal);
    }
  };
}

/**
 * What a call that is not 2xx throws in `throwOnError` mode (and what `paginate` throws): the
 * API's error envelope, spread out, with what the answer's headers said.
 */
export class ClientsApiError extends Error {
  override readonly name = 'ClientsApiError';
  /** The HTTP status, such as 402. */
  readonly status: number;
  /**
   * The envelope's stable `error.code`; `unexpected_response` when the answer was not the API's
   * envelope (a proxy's 502 page, say).
   */
  readonly code: ErrorCode | 'unexpected_response';
  /** Each bad field (or header, or `body`) and what is wrong with it, on a 400 `validation_failed`. */
  readonly fields: Readonly<Record<string, string>> | undefined;
  /** The plan a 402 asks for. */
  readonly requiredPlan: Plan | undefined;
  /** The feature or limit behind a 402, such as `clients.max`. */
  readonly feature: string | undefined;
  /** The answer's `X-Request-Id`: quote it when you ask for support. */
  readonly requestId: string | null;
  /** The answer's `Retry-After`, in seconds (a 429, a 503, a 409 in progress); null without one. */
  readonly retryAfter: number | null;
  /** The envelope as received; undefined when the answer was not one. */
  readonly body: ApiErrorBody | undefined;
  /** The answer itself (its body already read). */
  readonly response: Response;

  constructor(response: Response, body: unknown) {
    const envelope = isEnvelope(body) ? body : undefined;
    super(envelope?.error.message ?? `${response.status} ${response.statusText || 'answer'} without the API's error envelope`);
    this.status = response.status;
    this.code = envelope?.error.code ?? 'unexpected_response';
    this.fields = envelope?.error.fields;
    this.requiredPlan = envelope?.error.requiredPlan;
    this.feature = envelope?.error.feature;
    this.requestId = response.headers.get('X-Request-Id');
    this.retryAfter = retryAfterSeconds(response.headers.get('Retry-After'));
    this.body = envelope;
    this.response = response;
  }
}

function isEnvelope(body: unknown): body is ApiErrorBody {
  const error = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  return typeof error?.code === 'string' && typeof error.message === 'string';
}

function retryAfterSeconds(value: string | null): number | null {
  if (value === null) return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

type Verb = 'get' | 'put' | 'post' | 'delete' | 'patch';
type Media = `${string}/${string}`;
type PathsWith<M extends Verb> = ClientPathsWithMethod<Client<paths>, M>;
/** An operation's init (params, body, fetch options) with {@link CallOptions}; undefined stays allowed when nothing is required. */
type WithCallOptions<Init> = Init extends undefined ? undefined : Init & CallOptions;
type InitArgs<Init> = undefined extends Init ? [init?: Init] : [init: Init];
type DataOf<Answer> = Answer extends { data: infer Data; error?: never } ? Data : never;
type Throws<Init, ClientThrows extends boolean> = Init extends { throwOnError: infer Choice extends boolean } ? Choice : ClientThrows;
type FullAnswer<Operation, Init> = Operation extends Record<string | number, unknown> ? FetchResponse<Operation, Init, Media> : never;
/** `{ data, error, response }`, or the `data` alone when the call throws on errors. */
export type CallResult<Operation, Init, ClientThrows extends boolean> =
  Throws<Init, ClientThrows> extends true
    ? DataOf<FullAnswer<Operation, Init>>
    : Throws<Init, ClientThrows> extends false
      ? FullAnswer<Operation, Init>
      : DataOf<FullAnswer<Operation, Init>> | FullAnswer<Operation, Init>;

type ClientsApiMethod<M extends Verb, ClientThrows extends boolean> = <
  Path extends PathsWith<M>,
  Init extends WithCallOptions<MaybeOptionalInit<paths[Path], M>>,
>(
  url: Path,
  ...init: InitArgs<Init>
) => Promise<CallResult<paths[Path][M], Init, ClientThrows>>;

type GetOperation<P> = P extends keyof paths ? (paths[P] extends { get: infer Operation } ? Operation : never) : never;
type OkBody<Operation> = Operation extends { responses: { 200: { content: { 'application/json': infer Body } } } } ? Body : never;
type QueryOf<Operation> = Operation extends { parameters: { query?: infer Query } } ? NonNullable<Query> : never;

/**
 * The lists `paginate` walks: every GET of the spec whose answer is a page (`data`, an array, and
 * `nextCursor`) and that the spec links to its next page (generated/pagination.ts), such as
 * `/clients`, `/tokens`, `/events` and `/webhook-endpoints/{id}/deliveries`.
 */
export type PaginatedPath = {
  [P in keyof typeof cursorParameters]: OkBody<GetOperation<P>> extends { data: unknown[]; nextCursor: string | null }
    ? (typeof cursorParameters)[P] extends keyof QueryOf<GetOperation<P>>
      ? P
      : never
    : never;
}[keyof typeof cursorParameters];

/** One item of the list at `Path`, such as a `ClientResource` for `/clients`. */
export type PageItem<Path extends PaginatedPath> = OkBody<GetOperation<Path>> extends { data: (infer Item)[] } ? Item : never;

/** What `paginate` takes: the list's parameters as `GET` takes them; `timeoutMs` is per page, `signal` for the walk. */
export type PaginateInit<Path extends PaginatedPath> =
  WithCallOptions<MaybeOptionalInit<paths[Path], 'get'>> extends infer Init
    ? Init extends undefined
      ? undefined
      : Omit<Init, 'throwOnError'>
    : never;

/**
 * The typed client: `api.POST('/clients', { body })` and so on, one method per HTTP verb, plus
 * `paginate`. `ClientsApi<true>` is a client made with `throwOnError: true`.
 */
export interface ClientsApi<ClientThrows extends boolean = false> {
  /** Call a GET operation. */
  GET: ClientsApiMethod<'get', ClientThrows>;
  /** Call a PUT operation. */
  PUT: ClientsApiMethod<'put', ClientThrows>;
  /** Call a POST operation. */
  POST: ClientsApiMethod<'post', ClientThrows>;
  /** Call a DELETE operation. */
  DELETE: ClientsApiMethod<'delete', ClientThrows>;
  /** Call a PATCH operation. */
  PATCH: ClientsApiMethod<'patch', ClientThrows>;
  /**
   * Every item of a list, page after page, following `nextCursor` (for `/events`, `after`) until
   * the list ends: `nextCursor` null, or the feed's `hasMore` false. Each page is one GET with
   * its own `timeoutMs` and retries; `signal` stops the walk. A page that is not 2xx throws a
   * {@link ClientsApiError}, whatever `throwOnError` says. A `cursor` (or `after`) in the query
   * starts the walk there.
   */
  paginate<Path extends PaginatedPath>(path: Path, ...init: InitArgs<PaginateInit<Path>>): AsyncIterableIterator<PageItem<Path>>;
  /** Add openapi-fetch middleware (it runs once per call, before the retries). */
  use(...middleware: Middleware[]): void;
  /** Remove middleware added with `use`. */
  eject(...middleware: Middleware[]): void;
}

/** Aborts at `timeoutMs` or when `signal` does, whichever comes first. */
function callSignal(signal: AbortSignal | null | undefined, timeoutMs: number | undefined, what: string) {
  if (timeoutMs === undefined) return { signal: signal ?? undefined, deadline: undefined, done: () => {} };
  const controller = new AbortController();
  const deadline = Date.now() + timeoutMs;
  const timer = setTimeout(() => controller.abort(new DOMException(`${what} timed out after ${timeoutMs} ms`, 'TimeoutError')), timeoutMs);
  const follow = () => controller.abort(signal?.reason);
  if (signal?.aborted) follow();
  else signal?.addEventListener('abort', follow, { once: true });
  return {
    signal: controller.signal,
    deadline,
    done: () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', follow);
    },
  };
}

type Options = ClientsApiOptions & { throwOnError?: boolean };
type AnyInit = { [key: string]: unknown; params?: { query?: Record<string, unknown> } } & CallOptions & { fetch?: Fetch };
type Answer = { data?: unknown; error?: unknown; response: Response };

/**
 * Creates a typed client that authenticates every request with `token`, gives every POST and
 * PATCH an Idempotency-Key, and retries what is safe to retry. With `throwOnError: true`, calls
 * resolve to the `data` alone and throw a {@link ClientsApiError} instead of answering `error`.
 */
export function createClientsApi(options: ClientsApiOptions & ThrowOnErrorOption): ClientsApi<true>;
export function createClientsApi(options: ClientsApiOptions & { throwOnError?: false }): ClientsApi;
export function createClientsApi(options: Options): ClientsApi<boolean> {
  const base = createClient<paths>({ baseUrl: options.baseUrl });
  base.use(bearerAuth(options.token));
  if (options.idempotencyKeys !== false) base.use(idempotencyKeys());
  const send = base.request as unknown as (method: string, path: string, init: AnyInit) => Promise<Answer>;

  async function call(method: string, path: string, init: AnyInit = {}): Promise<unknown> {
    const { timeoutMs = options.timeoutMs, throwOnError = options.throwOnError ?? false, signal, fetch: callFetch, ...rest } = init;
    const inner = callFetch ?? options.fetch ?? ((request: Request) => fetch(request));
    const bounds = callSignal(signal, timeoutMs, `${method} ${path}`);
    const transport = options.retry === false ? inner : retrying(inner, options.retry ?? {}, bounds.deadline);
    try {
      const answer = await send(method, path, { ...rest, ...(bounds.signal ? { signal: bounds.signal } : {}), fetch: transport });
      if (!throwOnError) return answer;
      if (!answer.response.ok) throw new ClientsApiError(answer.response, answer.error);
      return answer.data;
    } finally {
      bounds.done();
    }
  }

  async function* paginate(path: keyof typeof cursorParameters, init: AnyInit = {}): AsyncGenerator<unknown> {
    const name = cursorParameters[path];
    const { params = {}, signal, ...rest } = init;
    let cursor = params.query?.[name];
    for (;;) {
      signal?.throwIfAborted();
      const query = { ...params.query, ...(cursor === undefined ? {} : { [name]: cursor }) };
      const page = (await call('GET', path, {
        ...rest,
        ...(signal ? { signal } : {}),
        params: { ...params, query },
        throwOnError: true,
      })) as {
        data: unknown[];
        nextCursor: string | null;
        hasMore?: boolean;
      };
      yield* page.data;
      // The feed's cursor never runs out: it ends when hasMore is false (or a page moves nowhere).
      const stuck = page.data.length === 0 && page.nextCursor === cursor;
      if (page.nextCursor === null || page.hasMore === false || stuck) return;
      cursor = page.nextCursor;
    }
  }

  const verb = (method: string) => (path: string, init?: AnyInit) => call(method, path, init);
  return {
    GET: verb('GET'),
    PUT: verb('PUT'),
    POST: verb('POST'),
    DELETE: verb('DELETE'),
    PATCH: verb('PATCH'),
    paginate: paginate as ClientsApi<boolean>['paginate'],
    use: (...middleware) => base.use(...middleware),
    eject: (...middleware) => base.eject(...middleware),
  } as ClientsApi<boolean>;
}
