import type { Kysely } from 'kysely';
import type { ClientRow, Database, Env } from '../db/schema.js';
import type { ClientValues } from './clients.mapper.js';

export interface Tenant {
  orgId: string;
  env: Env;
}

export async function insertClient(db: Kysely<Database>, tenant: Tenant, values: ClientValues & { name: string }): Promise<ClientRow> {
  return db
    .insertInto('clients')
    .values({ ...values, org_id: tenant.orgId, env: tenant.env })
    .returningAll()
    .executeTakeFirstOrThrow();
}
