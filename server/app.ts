/**
 * createApp(deps) wires the whole HTTP stack once. Order of checks:
 * request id → operation → auth (401/403) → rate limit (429) → concurrency limit (429) → body → validation against the spec
 * (400/413/415) → the router (server/http/router.ts) → handler.
 */
import type { Server, ServerOptions } from 'node:http';
import express, { type RequestHandler } from 'express';
import * as OpenApiValidator from 'express-openapi-validator';
import type { Kysely } from 'kysely';
import type pg from 'pg';
import type { Logger } from 'pino';
import { createLastUsedRecorder } from './auth/last-used.js';
import { createTokenLookup, type TokenLookup } from './auth/token-lookup.js';
import { primaryReads, type Reads } from './db/reads.js';
import type { Database } from './db/schema.js';
import { createHandlers } from './handlers.js';
import { createReadiness, type Readiness } from './health/readiness.js';
import { authorizeAndLimit } from './http/authorize-and-limit.js';
import { queryRules } from './http/query-rules.js';
import { bodyRules } from './http/body-rules.js';
import { errorHandler, lastResort } from './http/error-handler.js';
import type { Handlers } from './operations/handler-types.js';
import { createHttpServer } from './http/http-server.js';
import { requestLog } from './http/request-log.js';
import { createRouter } from './http/router.js';
import { series } from './http/series.js';
import { traceRequests } from './http/trace-requests.js';
import { indexSpec, loadSpec, type OpenApiDocument, type SpecIndex } from './http/spec.js';
import { warmUp } from './http/warm-up.js';
import { defaultStore, type IdempotencyStore } from './idempotency/idempotency.js';
import type { Metrics } from './metrics/metrics.js';
import { createConcurrencyLimit, DEFAULT_CONCURRENCY_LIMIT } from './rate-limit/concurrency.js';
import { createRateLimits, DEFAULT_RATE_LIMITS, type RateLimitBudgets } from './rate-limit/rate-limits.js';
import type { RedisCounters } from './rate-limit/redis.js';
import { notFound } from './shared/errors.js';
import { ephemeralWebhookSettings, type WebhookSettings } from './webhook-delivery/settings.js';

export interface AppDeps {
  db: Kysely<Database>;
  /** Where reads that accept staleness may go (DatabaseHandle.replica); the primary `db` when absent. */
  reads?: Reads | undefined;
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
  /** Requests of one organisation in flight at once in this process (DEFAULT_CONCURRENCY_LIMIT when absent); false switches the limit off. */
  concurrencyLimit?: number | false;
  /**
   * A PostgreSQL pool on `db`'s database, if there is one (DatabaseHandle.counterPool): rate-limit
   * counters are then kept there and shared by every server process; without it they are kept in
   * this process's memory.
   */
  pool?: pg.Pool | undefined;
  /** Rate-limit counters in Redis (REDIS_URL, server/rate-limit/redis.ts): preferred to `pool` when given. */
  redis?: RedisCounters | undefined;
  /** Tokens by prefix (cached for a second by default; tests pass one with their own clock). */
  tokenLookup?: TokenLookup;
  /** Express's `trust proxy`: which proxies may give the client's address (X-Forwarded-For). */
  trustProxy?: boolean | number | string;
  /** What `GET /readyz` answers (a new one when absent); server/main.ts drains it on SIGTERM. */
  readiness?: Readiness;
  /** Where requests' durations and outcomes are counted (server/metrics/metrics.ts); none when absent. */
  metrics?: Metrics | undefined;
  /** Webhook secrets' key and address policy (server/main.ts makes them from the configuration); a key of its own when absent. */
  webhooks?: WebhookSettings;
}

export interface App {
  spec: SpecIndex;
  /** The app's HTTP server, not yet listening (server/http/http-server.ts): the way to serve it. */
  createServer(options?: ServerOptions): Server;
  readiness: Readiness;
  /** Compiles the validator's schemas now rather than on the first request. */
  warmUp(): Promise<void>;
}

export function createApp(deps: AppDeps): App {
  const spec = indexSpec(deps.apiSpec ? structuredClone(deps.apiSpec) : loadSpec());
  const readiness = deps.readiness ?? createReadiness();
  const app = express();
  // Express's own final handler renders an HTML page with the stack in any other mode (NODE_ENV is
  // `test` under the tests, and whatever the operator left it): never, whatever the environment.
  app.set('env', 'production');
  app.disable('x-powered-by');
  app.set('etag', false);
  // Paths are matched exactly as the spec writes them: the operation lookup that decides on auth
  // and Express's routing must never disagree (a case variant or a trailing slash is a 404).
  app.set('case sensitive routing', true);
  app.set('strict routing', true);
  app.set('query parser', 'simple');
  app.set('trust proxy', deps.trustProxy ?? false);

  const requestLogging = requestLog(app, deps.logger, deps.metrics?.observeRequest);
  const locate: RequestHandler = (req, _res, next) => {
    req.operation = spec.match(req.method, req.path);
    next();
  };
  const rateLimits = deps.rateLimits ?? DEFAULT_RATE_LIMITS;
  const tokens = deps.tokenLookup ?? createTokenLookup(deps.db);
  const modules = createHandlers({ forgetToken: tokens.forget, webhooks: deps.webhooks ?? ephemeralWebhookSettings() });
  const handlers = { ...modules, getReadiness: readiness.getReadiness, ...deps.handlers } as Handlers;
  const concurrencyLimit = deps.concurrencyLimit ?? DEFAULT_CONCURRENCY_LIMIT;
  const authorize = authorizeAndLimit({
    tokens,
    limits: rateLimits ? createRateLimits(rateLimits, deps.redis ?? deps.pool) : undefined,
    concurrency: concurrencyLimit ? createConcurrencyLimit(concurrencyLimit) : undefined,
    recordLastUsed: createLastUsedRecorder(deps.db, deps.logger),
    countRefusal: deps.metrics?.countRateLimitRefusal,
  });
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

  const dispatch = createRouter({
    db: deps.db,
    reads: deps.reads ?? primaryReads(deps.db),
    handlers,
    operations: spec.operations,
    clock: deps.clock ?? (() => new Date()),
    store: { ...defaultStore, ...deps.idempotencyStore },
    validateResponses: deps.validateResponses ?? false,
    countKeyed: deps.metrics?.countKeyed,
  });

  // The whole pipeline of every request, in that order, as one layer (see series.ts); the
  // request's server span first, when tracing is on (server/telemetry.ts).
  const tracing = traceRequests();
  app.use(
    series([
      ...(tracing ? [tracing] : []),
      requestLogging,
      locate,
      authorize,
      bodyRules(spec),
      queryRules(spec),
      ...(validator as RequestHandler[]),
      dispatch,
    ]),
  );

  // Whatever no route answered (the validator lets a few shapes through, such as a trailing slash).
  app.use((_req, _res, next) => next(notFound()));
  app.use(errorHandler(spec));
  // Only should the error handler itself fail: a fixed 500 in the envelope, never Express's page.
  app.use(lastResort);

  return {
    spec,
    readiness,
    createServer: (options) => createHttpServer(app, options),
    warmUp: () => warmUp(createHttpServer(app)),
  };
}
