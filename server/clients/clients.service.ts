import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { ClientRow, Database } from '../db/schema.js';
import type { DeferredInsert } from '../idempotency/idempotency.queries.js';
import { assertFeature, assertRoomForActiveClient, PLANS, type PlanTenant } from '../plans/plans.js';
import { toClient, toColumnValues, type Client, type ClientInput } from './clients.mapper.js';

/**
 * A new client, computed in full here (id and times included) so that the response needs nothing
 * back from the database and the row goes out as one statement. Only a plan with a limit needs
 * the transaction: to lock the organisation's count and check it before the insert.
 */
export async function createClient(
  transaction: () => Promise<Kysely<Database>>,
  tenant: PlanTenant,
  input: ClientInput,
  now: Date,
): Promise<{ client: Client; insert: DeferredInsert }> {
  const values = toColumnValues(input);
  if (values.require_po_number) assertFeature(tenant.plan, 'clients.requirePoNumber');
  if (PLANS[tenant.plan].maxActiveClients !== null) await assertRoomForActiveClient(await transaction(), tenant);
  const row: ClientRow = {
    id: randomUUID(),
    org_id: tenant.orgId,
    env: tenant.env,
    name: values.name as string,
    contact_name: null,
    email: null,
    phone: null,
    website: null,
    currency: null,
    notes: null,
    billing_address: null,
    billing_line1: null,
    billing_line2: null,
    billing_city: null,
    billing_region: null,
    billing_postal_code: null,
    billing_country: null,
    tax_number: null,
    default_rate: null,
    default_payment_terms: null,
    default_tax_rate: null,
    billing_email: null,
    ...values,
    require_po_number: values.require_po_number ?? false,
    created_at: now,
    updated_at: now,
    deleted_at: null,
  } as ClientRow;
  return { client: toClient(row), insert: { table: 'clients', row } };
}
