import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { assertFeature, assertRoomForActiveClient, type PlanTenant } from '../plans/plans.js';
import { toClient, toColumnValues, type Client, type ClientInput } from './clients.mapper.js';
import { insertClient } from './clients.queries.js';

/** Runs inside the request's transaction (see the router), so the plan check and the insert are atomic. */
export async function createClient(trx: Kysely<Database>, tenant: PlanTenant, input: ClientInput): Promise<Client> {
  const values = toColumnValues(input);
  if (values.require_po_number) assertFeature(tenant.plan, 'clients.requirePoNumber');
  await assertRoomForActiveClient(trx, tenant);
  const row = await insertClient(trx, tenant, { ...values, name: values.name as string });
  return toClient(row);
}
