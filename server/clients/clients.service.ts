import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { toClient, toColumnValues, type Client, type ClientInput } from './clients.mapper.js';
import { insertClient, type Tenant } from './clients.queries.js';

export async function createClient(db: Kysely<Database>, tenant: Tenant, input: ClientInput): Promise<Client> {
  const values = toColumnValues(input);
  const row = await insertClient(db, tenant, { ...values, name: values.name as string, require_po_number: values.require_po_number ?? false });
  return toClient(row);
}
