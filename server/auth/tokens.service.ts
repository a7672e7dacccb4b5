import type { Kysely } from 'kysely';
import type { Database, Env, PlanName } from '../db/schema.js';
import { upsertOrganisation } from '../orgs/orgs.queries.js';
import { generateToken, hashSecret, SCOPES, type Scope } from './token-format.js';
import { insertToken } from './tokens.queries.js';

export interface MintedToken {
  /** The whole token: shown once, never stored. */
  token: string;
  tokenId: string;
  orgId: string;
  env: Env;
  scopes: Scope[];
  plan: PlanName;
}

export interface MintForOrganisation {
  orgName: string;
  plan?: PlanName | undefined;
  env?: Env | undefined;
  scopes?: Scope[] | undefined;
  tokenName?: string | undefined;
}

/** "Settings → API": creates the organisation if needed and mints a token for it, in one transaction. */
export async function mintTokenForOrganisation(db: Kysely<Database>, request: MintForOrganisation): Promise<MintedToken> {
  const env = request.env ?? 'test';
  const scopes = request.scopes ?? [...SCOPES];
  return db.transaction().execute(async (trx) => {
    const org = await upsertOrganisation(trx, request.orgName, request.plan);
    const generated = generateToken(env);
    const { id } = await insertToken(trx, {
      orgId: org.id,
      env,
      name: request.tokenName ?? 'CLI',
      prefix: generated.prefix,
      secretHash: hashSecret(generated.secret),
      scopes,
    });
    return { token: generated.token, tokenId: id, orgId: org.id, env, scopes, plan: org.plan };
  });
}
