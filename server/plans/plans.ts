/**
 * The one table of plans, and the one gate that reads it. Services ask the gate; no limit is
 * written anywhere else. No SQL here: a service counts what the gate needs with its own queries.
 */
import type { PlanName } from '../db/schema.js';
import type { Tenant } from '../shared/tenant.js';
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

/**
 * Throws 402 plan_limit_reached unless one more active client fits the plan, given how many the
 * tenant has (`active`, counted under a lock its caller's transaction holds to its end, so two
 * requests racing for the last slot are serialised and the second counts the first's row).
 */
export function assertRoomForActiveClient(tenant: Tenant, active: number): void {
  const max = PLANS[tenant.plan].maxActiveClients;
  if (max === null || active < max) return;
  const requiredPlan = cheapestPlan((limits) => limits.maxActiveClients === null || limits.maxActiveClients > max);
  throw new ApiError(
    'plan_limit_reached',
    `The ${tenant.plan} plan allows ${max} active clients; upgrade to ${requiredPlan} for more, or delete one.`,
    { requiredPlan, feature: 'clients.max' },
  );
}
