import type { Kysely } from 'kysely';
import type { Database, OrganisationRow, PlanName } from '../db/schema.js';

/** Finds the organisation by name, creating it on `plan` if there is none; an existing one gets `plan` if given. */
export async function upsertOrganisation(db: Kysely<Database>, name: string, plan: PlanName | undefined): Promise<OrganisationRow> {
  const insert = db.insertInto('organisations').values({ name, plan: plan ?? 'free' });
  const query = plan
    ? insert.onConflict((oc) => oc.column('name').doUpdateSet({ plan }))
    : insert.onConflict((oc) => oc.column('name').doUpdateSet((eb) => ({ plan: eb.ref('organisations.plan') })));
  return query.returningAll().executeTakeFirstOrThrow();
}

export async function countOrganisations(db: Kysely<Database>): Promise<number> {
  const row = await db.selectFrom('organisations').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
  return Number(row.n);
}
