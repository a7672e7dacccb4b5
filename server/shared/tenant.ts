/**
 * Who a request acts for. Every query is scoped to a tenant's organisation and environment; its
 * plan is what the plan gate (server/plans/plans.ts) reads.
 */
import type { Env, PlanName } from './spec-values.js';

export interface Tenant {
  orgId: string;
  env: Env;
  /** The organisation's plan when the request's token was checked. */
  plan: PlanName;
}

/** A request's caller: its tenant, and what its token allows. */
export interface Caller extends Tenant {
  tokenId: string;
  scopes: readonly string[];
  /** When the token stops working; a token it mints cannot outlive it. */
  expiresAt: Date | null;
}
