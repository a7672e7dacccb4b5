import type { Handlers } from '../http/handler-types.js';
import * as clients from './clients.service.js';

export const clientHandlers = {
  createClient: async ({ db, auth, body }) => {
    const client = await clients.createClient(db, auth, body);
    return { status: 201, body: { data: client }, headers: { Location: `/clients/${client.id}` } };
  },
} satisfies Partial<Handlers>;
