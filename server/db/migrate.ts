import { Migrator, sql, type Kysely, type Migration, type MigrationResultSet } from 'kysely';
import { LIFT_STATEMENT_LIMIT } from './connection.js';
import * as initial from './migrations/2026_11_27_0001_initial.js';
import * as idempotencyExactResponse from './migrations/2026_11_27_0002_idempotency_exact_response.js';
import * as rateLimits from './migrations/2026_11_28_0001_rate_limits.js';
import * as clientsListAndSearch from './migrations/2026_11_28_0005_clients_list_and_search.js';
import * as clientsSearchSteadyInserts from './migrations/2026_11_29_0001_clients_search_steady_inserts.js';
import * as eventsAndWebhooks from './migrations/2026_12_01_0001_events_and_webhooks.js';
import * as webhookFairDelivery from './migrations/2026_12_02_0001_webhook_fair_delivery.js';
import * as eventTraceContext from './migrations/2026_12_02_0102_event_trace_context.js';
import * as contacts from './migrations/2026_12_03_0001_contacts.js';
import * as clientsMetadataExternalId from './migrations/2026_12_03_0002_clients_metadata_external_id.js';
import * as clientSearch from './migrations/2026_12_04_0001_client_search.js';
import * as foreignKeysByPrimaryKey from './migrations/2026_12_05_0001_foreign_keys_by_primary_key.js';
import * as clientSearchBulkTrigrams from './migrations/2026_12_05_0002_client_search_bulk_trigrams.js';
import * as clientSearchOneTrigramIndex from './migrations/2026_12_06_0001_client_search_one_trigram_index.js';
import * as clientsUpdatedIndexForItsFilter from './migrations/2026_12_06_0002_clients_updated_index_for_its_filter.js';
import * as webhookEndpointsLearntLimit from './migrations/2026_12_07_0001_webhook_endpoints_learnt_limit.js';
import * as webhookDeliveriesLeaseAnswered from './migrations/2026_12_08_0001_webhook_deliveries_lease_answered.js';
import * as eventsObjectId from './migrations/2026_12_09_0001_events_object_id.js';
import * as tenantWritesWithoutOrganisationLock from './migrations/2026_12_10_0001_tenant_writes_without_organisation_lock.js';

/** Every migration, by name; names sort in the order they run. */
const migrations: Record<string, Migration> = {
  '2026_11_27_0001_initial': initial,
  '2026_11_27_0002_idempotency_exact_response': idempotencyExactResponse,
  '2026_11_28_0001_rate_limits': rateLimits,
  '2026_11_28_0005_clients_list_and_search': clientsListAndSearch,
  '2026_11_29_0001_clients_search_steady_inserts': clientsSearchSteadyInserts,
  '2026_12_01_0001_events_and_webhooks': eventsAndWebhooks,
  '2026_12_02_0001_webhook_fair_delivery': webhookFairDelivery,
  '2026_12_02_0102_event_trace_context': eventTraceContext,
  '2026_12_03_0001_contacts': contacts,
  '2026_12_03_0002_clients_metadata_external_id': clientsMetadataExternalId,
  '2026_12_04_0001_client_search': clientSearch,
  '2026_12_05_0001_foreign_keys_by_primary_key': foreignKeysByPrimaryKey,
  '2026_12_05_0002_client_search_bulk_trigrams': clientSearchBulkTrigrams,
  '2026_12_06_0001_client_search_one_trigram_index': clientSearchOneTrigramIndex,
  '2026_12_06_0002_clients_updated_index_for_its_filter': clientsUpdatedIndexForItsFilter,
  '2026_12_07_0001_webhook_endpoints_learnt_limit': webhookEndpointsLearntLimit,
  '2026_12_08_0001_webhook_deliveries_lease_answered': webhookDeliveriesLeaseAnswered,
  '2026_12_09_0001_events_object_id': eventsObjectId,
  '2026_12_10_0001_tenant_writes_without_organisation_lock': tenantWritesWithoutOrganisationLock,
};

