/** The one place where a contacts row (snake_case) becomes the API's Contact (camelCase) and back. */
import type { components, operations } from '../../generated/api.js';
import type { ContactRow, ContactsTable } from '../db/schema.js';
import type { ContactValues } from './contacts.queries.js';

export type Contact = components['schemas']['Contact'];
export type ContactInput = components['schemas']['ContactCreate'];
export type ContactPatch = components['schemas']['ContactUpdate'];
export type ContactList = components['schemas']['ContactList'];
export type ContactListQuery = NonNullable<operations['listContacts']['parameters']['query']>;

/** Wire field → column, for every field a caller may write but `metadata`, which merges. */
const writableColumns = {
  name: 'name',
  email: 'email',
  phone: 'phone',
  role: 'role',
  isPrimary: 'is_primary',
  receivesInvoices: 'receives_invoices',
} as const satisfies Record<Exclude<keyof ContactInput, 'metadata'>, keyof ContactsTable>;

const FLAGS = new Set<keyof ContactInput>(['isPrimary', 'receivesInvoices']);

/**
 * The coercions every write shares, as for clients: strings trimmed, blank strings null, a flag's
 * null or "" false. Only the fields present in `input` are returned, so a PATCH touches nothing
 * else; `metadata` is left to metadataOf.
 */
export function toContactValues(input: ContactPatch): ContactValues {
  const values: Record<string, unknown> = {};
  for (const [field, raw] of Object.entries(input) as [keyof ContactInput, unknown][]) {
    const column = writableColumns[field as Exclude<keyof ContactInput, 'metadata'>];
    if (column === undefined) continue;
    let value = typeof raw === 'string' ? raw.trim() : raw;
    if (value === '') value = null;
    if (FLAGS.has(field)) value = value === true;
    values[column] = value;
  }
  return values as ContactValues;
}

const iso = (value: Date | string): string => (value instanceof Date ? value : new Date(value)).toISOString();

export function toContact(row: Pick<ContactRow, Exclude<keyof ContactRow, 'org_id' | 'env'>>): Contact {
  return {
    id: row.id,
    clientId: row.client_id,
    name: row.name,
    email: row.email,
    phone: row.phone,
    role: row.role,
    isPrimary: row.is_primary,
    receivesInvoices: row.receives_invoices,
    metadata: row.metadata,
    createdAt: iso(row.created_at),
    updatedAt: iso(row.updated_at),
  };
}
