/**
 * createApp(deps) wires the whole HTTP stack once. Order of checks, per product.md:
 * request id → operation → auth (401/403) → body → validation against the spec (400/415) → handler.
 */
import { randomUUID } from 'node:crypto';
import express, { type Express, type RequestHandler } from 'express';
import * as OpenApiValidator from 'express-openapi-validator';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { pinoHttp } from 'pino-http';
import { operationList } from '../generated/operations.js';
import { authenticate, requireScopes } from './auth/auth.js';
import type { Database } from './db/schema.js';
import { jsonBody } from './http/body-parser.js';
import { errorHandler } from './http/error-handler.js';
import type { Handler, Handlers } from './http/handler-types.js';
import { indexSpec, loadSpec, type SpecIndex } from './http/spec.js';
import { handlers as defaultHandlers } from './handlers.js';

export interface AppDeps {
  db: Kysely<Database>;
  logger: Logger;
  /** Validate every response against the spec: on in tests, off in production. */
  validateResponses?: boolean;
  /** Replace handlers (tests inject faults this way). */
  handlers?: Partial<Handlers>;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,200}$/;

export interface App {
  app: Express;
  spec: SpecIndex;
  /** Compiles the validator's schemas now rather than on the first request. */
  warmUp(): Promise<void>;
}

export function createApp(deps: AppDeps): App {
  const spec = indexSpec(loadSpec());
  const handlers = { ...defaultHandlers, ...deps.handlers } as Handlers;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');

  app.use(
    pinoHttp({
      logger: deps.logger,
      genReqId: (req, res) => {
        const incoming = req.headers['x-request-id'];
        const id = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
        res.setHeader('X-Request-Id', id);
        return id;
      },
      // Never log a token, nor the body of a request.
      serializers: {
        req: (req: { id: string; method: string; url: string }) => ({ id: req.id, method: req.method, url: req.url }),
      },
      customLogLevel: (_req, res, err) => (err || res.statusCode >= 500 ? 'error' : 'info'),
    }),
  );

  const locate: RequestHandler = (req, _res, next) => {
    req.operation = spec.match(req.method, req.path);
    next();
  };
  const authorize: RequestHandler = async (req, _res, next) => {
    const op = req.operation;
    if (op?.authenticated) {
      req.auth = await authenticate(deps.db, req.headers.authorization);
      requireScopes(req.auth, op.scopes);
    }
    next();
  };
  const bodyParsers = new Map(
    [...spec.operations.values()].map((info) => [info.entry.operationId, jsonBody(info.decimalFields, info.entry.hasBody)]),
  );
  const parseUnmatchedBody = jsonBody(new Set(), false);
  const parseBody: RequestHandler = (req, res, next) =>
    (req.operation ? bodyParsers.get(req.operation.operationId)! : parseUnmatchedBody)(req, res, next);
  app.use(locate, authorize, parseBody);

  app.use(
    OpenApiValidator.middleware({
      apiSpec: spec.doc as never,
      validateRequests: { allErrors: true, coerceTypes: false },
      validateResponses: deps.validateResponses ? { allErrors: true } : false,
      validateSecurity: false,
      validateFormats: true,
      ignoreUndocumented: false,
      $refParser: { mode: 'bundle' },
    }),
  );

  for (const op of operationList) {
    // One operation at a time: the map is typed per operationId, the loop sees their union.
    const handler = handlers[op.operationId] as unknown as Handler<'createClient'>;
    // One transaction per write: a handler's checks and writes commit together or not at all.
    const inTransaction = op.method !== 'get';
    app[op.method](op.expressPath, async (req, res) => {
      const run = (db: Kysely<Database>) =>
        handler({
          body: req.body,
          params: req.params as never,
          query: req.query as never,
          auth: req.auth as never,
          db,
          log: req.log,
          req,
        });
      const result = inTransaction ? await deps.db.transaction().execute(run) : await run(deps.db);
      for (const [name, value] of Object.entries(result.headers ?? {})) res.setHeader(name, value);
      if ('text' in result) res.status(result.status).type(result.contentType).send(result.text);
      else res.status(result.status).json(result.body);
    });
  }

  app.use(errorHandler(spec));

  return {
    app,
    spec,
    warmUp: async () => {
      // The validator compiles lazily on its first request: send it one that fails auth-free.
      await new Promise<void>((resolve) => {
        const server = app.listen(0, '127.0.0.1', async () => {
          const { port } = server.address() as { port: number };
          await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined);
          server.close(() => resolve());
        });
      });
    },
  };
}
