import type { Handlers } from '../http/handler-types.js';
import * as tokens from './tokens.service.js';

export const tokenHandlers = {
  listTokens: async ({ db, auth }) => ({ status: 200, body: { data: await tokens.listTokens(db, auth) } }),
  createToken: async ({ transaction, auth, body, now }) => {
    const minted = await tokens.createToken(await transaction(), auth, body, now);
    // The secret is shown once: a replay of this request answers the token without it.
    return { status: 201, body: minted, storedBody: { data: minted.data } };
  },
  revokeToken: async ({ transaction, auth, params, forgetToken }) => {
    const revoked = await tokens.revokeToken(await transaction(), auth, params.id);
    forgetToken(revoked.prefix);
    return { status: 200, body: { data: revoked } };
  },
} satisfies Partial<Handlers>;
