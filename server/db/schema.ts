/** The database's tables as Kysely sees them (snake_case; the wire is camelCase, see the mappers). */
import type { ColumnType, Generated, Selectable } from 'kysely';
import type { Env, PlanName } from '../shared/spec-values.js';

export type { Env, PlanName } from '../shared/spec-values.js';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
/** numeric: pg returns it as a string, by design; it is written as a decimal string too. */
type NullableNumeric = ColumnType<string | null, string | null | undefined, string | null>;

export interface OrganisationsTable {
  id: Generated<string>;
  name: string;
  plan: PlanName;
  created_at: Timestamp;
}

export interface ApiTokensTable {
  id: Generated<string>;
  org_id: string;
  env: Env;
  name: string;
  prefix: string;
  secret_hash: Buffer;
  scopes: string[];
  created_at: Timestamp;
  last_used_at: NullableTimestamp;
  expires_at: NullableTimestamp;
  revoked_at: NullableTimestamp;
}

/**
 * The columns of `clients` in table order, each with its PostgreSQL type as the migrations declare
 * it (` null` when it may be null): the one place they are written. ClientsTable is derived from it, and the queries take
 * their column list and their casts from it (server/clients/clients.queries.ts). A migration that
 * adds a column adds it here.
 */
export const CLIENT_COLUMNS = {
  id: 'uuid',
  org_id: 'uuid',
  env: 'text',
  name: 'text',
  contact_name: 'text null',
  email: 'text null',
  phone: 'text null',
  website: 'text null',
  currency: 'char(3) null',
  notes: 'text null',
  billing_address: 'text null',
  billing_line1: 'text null',
  billing_line2: 'text null',
  billing_city: 'text null',
  billing_region: 'text null',
  billing_postal_code: 'text null',
  billing_country: 'char(2) null',
  tax_number: 'text null',
  default_rate: 'numeric(16,4) null',
  default_payment_terms: 'text null',
  default_tax_rate: 'numeric(7,4) null',
  require_po_number: 'boolean',
  billing_email: 'text null',
  created_at: 'timestamptz',
  updated_at: 'timestamptz',
  deleted_at: 'timestamptz null',
  /** jsonb: read parsed, written as JSON text. */
  metadata: 'jsonb',
  /** The integrator's own id: unique per organisation and environment among clients not deleted. */
  external_id: 'text null',
} as const satisfies Record<string, ColumnSqlType>;

/** How a column of each PostgreSQL type reads and writes, not null and nullable. */
interface SqlTypes {
  uuid: string;
  text: string;
  char: string;
  boolean: boolean;
  timestamptz: Timestamp;
  /** numeric: pg returns it as a string, by design; it is written as a decimal string too. */
  numeric: ColumnType<string, string, string>;
  /** An object of strings (metadata): read parsed, written as JSON text; its default is `{}`. */
  jsonb: ColumnType<Record<string, string>, string | undefined, string>;
}
interface NullableSqlTypes {
  text: string | null;
  char: string | null;
  timestamptz: NullableTimestamp;
  numeric: NullableNumeric;
}
/** A type's length or precision and scale: `char(3)`, `numeric(16,4)`. */
type Modifier = '' | `(${number})` | `(${number},${number})`;
type ColumnSqlType = `${keyof SqlTypes}${Modifier}` | `${keyof NullableSqlTypes}${Modifier} null`;
type BaseOf<T> = T extends `${infer Base}(${string}` ? Base : T;

/** A table's Kysely type from its columns' SQL types. */
type TableOf<Columns extends Record<string, ColumnSqlType>> = {
  [C in keyof Columns]: Columns[C] extends `${infer T} null`
    ? NullableSqlTypes[BaseOf<T> & keyof NullableSqlTypes]
    : SqlTypes[BaseOf<Columns[C]> & keyof SqlTypes];
};

/** The nullable columns of a table. */
export type NullableColumn<Columns extends Record<string, ColumnSqlType>> = {
  [C in keyof Columns]: Columns[C] extends `${string} null` ? C : never;
}[keyof Columns];

/** What the SQL types alone cannot say: the generated id and default, the environment's values. */
export interface ClientsTable extends Omit<TableOf<typeof CLIENT_COLUMNS>, 'id' | 'env' | 'require_po_number'> {
  id: Generated<string>;
  env: Env;
  require_po_number: Generated<boolean>;
}

/** The columns of `contacts` in table order, as CLIENT_COLUMNS are written. */
export const CONTACT_COLUMNS = {
  id: 'uuid',
  org_id: 'uuid',
  env: 'text',
  client_id: 'uuid',
  name: 'text',
  email: 'text null',
  phone: 'text null',
  role: 'text null',
  is_primary: 'boolean',
  receives_invoices: 'boolean',
  /** jsonb: read parsed, written as JSON text. */
  metadata: 'jsonb',
  created_at: 'timestamptz',
  updated_at: 'timestamptz',
} as const satisfies Record<string, ColumnSqlType>;

export interface ContactsTable extends Omit<TableOf<typeof CONTACT_COLUMNS>, 'env'> {
  env: Env;
}

