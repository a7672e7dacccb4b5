/**
 * createApp(deps) wires the whole HTTP stack once. Order of checks, per product.md:
 * request id → operation → auth (401/403) → rate limit (429) → body → validation against the spec
 * (400/413/415) → handler.
 */
import { get as httpGet, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Express, type Request, type RequestHandler } from 'express';
import type { AuthContext } from './auth/auth.js';
import typeis from 'type-is';
import * as OpenApiValidator from 'express-openapi-validator';
import type { Kysely } from 'kysely';
import type pg from 'pg';
import type { Logger } from 'pino';
import { operationList } from '../generated/operations.js';
import { createLastUsedRecorder } from './auth/last-used.js';
import { createTokenLookup, type TokenLookup } from './auth/token-lookup.js';
import type { Database } from './db/schema.js';
import { authorizeAndLimit } from './http/authorize-and-limit.js';
import { jsonBody } from './http/body-parser.js';
import { errorHandler } from './http/error-handler.js';
import { notFound, validationFailed } from './http/errors.js';
import type { AnyHandler, Handlers } from './http/handler-types.js';
import { indexSpec, loadSpec, type OpenApiDocument, type SpecIndex } from './http/spec.js';
import { defaultStore, fingerprintRequest, normalizeKey, type IdempotencyStore } from './idempotency/idempotency.js';
import { createHttpServer } from './http/http-server.js';
import { requestLog } from './http/request-log.js';
import { series } from './http/series.js';
import { createWriteRunner } from './http/write-unit.js';
import { handlers as defaultHandlers } from './handlers.js';
import { createRateLimits, DEFAULT_RATE_LIMITS, type RateLimitBudgets } from './rate-limit/rate-limits.js';

export interface AppDeps {
  db: Kysely<Database>;
  logger: Logger;
  /** Validate every response against the spec: on in tests, off in production. */
  validateResponses?: boolean;
  /** The document to validate against, the bundled spec when absent (tests pass one with closed responses). */
  apiSpec?: OpenApiDocument;
  /** Replace handlers (tests inject faults this way). */
  handlers?: Partial<Handlers>;
  /** The time, for idempotency keys' lifetime (tests move it). */
  clock?: () => Date;
  /** Replace idempotency queries (tests inject failures inside the transaction). */
  idempotencyStore?: Partial<IdempotencyStore>;
  /** Rate-limit budgets (DEFAULT_RATE_LIMITS when absent); false switches rate limiting off. */
  rateLimits?: RateLimitBudgets | false;
  /**
   * A PostgreSQL pool on `db`'s database, if there is one (DatabaseHandle.counterPool): rate-limit
   * counters are then kept there and shared by every server process; without it they are kept in
   * this process's memory.
   */
  pool?: pg.Pool | undefined;
  /** Tokens by prefix (cached for a second by default; tests pass one with their own clock). */
  tokenLookup?: TokenLookup;
  /** Express's `trust proxy`: which proxies may give the client's address (X-Forwarded-For). */
  trustProxy?: boolean | number | string;
}

export interface App {
  app: Express;
  spec: SpecIndex;
  /** The app's HTTP server, not yet listening (server/http/http-server.ts): the way to serve it. */
  createServer(): Server;
  /** Compiles the validator's schemas now rather than on the first request. */
  warmUp(): Promise<void>;
}

/**
 * What a handler is given (HandlerContext in server/http/handler-types.ts). A class, so that each
 * request costs one small object of a stable shape; the logger is made only if a handler logs.
 */
class Context {
  constructor(
    readonly req: Request,
    readonly db: Kysely<Database> | undefined,
    readonly transaction: unknown,
    readonly now: Date,
    readonly forgetToken: (prefix: string) => void,
  ) {}
  get body(): unknown {
    return this.req.body;
  }
  /** The validator matched the path to the operation and decoded its parameters. */
  get params(): Record<string, string> {
    return (this.req.openapi?.pathParams ?? {}) as Record<string, string>;
  }
  get query(): unknown {
    return this.req.query;
  }
  get auth(): AuthContext | undefined {
    return this.req.auth;
  }
  get log(): Logger {
    return this.req.log;
  }
}

