import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('organisations')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('name', 'text', (c) => c.notNull().unique())
    .addColumn('plan', 'text', (c) => c.notNull().defaultTo('free').check(sql`plan in ('free', 'pro', 'studio')`))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  await db.schema
    .createTable('api_tokens')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('org_id', 'uuid', (c) => c.notNull().references('organisations.id').onDelete('cascade'))
    .addColumn('env', 'text', (c) => c.notNull().check(sql`env in ('live', 'test')`))
    .addColumn('name', 'text', (c) => c.notNull())
    // The 12 characters that identify a token, in clear; the secret is kept only as a SHA-256 hash.
    .addColumn('prefix', 'text', (c) => c.notNull().unique())
    .addColumn('secret_hash', 'bytea', (c) => c.notNull())
    .addColumn('scopes', sql`text[]`, (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('last_used_at', 'timestamptz')
    .addColumn('expires_at', 'timestamptz')
    .addColumn('revoked_at', 'timestamptz')
    .execute();
  await db.schema.createIndex('api_tokens_org_idx').on('api_tokens').columns(['org_id', 'env', 'created_at']).execute();

  await db.schema
    .createTable('clients')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('org_id', 'uuid', (c) => c.notNull().references('organisations.id').onDelete('cascade'))
    .addColumn('env', 'text', (c) => c.notNull().check(sql`env in ('live', 'test')`))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('contact_name', 'text')
    .addColumn('email', 'text')
    .addColumn('phone', 'text')
    .addColumn('website', 'text')
    .addColumn('currency', sql`char(3)`)
    .addColumn('notes', 'text')
    .addColumn('billing_address', 'text')
    .addColumn('billing_line1', 'text')
    .addColumn('billing_line2', 'text')
    .addColumn('billing_city', 'text')
    .addColumn('billing_region', 'text')
    .addColumn('billing_postal_code', 'text')
    .addColumn('billing_country', sql`char(2)`)
    .addColumn('tax_number', 'text')
    // Below 10^12 with 4 decimal places; the API refuses anything the column would round.
    .addColumn('default_rate', sql`numeric(16, 4)`, (c) => c.check(sql`default_rate >= 0`))
    .addColumn('default_payment_terms', 'text')
    .addColumn('default_tax_rate', sql`numeric(7, 4)`, (c) => c.check(sql`default_tax_rate between 0 and 100`))
    .addColumn('require_po_number', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('billing_email', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('deleted_at', 'timestamptz')
    .execute();
  // Newest-first listing and its keyset cursor, per organisation and environment.
  await sql`create index clients_list_idx on clients (org_id, env, created_at desc, id desc)`.execute(db);
  // Counting active clients against the plan's limit.
  await sql`create index clients_active_idx on clients (org_id, env) where deleted_at is null`.execute(db);
  // Sync: "what changed since".
  await sql`create index clients_updated_idx on clients (org_id, env, updated_at)`.execute(db);

  await db.schema
    .createTable('idempotency_keys')
    .addColumn('org_id', 'uuid', (c) => c.notNull().references('organisations.id').onDelete('cascade'))
    .addColumn('env', 'text', (c) => c.notNull())
    .addColumn('key', 'text', (c) => c.notNull())
    // SHA-256 of method, path and the parsed body.
    .addColumn('fingerprint', 'text', (c) => c.notNull())
    .addColumn('response_status', 'integer')
    .addColumn('response_body', 'jsonb')
    .addColumn('response_headers', 'jsonb')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addPrimaryKeyConstraint('idempotency_keys_pk', ['org_id', 'env', 'key'])
    .execute();
  await db.schema.createIndex('idempotency_keys_expires_idx').on('idempotency_keys').column('expires_at').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('idempotency_keys').execute();
  await db.schema.dropTable('clients').execute();
  await db.schema.dropTable('api_tokens').execute();
  await db.schema.dropTable('organisations').execute();
}
