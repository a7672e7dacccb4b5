/** The tokens' operations ("Settings → API"): parameters to the service, its result to a status. */
import type { Handlers } from '../operations/handler-types.js';
import * as tokens from './tokens.service.js';

export interface TokensDeps {
  /** Drops what this process has cached of a token (server/auth/token-lookup.ts), so a revoked one is refused at once. */
  forgetToken: (prefix: string) => void;
}

export function tokenHandlers(deps: TokensDeps) {
  return {
    listTokens: async ({ db, auth, query }) => ({ status: 200, body: await tokens.listTokens(db, auth, query) }),
    createToken: ({ db, key, auth, body, now, respond }) =>
      // The secret is shown once: a replay of this request answers the token without it.
      tokens.createToken(db, auth, body, now, key, (minted) => respond({ status: 201, body: minted, storedBody: { data: minted.data } })),
    revokeToken: ({ db, key, auth, params, respond }) =>
      tokens.revokeToken(db, auth, params.id, key, deps.forgetToken, (revoked) => respond({ status: 200, body: { data: revoked } })),
  } satisfies Partial<Handlers>;
}
