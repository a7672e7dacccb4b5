import type { Handlers } from '../http/handler-types.js';
import * as tokens from './tokens.service.js';

export const tokenHandlers = {
  listTokens: async ({ db, auth }) => ({ status: 200, body: { data: await tokens.listTokens(db, auth) } }),
  createToken: async ({ db, auth, body }) => ({ status: 201, body: await tokens.createToken(db, auth, body) }),
  revokeToken: async ({ db, auth, params }) => ({ status: 200, body: { data: await tokens.revokeToken(db, auth, params.id) } }),
} satisfies Partial<Handlers>;
