/** The one place where a clients row (snake_case) becomes the API's Client (camelCase) and back. */
import type { components, operations } from '../../generated/api.js';
import type { ClientRow, ClientsTable } from '../db/schema.js';
import type { ClientValues } from './clients.queries.js';
import { formatMoney, formatPercentage } from './decimal.js';

export type Client = components['schemas']['Client'];
export type ClientInput = components['schemas']['ClientCreate'];
export type ClientPatch = components['schemas']['ClientUpdate'];
export type ClientList = components['schemas']['ClientList'];
export type ClientListQuery = NonNullable<operations['listClients']['parameters']['query']>;

/** Wire field → column, for every field a caller may write. */
const writableColumns = {
  name: 'name',
  contactName: 'contact_name',
  email: 'email',
  phone: 'phone',
  website: 'website',
  currency: 'currency',
  notes: 'notes',
  billingAddress: 'billing_address',
  billingLine1: 'billing_line1',
  billingLine2: 'billing_line2',
  billingCity: 'billing_city',
  billingRegion: 'billing_region',
  billingPostalCode: 'billing_postal_code',
  billingCountry: 'billing_country',
  taxNumber: 'tax_number',
  defaultRate: 'default_rate',
  defaultPaymentTerms: 'default_payment_terms',
  defaultTaxRate: 'default_tax_rate',
  requirePoNumber: 'require_po_number',
  billingEmail: 'billing_email',
  externalId: 'external_id',
} as const satisfies Record<Exclude<keyof ClientInput, 'metadata'>, keyof ClientsTable>;

// Every writable column, and only those (`metadata` merges: the service writes it), or this fails to compile.
type WritableColumn = (typeof writableColumns)[keyof typeof writableColumns];
type AssignedColumn = Exclude<keyof ClientValues, 'metadata'>;
const sameColumns: [WritableColumn, AssignedColumn] extends [AssignedColumn, WritableColumn] ? true : never = true;
void sameColumns;

const UPPER_CASED = new Set<keyof ClientInput>(['currency', 'billingCountry']);

/**
 * Applies the coercions every write shares: strings trimmed, blank strings null, currency and
 * country upper case, money kept as the decimal text it was sent as, requirePoNumber null → false.
 * Only the fields present in `input` are returned, so a PATCH touches nothing else.
 */
export function toColumnValues(input: Partial<Record<keyof ClientInput, unknown>>): ClientValues {
  const values: Record<string, unknown> = {};
  for (const [field, raw] of Object.entries(input) as [keyof ClientInput, unknown][]) {
    const column = writableColumns[field as Exclude<keyof ClientInput, 'metadata'>];
    if (column === undefined) continue;
    let value = typeof raw === 'string' ? raw.trim() : raw;
    if (value === '') value = null;
    if (typeof value === 'number') value = String(value);
    if (typeof value === 'string' && UPPER_CASED.has(field)) value = value.toUpperCase();
    if (field === 'requirePoNumber') value = value === true;
    values[column] = value;
  }
  return values as ClientValues;
}

const iso = (value: Date | string): string => (value instanceof Date ? value : new Date(value)).toISOString();

export function toClient(row: ClientRow): Client {
  return {
    id: row.id,
    orgId: row.org_id,
    name: row.name,
    contactName: row.contact_name,
    email: row.email,
    phone: row.phone,
    website: row.website,
    currency: row.currency as Client['currency'],
    notes: row.notes,
    billingAddress: row.billing_address,
    billingLine1: row.billing_line1,
    billingLine2: row.billing_line2,
    billingCity: row.billing_city,
    billingRegion: row.billing_region,
    billingPostalCode: row.billing_postal_code,
    billingCountry: row.billing_country as Client['billingCountry'],
    taxNumber: row.tax_number,
    defaultRate: row.default_rate === null ? null : formatMoney(row.default_rate),
    defaultPaymentTerms: row.default_payment_terms,
    defaultTaxRate: row.default_tax_rate === null ? null : formatPercentage(row.default_tax_rate),
    requirePoNumber: row.require_po_number,
    billingEmail: row.billing_email,
    externalId: row.external_id,
    metadata: row.metadata,
    createdAt: iso(row.created_at),
    updatedAt: iso(row.updated_at),
    deletedAt: row.deleted_at === null ? null : iso(row.deleted_at),
  };
}
