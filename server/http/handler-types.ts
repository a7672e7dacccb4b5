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
import type { Database } from '../db/schema.js';

type Op<K extends OperationId> = operations[K];
type Json<T> = T extends { content: { 'application/json': infer B } } ? B : undefined;

export type RequestBody<K extends OperationId> = Op<K> extends { requestBody: infer RB } ? Json<RB> : undefined;
export type PathParams<K extends OperationId> = Op<K>['parameters'] extends { path: infer P } ? P : Record<string, never>;
export type QueryParams<K extends OperationId> = Op<K>['parameters'] extends { query?: infer Q } ? NonNullable<Q> : Record<string, never>;

type SuccessStatus = 200 | 201 | 202 | 204;
type Responses<K extends OperationId> = Op<K>['responses'];

type MediaTypes<T> = T extends { content: infer C } ? Extract<keyof C, string> : never;

/**
 * What a handler answers: one of the operation's documented 2xx statuses, with its JSON body, or
 * with a text already serialised once (a page, a document) in one of that status's media types.
 */
export type HandlerResult<K extends OperationId> = {
  [S in Extract<keyof Responses<K>, SuccessStatus>]:
    | { status: S; body: Json<Responses<K>[S]>; headers?: Record<string, string> }
    | { status: S; text: string; contentType: MediaTypes<Responses<K>[S]>; headers?: Record<string, string> };
}[Extract<keyof Responses<K>, SuccessStatus>];

type IsAuthenticated<K extends OperationId> = Extract<OperationEntry, { operationId: K }>['authenticated'];

export interface HandlerContext<K extends OperationId> {
  body: RequestBody<K>;
  params: PathParams<K>;
  query: QueryParams<K>;
  /** The token's organisation and environment; absent only on operations that need no token. */
  auth: IsAuthenticated<K> extends true ? AuthContext : undefined;
  /** The database, or the transaction the request runs in. */
  db: Kysely<Database>;
  log: Logger;
  req: Request;
}

export type Handler<K extends OperationId> = (ctx: HandlerContext<K>) => Promise<HandlerResult<K>>;

export type Handlers = { [K in OperationId]: Handler<K> };
