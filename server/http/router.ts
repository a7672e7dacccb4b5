/**
 * The router: what every request meets after the shared checks (server/app.ts wires them). It
 * finds the operation's handler, gives it a `Context`, and writes its answer. It knows no resource:
 * the handlers are given to it (server/handlers.ts). A write's Idempotency-Key becomes plain
 * values here (server/idempotency/idempotency.ts, keyedRequest), which the handler passes to its
 * service; what the key did (stored, replayed, refused) is counted here for the metrics.
 */
import type { Request, RequestHandler, Response } from 'express';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { operationList } from '../../generated/operations.js';
import type { ReadConsistency, Reads } from '../db/reads.js';
import type { Database } from '../db/schema.js';
import {
  fingerprintRequest,
  type IdempotencyStore,
  type KeyedOutcome,
  type KeyedRequest,
  keyedOutcomeOfRefusal,
  keyedRequest,
  normalizeKey,
  type SentAnswer,
  type WriteAnswer,
} from '../idempotency/idempotency.js';
import type { AnyHandler, Handlers } from '../operations/handler-types.js';
import type { Caller } from '../shared/tenant.js';
import { sendRepresentation } from './send-representation.js';
import type { OperationInfo, SpecIndex } from './spec.js';

export interface RouterDeps {
  db: Kysely<Database>;
  /** The databases a read may use (a replica for eventual reads, when there is one). */
  reads: Reads;
  handlers: Handlers;
  /** What the spec says of each operation: the headers it fixes on an answer are set here. */
  operations: SpecIndex['operations'];
  /** The time: what a write's timestamps and its key's lifetime are. */
  clock: () => Date;
  store: IdempotencyStore;
  /** Send writes' answers through res.json, where the validator checks responses (tests). */
  validateResponses: boolean;
  /** Told what happened to each request that carried an Idempotency-Key (metrics). */
  countKeyed?: ((outcome: KeyedOutcome) => void) | undefined;
}

/**
 * What a handler is given (HandlerContext in server/operations/handler-types.ts). A class, so that each
 * request costs one small object of a stable shape; the logger is made only if a handler logs.
 */
class Context {
  constructor(
    readonly req: Request,
    readonly db: Kysely<Database>,
    readonly reads: Reads,
    readonly key: KeyedRequest | undefined,
    readonly now: Date,
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
  /** What the caller accepts (`Read-Consistency`, which the validator checked where the operation declares it). */
  get readConsistency(): ReadConsistency {
    return this.req.headers['read-consistency'] === 'eventual' ? 'eventual' : 'strong';
  }
  get auth(): Caller | undefined {
    return this.req.auth;
  }
  get log(): Logger {
    return this.req.log;
  }
  /** A write's answer, serialised once: the same text is sent and stored with its key. */
  respond(answer: { status: number; body: unknown; headers?: Record<string, string>; storedBody?: unknown }): WriteAnswer {
    return {
      status: answer.status,
      text: JSON.stringify(answer.body),
      headers: answer.headers ?? {},
      storedText: answer.storedBody === undefined ? undefined : JSON.stringify(answer.storedBody),
    };
  }
}

export function createRouter(deps: RouterDeps): RequestHandler {
  const { db, reads, clock } = deps;
  const countKeyed = deps.countKeyed ?? (() => {});

  /** Sets the headers the spec fixes on this operation's answer of this status (Cache-Control: no-store...). */
  const setFixedHeaders = (res: Response, info: OperationInfo, status: number) => {
    for (const [name, value] of info.fixedHeaders.get(status) ?? []) res.setHeader(name, value);
  };
  const send = (res: Response, response: SentAnswer, info: OperationInfo) => {
    for (const [name, value] of Object.entries(response.headers)) res.setHeader(name, value);
    setFixedHeaders(res, info, response.status);
    // The validator checks responses through res.json (in tests): it gets the body back as the
    // value it was, which serialises to the same text.
    if (deps.validateResponses) return void res.status(response.status).json(JSON.parse(response.text));
    // The body as it was serialised once, for the answer and the stored copy alike, straight to
    // Node: none of res.send's content negotiation applies to a write's JSON answer.
    res.writeHead(response.status, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(response.text),
    });
    res.end(response.text);
  };

  const routes = new Map<string, RequestHandler>();
  for (const op of operationList) {
    // One operation at a time: the map is typed per operationId, the loop sees their union.
    const handler = deps.handlers[op.operationId] as unknown as AnyHandler;
    const info = deps.operations.get(op.operationId)!;
    if (op.method !== 'get') {
      routes.set(op.operationId, async (req, res) => {
        const now = clock();
        const header = op.idempotencyKey && req.auth ? req.headers['idempotency-key'] : undefined;
        const key =
          typeof header === 'string'
            ? keyedRequest(req.auth!, normalizeKey(header), fingerprintRequest(req.method, req.path, req.body), now, deps.store)
            : undefined;
        let response: SentAnswer;
        try {
          response = (await handler(new Context(req, db, reads, key, now) as never)) as SentAnswer;
        } catch (refusal) {
          const outcome = key && keyedOutcomeOfRefusal(refusal);
          if (outcome) countKeyed(outcome);
          throw refusal;
        }
        if (key) countKeyed(response.headers['Idempotent-Replayed'] === 'true' ? 'replayed' : 'stored');
        send(res, response, info);
      });
      continue;
    }
    routes.set(op.operationId, async (req, res) => {
      const result = await handler(new Context(req, db, reads, undefined, clock()) as never);
      if (result.representation) return sendRepresentation(req, res, result.status, result.representation, result.headers);
      for (const [name, value] of Object.entries(result.headers ?? {})) res.setHeader(name, value);
      setFixedHeaders(res, info, result.status);
      res.status(result.status).json(result.body);
    });
  }
  return (req, res, next) => (req.operation ? routes.get(req.operation.operationId)!(req, res, next) : next());
}
