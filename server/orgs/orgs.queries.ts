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
  const row = await db
    .selectFrom('organisations')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

export async function findOrganisationByName(db: Kysely<Database>, name: string): Promise<OrganisationRow | undefined> {
  return db.selectFrom('organisations').selectAll().where('name', '=', name).executeTakeFirst();
}

/** Puts the organisation on `plan`; answers its id and the plan it was on, or undefined if there is none of that name. */
export async function setOrganisationPlan(
  db: Kysely<Database>,
  name: string,
  plan: PlanName,
): Promise<{ id: string; previousPlan: PlanName } | undefined> {
  const before = db.selectFrom('organisations').select(['id', 'plan as previousPlan']).where('name', '=', name).forUpdate().as('before');
  return db
    .updateTable('organisations')
    .from(before)
    .set({ plan })
    .whereRef('organisations.id', '=', 'before.id')
    .returning(['before.id', 'before.previousPlan'])
    .executeTakeFirst();
}