export interface IdempotencyKeysTable {
  org_id: string;
  env: Env;
  key: string;
  fingerprint: string;
  response_status: number | null;
  /** json (not jsonb, which reorders keys): read as parsed JSON, written as JSON text. */
  response_body: ColumnType<unknown, string | null, string | null>;
  response_headers: ColumnType<Record<string, string> | null, string | null, string | null>;
  created_at: Timestamp;
  expires_at: Timestamp;
}

/** Owned by rate-limiter-flexible's PostgreSQL store; listed for completeness, never queried here. */
export interface RateLimitsTable {
  key: string;
  points: number;
  expire: string | null;
}

/** The outbox and the change feed (server/events/). `txid` and `seq` place an event in the feed. */
export interface EventsTable {
  org_id: string;
  env: Env;
  id: string;
  /** xid8, as text: a 64-bit transaction id. */
  txid: ColumnType<string, never, never>;
  seq: ColumnType<string, never, never>;
  type: string;
  created_at: Timestamp;
  /** json: `{ object, previousAttributes? }`, read parsed, written as JSON text. */
  data: ColumnType<unknown, string, string>;
  /** The W3C `traceparent` of the request that wrote it (tracing on), else null: server/shared/tracing.ts. */
  trace_context: ColumnType<string | null, string | null | undefined, string | null>;
  /** The id of `data.object` (a client, a contact); null for an event about no object, and for those written before the column. */
  object_id: ColumnType<string | null, string | null | undefined, string | null>;
}

export interface WebhookEndpointsTable {
  org_id: string;
  env: Env;
  id: string;
  url: string;
  description: string | null;
  enabled_events: string[];
  disabled: Generated<boolean>;
  disabled_reason: 'manual' | 'failing' | null;
  failing_since: NullableTimestamp;
  /** Encrypted (server/webhook-delivery/secrets.ts): the database alone does not reveal it. */
  secret: string;
  previous_secret: string | null;
  previous_secret_expires_at: NullableTimestamp;
  /** Where this endpoint has got to in the feed: events after it are still to be fanned out. */
  feed_txid: ColumnType<string, string, string>;
  feed_seq: ColumnType<string, string | undefined, string>;
  /** Failed attempts in a row since the last success; CIRCUIT_OPENS_AFTER of them open the circuit. */
  consecutive_failures: Generated<number>;
  /** When the circuit last opened, and until when it is open (past it: one probe). Null: closed. */
  circuit_opened_at: NullableTimestamp;
  circuit_open_until: NullableTimestamp;
  /** Since when the organisation's plan has not included webhooks (the worker keeps it); null: it does. */
  plan_paused_at: NullableTimestamp;
  /** The adaptive limit of attempts in flight, as the worker that last recorded attempts had learnt it; null: none yet. */
  concurrency_limit: ColumnType<number | null, number | null | undefined, number | null>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface WebhookDeliveriesTable {
  org_id: string;
  id: string;
  endpoint_id: string;
  event_id: string;
  status: ColumnType<'pending' | 'succeeded' | 'failed', 'pending' | 'succeeded' | 'failed' | undefined>;
  attempts: Generated<number>;
  next_attempt_at: Timestamp;
  lease_id: string | null;
  leased_until: NullableTimestamp;
  /** The leased attempt is answered and waits only to be recorded: it no longer counts toward its endpoint's room. */
  lease_answered: Generated<boolean>;
  created_at: Timestamp;
}

export interface WebhookAttemptsTable {
  org_id: string;
  id: string;
  delivery_id: string;
  endpoint_id: string;
  event_id: string;
  event_type: string;
  attempt: number;
  attempted_at: Timestamp;
  duration_ms: number;
  status_code: number | null;
  error: string | null;
  succeeded: boolean;
  next_retry_at: NullableTimestamp;
}

export interface Database {
  organisations: OrganisationsTable;
  api_tokens: ApiTokensTable;
  clients: ClientsTable;
  contacts: ContactsTable;
  idempotency_keys: IdempotencyKeysTable;
  rate_limits: RateLimitsTable;
  events: EventsTable;
  webhook_endpoints: WebhookEndpointsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  webhook_attempts: WebhookAttemptsTable;
  client_search: ClientSearchTable;
  client_search_position: ClientSearchPositionTable;
}

export type ClientRow = Selectable<ClientsTable>;
export type ContactRow = Selectable<ContactsTable>;
export type ApiTokenRow = Selectable<ApiTokensTable>;
export type OrganisationRow = Selectable<OrganisationsTable>;
export type EventRow = Selectable<EventsTable>;
export type WebhookEndpointRow = Selectable<WebhookEndpointsTable>;
export type WebhookAttemptRow = Selectable<WebhookAttemptsTable>;

/**
 * What `q` searches of each client, kept off the request path by the search indexer
 * (server/clients/search-indexer.ts) from the events; its trigram index serves `q`, and its b-tree
 * on the e-mail the exact `email` filter.
 */
export interface ClientSearchTable {
  org_id: string;
  env: Env;
  client_id: string;
  created_at: Timestamp;
  deleted: boolean;
  name: string;
  contact_name: string | null;
  email: string | null;
  billing_email: string | null;
}

/** One row: where the search indexer has got to in the feed (every event up to it is in client_search). */
export interface ClientSearchPositionTable {
  singleton: Generated<boolean>;
  /** xid8, as text. */
  txid: string;
  seq: string;
  indexed_at: Timestamp;
}