/**
 * A migration that runs without the service's statement time limit (server/db/connection.ts): an
 * index built on a large table may take minutes, and cutting it would fail the deploy. `SET LOCAL`
 * lasts until the migrator's transaction ends (one transaction for every pending migration, on
 * PostgreSQL), so the limit holds again on the connection afterwards, through a transaction-mode
 * pooler too, and it also lifts a limit set on the database role. The server's own deadline on
 * answers is lifted with it, until the connection is released (server/db/connection.ts).
 */
function withoutStatementTimeout(migration: Migration): Migration {
  // biome-ignore lint/suspicious/noExplicitAny: any database's schema
  const unlimited = (step: (db: Kysely<any>) => Promise<void>) => async (db: Kysely<any>) => {
    await sql.raw(LIFT_STATEMENT_LIMIT).execute(db);
    await step(db);
  };
  return { up: unlimited(migration.up), ...(migration.down && { down: unlimited(migration.down) }) };
}

// biome-ignore lint/suspicious/noExplicitAny: any database's schema
function migrateToLatest(db: Kysely<any>, list: Record<string, Migration>): Promise<MigrationResultSet> {
  const unlimited = Object.fromEntries(Object.entries(list).map(([name, migration]) => [name, withoutStatementTimeout(migration)]));
  const migrator = new Migrator({ db, provider: { getMigrations: async () => unlimited } });
  return migrator.migrateToLatest();
}

/**
 * Whether the database has run exactly these migrations, by one cheap query. The migrator's own
 * checks (introspecting every table, a lock, a transaction) cost about half a second of every
 * start-up on this machine; they run only when this says no.
 */
// biome-ignore lint/suspicious/noExplicitAny: any database's schema
async function upToDate(db: Kysely<any>, list: Record<string, Migration>): Promise<boolean> {
  try {
    const { rows } = await sql<{ name: string }>`select name from kysely_migration order by name`.execute(db);
    const expected = Object.keys(list).sort();
    return rows.length === expected.length && rows.every((row, i) => row.name === expected[i]);
  } catch {
    // No migration table yet (a new database): the migrator creates it.
    return false;
  }
}

/**
 * Runs the migrations (`list`: every migration of this version, unless a test passes its own) and
 * throws when one fails, naming it.
 */
// biome-ignore lint/suspicious/noExplicitAny: any database's schema
export async function migrateOrThrow(db: Kysely<any>, list: Record<string, Migration> = migrations): Promise<string[]> {
  if (await upToDate(db, list)) return [];
  const { error, results } = await migrateToLatest(db, list);
  const failed = results?.find((r) => r.status === 'Error');
  if (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`migration ${failed?.migrationName ?? ''} failed: ${reason}`.replace('  ', ' '));
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/**
 * What readiness (server/health/readiness.ts) asks of the database, in one round trip:
 * - the migrations this version needs that the database has not run. Migrations a newer version
 *   ran are no reason to stop serving: during a rolling deploy they are applied before the old
 *   instances are gone, and a migration keeps what the version before it needs;
 * - whether it is read only: a standby, a node not yet promoted, a demoted primary, a database set
 *   `default_transaction_read_only` (`transaction_read_only` is on in each), where every write
 *   would be answered 503.
 * Throws when the database cannot be asked (or has no migration table yet).
 */
// biome-ignore lint/suspicious/noExplicitAny: any database's schema
export async function databaseReadiness(db: Kysely<any>): Promise<{ pendingMigrations: string[]; readOnly: boolean }> {
  const { rows } = await sql<{ applied: string[]; read_only: string }>`
    select array(select name from kysely_migration) as applied, current_setting('transaction_read_only') as read_only`.execute(db);
  const applied = new Set(rows[0]!.applied);
  return { pendingMigrations: Object.keys(migrations).filter((name) => !applied.has(name)), readOnly: rows[0]!.read_only === 'on' };
}
