import type { Handlers } from './http/handler-types.js';

export const systemHandlers = {
  getHealth: async () => ({ status: 200, body: { status: 'ok' } }),
} satisfies Partial<Handlers>;
