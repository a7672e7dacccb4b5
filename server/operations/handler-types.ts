/**
 * What a handler is, between the router (server/http/router.ts, which calls handlers) and the
 * resources' handlers (server/<resource>/<resource>.http.ts, which implement them): types derived
 * from the generated spec types, so a handler's body, parameters and answers come from
 * `operations['<operationId>']`, never from hand-written DTOs. `Handlers` has one key per operation
 * of the spec, so an operation without a handler fails the typecheck. Nothing here is a feature's:
 * what a resource needs beyond the request (webhook settings, the token cache) it gets from its
 * own module's dependencies (server/handlers.ts).
 */
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Request } from 'express';
import type { operations } from '../../generated/api.js';
import type { OperationEntry, OperationId } from '../../generated/operations.js';
import type { ReadConsistency, Reads } from '../db/reads.js';
import type { Database } from '../db/schema.js';
import type { KeyedRequest, WriteAnswer } from '../idempotency/idempotency.js';
import type { StaticRepresentation } from '../shared/static-representation.js';
import type { Caller } from '../shared/tenant.js';

type Op<K extends OperationId> = operations[K];
type Json<T> = T extends { content: { 'application/json': infer B } } ? B : undefined;

export type RequestBody<K extends OperationId> = Op<K> extends { requestBody: infer RB } ? Json<RB> : undefined;
export type PathParams<K extends OperationId> = Op<K>['parameters'] extends { path: infer P } ? P : Record<string, never>;
export type QueryParams<K extends OperationId> = Op<K>['parameters'] extends { query?: infer Q } ? NonNullable<Q> : Record<string, never>;

type SuccessStatus = 200 | 201 | 202 | 204;
type Responses<K extends OperationId> = Op<K>['responses'];

type Entry<K extends OperationId> = Extract<OperationEntry, { operationId: K }>;
type IsAuthenticated<K extends OperationId> = Entry<K>['authenticated'];
type IsWrite<K extends OperationId> = Entry<K>['method'] extends 'get' ? false : true;
type MediaTypes<T> = T extends { content: infer C } ? Extract<keyof C, string> : never;

/**
 * What a handler answers: one of the operation's documented 2xx statuses, with its JSON body. A
 * read may answer a body that never changes (a page, a document) as a StaticRepresentation in
 * one of that status's media types, which the router sends compressed when the client accepts
 * it, with an ETag, and 304 to a matching `If-None-Match`. A write serialises its answer once
 * with `ctx.respond` (the same text is sent and stored with its Idempotency-Key), and may keep
 * another body for replays.
 */
export type Answer<K extends OperationId> = {
  [S in Extract<keyof Responses<K>, SuccessStatus>]: IsWrite<K> extends true
    ? {
        status: S;
        body: Json<Responses<K>[S]>;
        headers?: Record<string, string>;
        /** What an Idempotency-Key keeps for replays, when it must not be the body (a secret shown once). */
        storedBody?: Json<Responses<K>[S]>;
      }
    :
        | { status: S; body: Json<Responses<K>[S]>; headers?: Record<string, string> }
        | { status: S; representation: StaticRepresentation<MediaTypes<Responses<K>[S]>>; headers?: Record<string, string> };
}[Extract<keyof Responses<K>, SuccessStatus>];

/** A write's answer, serialised by `ctx.respond` from an `Answer` of its own operation. */
export type SerialisedAnswer<K extends OperationId> = WriteAnswer & { readonly operation?: K };

export type HandlerAnswer<K extends OperationId> = IsWrite<K> extends true ? SerialisedAnswer<K> : Answer<K>;

export interface HandlerContext<K extends OperationId> {
  body: RequestBody<K>;
  params: PathParams<K>;
  query: QueryParams<K>;
  /** The token's organisation and environment; absent only on operations that need no token. */
  auth: IsAuthenticated<K> extends true ? Caller : undefined;
  db: Kysely<Database>;
  /**
   * The databases a read may use: a service passes `readConsistency` on for the reads that may be
   * stale (lists, searches, the feed), and `reads` runs them on a replica when it can.
   */
  reads: Reads;
  /** The `Read-Consistency` the caller accepts: `strong` unless it sent `eventual`. */
  readConsistency: ReadConsistency;
  /**
   * Writes: the request's Idempotency-Key, when it has one (plain values). The handler passes it
   * to its service, whose write runs in server/idempotency/idempotency.ts's `runKeyedWrite`.
   */
  key: IsWrite<K> extends true ? KeyedRequest | undefined : undefined;
  /** Writes: the answer serialised once (the service calls it when its write is done, to store it with the key). */
  respond: (answer: Answer<K>) => SerialisedAnswer<K>;
  /** The request's time: what timestamps it writes are. */
  now: Date;
  log: Logger;
  req: Request;
}

export type Handler<K extends OperationId> = (ctx: HandlerContext<K>) => Promise<HandlerAnswer<K>>;

export type Handlers = { [K in OperationId]: Handler<K> };

/** Any handler, as the router calls it (the router is not typed per operation; the map is). */
export type AnyHandler = (ctx: HandlerContext<OperationId>) => Promise<{
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
  representation?: StaticRepresentation;
}>;
