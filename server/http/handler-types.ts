/**
 * Handler types derived from the generated spec types: a handler's body, parameters and answers
 * come from `operations['<operationId>']`, never from hand-written DTOs. `Handlers` has one key per
 * operation of the spec, so an operation without a handler fails the typecheck.
 */
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Request } from 'express';
import type { operations } from '../../generated/api.js';
import type { OperationEntry, OperationId } from '../../generated/operations.js';
import type { AuthContext } from '../auth/auth.js';
import type { ReadConsistency, Reads } from '../db/reads.js';
import type { Database } from '../db/schema.js';
import type { KeyedRequest, WriteResponse } from '../idempotency/idempotency.js';
import type { StaticRepresentation } from '../shared/static-representation.js';
import type { WebhookSettings } from '../webhooks/settings.js';

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
export type Serialised<K extends OperationId> = WriteResponse & { readonly operation?: K };

export type HandlerResult<K extends OperationId> = IsWrite<K> extends true ? Serialised<K> : Answer<K>;

export interface HandlerContext<K extends OperationId> {
  body: RequestBody<K>;
  params: PathParams<K>;
  query: QueryParams<K>;
  /** The token's organisation and environment; absent only on operations that need no token. */
  auth: IsAuthenticated<K> extends true ? AuthContext : undefined;
  db: Kysely<Database>;
  /**
   * The databases a read may use: a service passes `readConsistency` on for the reads that may be
   * stale (lists, searches, the feed), and `reads` runs them on a replica when it can.
   */
  reads: Reads;
  /** The `Read-Consistency` the caller accepts: `strong` unless it sent `eventual`. */
  readConsistency: ReadConsistency;
  /**
   * Writes: the request's Idempotency-Key, when it has one (plain values). A write passes it to
   * server/idempotency/idempotency.ts (keyedTransaction) or to its resource's keyed statement.
   */
  key: IsWrite<K> extends true ? KeyedRequest | undefined : undefined;
  /** Writes: the answer serialised once. */
  respond: (answer: Answer<K>) => Serialised<K>;
  /** The request's time: what timestamps it writes are. */
  now: Date;
  /** Drops what this process has cached of a token (after revoking it, so that it is refused at once). */
  forgetToken: (prefix: string) => void;
  /** Secrets' encryption and the address policy of webhook endpoints. */
  webhooks: WebhookSettings;
  log: Logger;
  req: Request;
}

export type Handler<K extends OperationId> = (ctx: HandlerContext<K>) => Promise<HandlerResult<K>>;

export type Handlers = { [K in OperationId]: Handler<K> };

/** Any handler, as the router calls it (the router is not typed per operation; the map is). */
export type AnyHandler = (ctx: HandlerContext<OperationId>) => Promise<{
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
  representation?: StaticRepresentation;
}>;