export function createApp(deps: AppDeps): App {
  const spec = indexSpec(deps.apiSpec ? structuredClone(deps.apiSpec) : loadSpec());
  const handlers = { ...defaultHandlers, ...deps.handlers } as Handlers;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  // Paths are matched exactly as the spec writes them: the operation lookup that decides on auth
  // and Express's routing must never disagree (a case variant or a trailing slash is a 404).
  app.set('case sensitive routing', true);
  app.set('strict routing', true);
  app.set('query parser', 'simple');
  app.set('trust proxy', deps.trustProxy ?? false);

  const requestLogging = requestLog(app, deps.logger);
  const locate: RequestHandler = (req, _res, next) => {
    req.operation = spec.match(req.method, req.path);
    next();
  };
  const rateLimits = deps.rateLimits ?? DEFAULT_RATE_LIMITS;
  const tokens = deps.tokenLookup ?? createTokenLookup(deps.db);
  const authorize = authorizeAndLimit({
    tokens,
    limits: rateLimits ? createRateLimits(rateLimits, deps.pool) : undefined,
    recordLastUsed: createLastUsedRecorder(deps.db, deps.logger),
  });
  // An operation that declares no request body (GET, DELETE, restore) does not read one: a body
  // there has no meaning, and reading it could only produce answers the spec does not list (415).
  const ignoreBody: RequestHandler = (req, _res, next) => {
    req.body = undefined;
    // Nothing the caller sent is silently dropped: a body where the operation takes none is refused.
    next(typeis.hasBody(req) && Number(req.headers['content-length'] ?? 1) !== 0 ? validationFailed({ body: 'must be empty: this operation takes no request body' }) : undefined);
  };
  const bodyParsers = new Map(
    [...spec.operations.values()].map((info) => [
      info.entry.operationId,
      info.entry.hasBody ? jsonBody(info.decimalFields, true) : ignoreBody,
    ]),
  );
  // Not an operation of the API: its answer is 404 or 405, whatever the body.
  const dropBody: RequestHandler = (req, _res, next) => {
    req.body = undefined;
    next();
  };
  const parseBody: RequestHandler = (req, res, next) => (req.operation ? bodyParsers.get(req.operation.operationId)! : dropBody)(req, res, next);

  const validator = OpenApiValidator.middleware({
    apiSpec: spec.doc as never,
    validateRequests: { allErrors: true, coerceTypes: false },
    validateResponses: deps.validateResponses ? { allErrors: true } : false,
    // Checking the document against the OpenAPI schema costs a third of a second of every start;
    // CI proves it valid (npm run lint:spec), and tests check it again here.
    validateApiSpec: deps.validateResponses ?? false,
    validateSecurity: false,
    validateFormats: true,
    ignoreUndocumented: false,
    // No operation takes a file: no multipart step on every request.
    fileUploader: false,
    $refParser: { mode: 'bundle' },
  });

  const clock = deps.clock ?? (() => new Date());
  const runWrite = createWriteRunner({ db: deps.db, clock, store: { ...defaultStore, ...deps.idempotencyStore } });

  const routes = new Map<string, RequestHandler>();
  for (const op of operationList) {
    // One operation at a time: the map is typed per operationId, the loop sees their union.
    const handler = handlers[op.operationId] as unknown as AnyHandler;
    const isWrite = op.method !== 'get';
    routes.set(op.operationId, async (req, res) => {
      if (isWrite) {
        const header = op.idempotencyKey && req.auth ? req.headers['idempotency-key'] : undefined;
        const key =
          typeof header === 'string'
            ? { orgId: req.auth!.orgId, env: req.auth!.env, key: normalizeKey(header), fingerprint: fingerprintRequest(req.method, req.path, req.body) }
            : undefined;
        const response = await runWrite(key, async (transaction, now) => {
          const result = await handler(new Context(req, undefined, transaction, now, tokens.forget) as never);
          return { status: result.status, body: result.body, headers: result.headers ?? {}, insert: result.insert, storedBody: result.storedBody };
        });
        for (const [name, value] of Object.entries(response.headers)) res.setHeader(name, value);
        // The validator checks responses through res.json (in tests): it gets the body back as the
        // value it was, which serialises to the same text.
        if (deps.validateResponses) return void res.status(response.status).json(JSON.parse(response.text));
        // The body as it was serialised once, for the answer and the stored copy alike, straight to
        // Node: none of res.send's content negotiation applies to a write's JSON answer.
        res.writeHead(response.status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(response.text) });
        res.end(response.text);
        return;
      }
      const result = await handler(new Context(req, deps.db, undefined, clock(), tokens.forget) as never);
      for (const [name, value] of Object.entries(result.headers ?? {})) res.setHeader(name, value);
      // A page or a document already serialised once, at start-up.
      if (result.text !== undefined) res.status(result.status).type(result.contentType!).send(result.text);
      else res.status(result.status).json(result.body);
    });
  }
  const dispatch: RequestHandler = (req, res, next) => (req.operation ? routes.get(req.operation.operationId)!(req, res, next) : next());

  // The whole pipeline of every request, in product.md's order, as one layer (see series.ts).
  app.use(series([requestLogging, locate, authorize, parseBody, ...(validator as RequestHandler[]), dispatch]));

  // Whatever no route answered (the validator lets a few shapes through, such as a trailing slash).
  app.use((_req, _res, next) => next(notFound()));
  app.use(errorHandler(spec));

  return {
    app,
    spec,
    createServer: () => createHttpServer(app),
    warmUp: async () => {
      // The validator compiles lazily on its first request: send it one that fails auth-free
      // (node:http rather than fetch, which would load undici for nothing).
      const server = createHttpServer(app);
      await new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening));
      const { port } = server.address() as AddressInfo;
      await new Promise<void>((answered) => {
        const request = httpGet({ host: '127.0.0.1', port, path: '/healthz', agent: false }, (response) => response.resume().on('end', answered));
        request.on('error', () => answered());
      });
      await new Promise<void>((closed) => server.close(() => closed()));
    },
  };
}
