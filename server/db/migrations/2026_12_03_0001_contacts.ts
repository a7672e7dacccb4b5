import { sql, type Kysely } from 'kysely';

/**
 * Contacts: the people at a client (server/contacts/). Each row carries its client's organisation
 * and environment, so every query is scoped like the clients' own. A client's contacts are listed
 * newest first through contacts_list_idx; at most one of them is primary, which
 * contacts_one_primary_idx makes true whatever writes race (the service also demotes the primary
 * contact in the same transaction, under the client's row lock, so the index is never what answers).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table if not exists contacts (
      id uuid primary key,
      org_id uuid not null references organisations (id) on delete cascade,
      env text not null check (env in ('live', 'test')),
      client_id uuid not null references clients (id) on delete cascade,
      name text not null,
      email text,
      phone text,
      role text,
      is_primary boolean not null default false,
      receives_invoices boolean not null default false,
      metadata jsonb not null default '{}',
      created_at timestamptz not null,
      updated_at timestamptz not null
    )`.execute(db);
  await sql`create index if not exists contacts_list_idx on contacts (client_id, created_at desc, id desc)`.execute(db);
  await sql`create unique index if not exists contacts_one_primary_idx on contacts (org_id, client_id) where is_primary`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table contacts`.execute(db);
}
