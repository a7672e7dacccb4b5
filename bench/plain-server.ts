/**
 * The "plain" baseline of `npm run bench`: what someone would write by hand for the seed's create,
 * with no search, no idempotency and no event. Bare node:http + a pg pool; the request's JSON is
 * parsed and the seed's whole client (every field a create takes, see spec/schemas/ClientCreate.yaml)
 * is inserted into a table of its own, `plain_clients`, whose only indexes are its primary key and
 * the tenant's list index (org_id, env, created_at desc, id desc). No trigram index, no
 * Idempotency-Key, no events row. Statements are sent the way a hand-written pg service sends them
 * (`pool.query(text, values)`, unnamed), as bench/bare-server.ts does.
 *
 * The table is made here, at start, if it is not there (run.ts may have made and filled it before:
 * `--seed-clients`). DATABASE_URL, PORT; ORG_ID is the organisation its rows belong to.
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { serveBaseline } from './baseline-http.js';

/** The plain table: the client's columns as the real `clients` table has them, its primary key and the list index only. */
export const PLAIN_TABLE = `
  create table if not exists plain_clients (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null,
    env text not null,
    name text not null,
    contact_name text,
    email text,
    phone text,
    website text,
    currency text,
    notes text,
    billing_address text,
    billing_line1 text,
    billing_line2 text,
    billing_city text,
    billing_region text,
    billing_postal_code text,
    billing_country text,
    tax_number text,
    default_rate numeric,
    default_payment_terms text,
    default_tax_rate numeric,
    require_po_number boolean not null default false,
    billing_email text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    deleted_at timestamptz
  );
  create index if not exists plain_clients_list_idx on plain_clients (org_id, env, created_at desc, id desc);
`;

/** The request's fields, in the order of the insert's parameters ($3 on). */
const FIELDS = [
  ['name', 'name'],
  ['contactName', 'contact_name'],
  ['email', 'email'],
  ['phone', 'phone'],
  ['website', 'website'],
  ['currency', 'currency'],
  ['notes', 'notes'],
  ['billingAddress', 'billing_address'],
  ['billingLine1', 'billing_line1'],
  ['billingLine2', 'billing_line2'],
  ['billingCity', 'billing_city'],
  ['billingRegion', 'billing_region'],
  ['billingPostalCode', 'billing_postal_code'],
  ['billingCountry', 'billing_country'],
  ['taxNumber', 'tax_number'],
  ['defaultRate', 'default_rate'],
  ['defaultPaymentTerms', 'default_payment_terms'],
  ['defaultTaxRate', 'default_tax_rate'],
  ['requirePoNumber', 'require_po_number'],
  ['billingEmail', 'billing_email'],
] as const;

const INSERT = `insert into plain_clients (org_id, env, ${FIELDS.map(([, column]) => column).join(', ')})
  values ($1, $2, ${FIELDS.map((_, i) => `$${i + 3}`).join(', ')})
  returning id, org_id, ${FIELDS.map(([, column]) => column).join(', ')}, created_at, updated_at, deleted_at`;

async function main() {
  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: Number(process.env.POOL_SIZE ?? 10) });
  const orgId = process.env.ORG_ID!;
  await pool.query(PLAIN_TABLE);
  serveBaseline(pool, async (req, text) => {
    if (req.method !== 'POST' || req.url !== '/clients') return [404, {}];
    const body = JSON.parse(text.toString('utf8')) as Record<string, unknown>;
    // What a hand-written handler checks at least: the one required field.
    if (typeof body.name !== 'string' || body.name.trim() === '') return [400, { error: { fields: { name: 'is required' } } }];
    const values = FIELDS.map(([field]) => {
      const value = body[field];
      return value === undefined || value === '' ? (field === 'requirePoNumber' ? false : null) : value;
    });
    const { rows } = await pool.query(INSERT, [orgId, 'test', ...values]);
    return [201, { data: rows[0] }];
  });
}

// Imported by run.ts for PLAIN_TABLE only; run as a process by it.
if (resolve(process.argv[1] ?? '') === fileURLToPath(import.meta.url)) await main();
