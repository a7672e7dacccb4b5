/** The tokens' operations ("Settings → API"). */
import type { Handlers } from '../http/handler-types.js';
import { keyedTransaction } from '../idempotency/idempotency.js';
import * as tokens from './tokens.service.js';

export const tokenHandlers = {
  listTokens: async ({ db, auth, query }) => ({ status: 200, body: await tokens.listTokens(db, auth, query) }),
  createToken: async ({ db, key, auth, body, now, respond }) =>
    keyedTransaction(db, key, async (trx) => {
      const minted = await tokens.createToken(trx, auth, body, now);
      // The secret is shown once: a replay of this request answers the token without it.
      return respond({ status: 201, body: minted, storedBody: { data: minted.data } });
    }),
  revokeToken: async ({ db, key, auth, params, forgetToken, respond }) => {
    const response = await keyedTransaction(db, key, async (trx) => {
      const revoked = await tokens.revokeToken(trx, auth, params.id);
      forgetToken(revoked.prefix);
      return respond({ status: 200, body: { data: revoked } });
    });
    return response;
  },
} satisfies Partial<Handlers>;
