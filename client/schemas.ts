/**
 * The named types of the package: one for every schema of the spec that a user handles (request
 * bodies, resources, pages, the error envelope). Each is derived from the generated types
 * (`generated/api.ts`, made from the spec by `npm run generate`), never retyped, so the spec stays
 * the only place a field is defined; a schema renamed in the spec is one line here.
 *
 * Webhook event payloads will join these once the API sends webhooks.
 */
import type { components, operations } from './generated/api.js';

type Schemas = components['schemas'];
type Json<
  Operation extends keyof operations,
  Status extends keyof operations[Operation]['responses'],
> = operations[Operation]['responses'][Status] extends { content: { 'application/json': infer Body } } ? Body : never;

/** A client as the API returns it: the request's fields plus `id`, `orgId`, `createdAt`, `updatedAt`, `deletedAt`. */
export type ClientResource = Schemas['Client'];
/** The body of `POST /clients`: `name` is required, every other field optional. */
export type ClientCreate = Schemas['ClientCreate'];
/** The body of `PATCH /clients/{id}`: only the fields to change; `null` clears one. */
export type ClientUpdate = Schemas['ClientUpdate'];
/** The answer of create, read, update, delete and restore: `{ data: ClientResource }`. */
export type ClientData = Schemas['ClientData'];
/** A page of `GET /clients`: `{ data, nextCursor }`; `nextCursor` is null on the last page. */
export type ClientList = Schemas['ClientList'];
/** A Personal Access Token as `GET /tokens` lists it (never its secret). */
export type TokenResource = Schemas['Token'];
/** The body of `POST /tokens`. */
export type TokenCreate = Schemas['TokenCreate'];
/** The answer of `POST /tokens`: the token's record and, this once, the whole token. */
export type TokenCreated = Json<'createToken', 201>;
/** The answer of `GET /tokens`: `{ data: TokenResource[] }`. */
export type TokenList = Json<'listTokens', 200>;
/** The envelope of every error: `{ error: { code, message, fields?, requiredPlan?, feature? } }`. */
export type ApiErrorBody = Schemas['ErrorEnvelope'];
/** The stable, machine-readable `error.code` values. */
export type ErrorCode = Schemas['ErrorCode'];
/** An organisation's plan, as `error.requiredPlan` names it. */
export type Plan = Schemas['Plan'];
/** A token's environment: `live` or `test`. */
export type Env = Schemas['Env'];
/** A token's scope, such as `clients:write`. */
export type Scope = Schemas['Scope'];
/** The answer of `GET /healthz`. */
export type Health = Schemas['Health'];
/** The answer of `GET /readyz` while the instance can serve (otherwise a 503 `ApiErrorBody`). */
export type Readiness = Schemas['Readiness'];
/** An ISO 4217 currency code as the API returns it (upper case). */
export type CurrencyCode = Schemas['CurrencyCode'];
/** An ISO 3166-1 alpha-2 country code as the API returns it (upper case). */
export type CountryCode = Schemas['CountryCode'];
