/**
 * The one table of plans, and the one gate that reads it. Handlers and services ask the gate;
 * no limit is written anywhere else.
 */
import { sql, type Kysely } from 'kysely';
import type { Database, Env, PlanName } from '../db/schema.js';
import { ApiError } from '../shared/errors.js';
import { PLAN_NAMES } from '../shared/spec-values.js';

/** `webhooks`: webhook endpoints and their deliveries (the change feed is on every plan). */
export type Feature = 'clients.requirePoNumber' | 'webhooks';

export interface PlanLimits {
  /** Active (not deleted) clients per organisation and environment; null: unlimited. */
  maxActiveClients: number | null;
  features: ReadonlySet<Feature>;
}

/** Cheapest first, as the spec lists them. */
export const PLAN_ORDER = PLAN_NAMES;

export const PLANS: Readonly<Record<PlanName, PlanLimits>> = {
  free: { maxActiveClients: 3, features: new Set() },
  pro: { maxActiveClients: 100, features: new Set(['webhooks']) },
  studio: { maxActiveClients: null, features: new Set(['clients.requirePoNumber', 'webhooks']) },
};

function cheapestPlan(allows: (limits: PlanLimits) => boolean): PlanName {
  return PLAN_ORDER.find((name) => allows(PLANS[name])) ?? PLAN_ORDER[PLAN_ORDER.length - 1]!;
}

export function assertFeature(plan: PlanName, feature: Feature): void {
  if (PLANS[plan].features.has(feature)) return;
  const requiredPlan = cheapestPlan((limits) => limits.features.has(feature));
  throw new ApiError('plan_required', `This needs the ${requiredPlan} plan (feature ${feature}); the organisation is on ${plan}.`, {
    requiredPlan,
    feature,
  });
}

export interface PlanTenant {
  orgId: string;
  env: Env;
  plan: PlanName;
}

/**
 * Throws 402 plan_limit_reached unless one more active client fits the plan. Must run inside the
 * transaction that then inserts or restores the client: it takes a lock per organisation and
 * environment, so two requests racing for the last slot are serialised and the second sees the
 * first's row.
 */
export async function assertRoomForActiveClient(trx: Kysely<Database>, tenant: PlanTenant): Promise<void> {
  const max = PLANS[tenant.plan].maxActiveClients;
  if (max === null) return;
  await sql`select pg_advisory_xact_lock(hashtextextended(${`clients:${tenant.orgId}:${tenant.env}`}, 0))`.execute(trx);
  const { n } = await trx
    .selectFrom('clients')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('org_id', '=', tenant.orgId)
    .where('env', '=', tenant.env)
    .where('deleted_at', 'is', null)
    .executeTakeFirstOrThrow();
  if (Number(n) < max) return;
  const requiredPlan = cheapestPlan((limits) => limits.maxActiveClients === null || limits.maxActiveClients > max);
  throw new ApiError(
    'plan_limit_reached',
    `The ${tenant.plan} plan allows ${max} active clients; upgrade to ${requiredPlan} for more, or delete one.`,
    { requiredPlan, feature: 'clients.max' },
  );
}
