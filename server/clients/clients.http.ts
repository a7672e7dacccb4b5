import type { Handlers } from '../http/handler-types.js';
import * as clients from './clients.service.js';

export const clientHandlers = {
  createClient: async ({ transaction, auth, body, now }) => {
    const { client, insert } = await clients.createClient(transaction, auth, body, now);
    return { status: 201, body: { data: client }, headers: { Location: `/clients/${client.id}` }, insert };
  },
} satisfies Partial<Handlers>;
