/** The one module that writes `contacts`. Every statement is scoped to the organisation, the environment and the client. */
import { type Kysely, sql, type Updateable } from 'kysely';
import type { ContactRow, ContactsTable, Database } from '../db/schema.js';
import { afterPosition, type KeysetPosition, positionOf } from '../shared/keyset-cursor.js';
import type { Tenant } from '../shared/tenant.js';

/** A client of a tenant: what every statement on its contacts is scoped to. */
export interface ClientScope extends Pick<Tenant, 'orgId' | 'env'> {
  clientId: string;
}

function contactsOf(db: Kysely<Database>, scope: ClientScope) {
  return db.selectFrom('contacts').where('org_id', '=', scope.orgId).where('env', '=', scope.env).where('client_id', '=', scope.clientId);
}

/** `id` must be a UUID (the column's type). */
export async function findContactById(db: Kysely<Database>, scope: ClientScope, id: string): Promise<ContactRow | undefined> {
  return contactsOf(db, scope).selectAll().where('id', '=', id).executeTakeFirst();
}

/** The client's primary contact, if it has one. */
export async function findPrimaryContact(db: Kysely<Database>, scope: ClientScope): Promise<ContactRow | undefined> {
  return contactsOf(db, scope).selectAll().where('is_primary', '=', true).executeTakeFirst();
}

export async function countContacts(db: Kysely<Database>, scope: ClientScope): Promise<number> {
  const { count } = await contactsOf(db, scope)
    .select((eb) => eb.fn.countAll<string>().as('count'))
    .executeTakeFirstOrThrow();
  return Number(count);
}

/** A new contact row, computed in full by the service (metadata as JSON text). */
export type NewContactRow = Omit<ContactRow, 'metadata'> & { metadata: string };

export async function insertContact(trx: Kysely<Database>, row: NewContactRow): Promise<ContactRow> {
  return trx.insertInto('contacts').values(row).returningAll().executeTakeFirstOrThrow();
}

/** Columns a caller may write (server/contacts/contacts.mapper.ts maps the wire's fields to them). */
export type ContactValues = Updateable<Omit<ContactsTable, 'id' | 'org_id' | 'env' | 'client_id' | 'created_at' | 'updated_at'>>;

/**
 * Writes `values` (a non-empty set of columns). `updated_at` moves only when a value actually
 * differs, to the statement's own start time (as a client's does: server/clients/clients.queries.ts).
 */
export async function updateContactRow(trx: Kysely<Database>, scope: ClientScope, id: string, values: ContactValues): Promise<ContactRow> {
  const columns = Object.keys(values) as (keyof ContactValues)[];
  const changed = sql`(${sql.join(columns.map((c) => sql.ref(c)))}) is distinct from (${sql.join(columns.map((c) => values[c]))})`;
  return trx
    .updateTable('contacts')
    .set(values)
    .set({ updated_at: sql<Date>`case when ${changed} then statement_timestamp() else updated_at end` })
    .where('org_id', '=', scope.orgId)
    .where('env', '=', scope.env)
    .where('client_id', '=', scope.clientId)
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** Deletes the contact; when it was deleted (the statement's time). */
export async function deleteContactRow(trx: Kysely<Database>, scope: ClientScope, id: string): Promise<Date> {
  const { deleted_at } = await trx
    .deleteFrom('contacts')
    .where('org_id', '=', scope.orgId)
    .where('env', '=', scope.env)
    .where('client_id', '=', scope.clientId)
    .where('id', '=', id)
    .returning(sql<Date>`statement_timestamp()`.as('deleted_at'))
    .executeTakeFirstOrThrow();
  return deleted_at;
}

export type ListedContactRow = ContactRow & { position: string };

/** Newest first, by keyset: `(created_at, id)` below the last row of the page before. */
export async function listContactRows(
  db: Kysely<Database>,
  scope: ClientScope,
  page: { limit: number; after: KeysetPosition | undefined },
): Promise<ListedContactRow[]> {
  let query = contactsOf(db, scope);
  if (page.after) query = query.where(afterPosition(page.after, 'created_at', 'id'));
  return query
    .selectAll()
    .select(positionOf('created_at').as('position'))
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(page.limit)
    .execute();
}
