import { sql, type Kysely } from 'kysely';

/**
 * A replay must be the first response byte for byte. jsonb reorders an object's keys; json keeps
 * the text as written.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table idempotency_keys
    alter column response_body type json using response_body::json,
    alter column response_headers type json using response_headers::json`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table idempotency_keys
    alter column response_body type jsonb using response_body::jsonb,
    alter column response_headers type jsonb using response_headers::jsonb`.execute(db);
}
