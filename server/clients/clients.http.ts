import type { Handlers } from '../http/handler-types.js';
import * as clients from './clients.service.js';

/** Every answer that is one client carries its ETag. */
const answer = ({ client, etag }: clients.ClientState) => ({ status: 200 as const, body: { data: client }, headers: { ETag: etag } });

export const clientHandlers = {
  createClient: async ({ transaction, auth, body, now }) => {
    const { client, etag, insert } = await clients.createClient(transaction, auth, body, now);
    return { status: 201, body: { data: client }, headers: { Location: `/clients/${client.id}`, ETag: etag }, insert };
  },
  listClients: async ({ db, auth, query }) => ({ status: 200, body: await clients.listClients(db, auth, query) }),
  getClient: async ({ db, auth, params }) => answer(await clients.getClient(db, auth, params.id)),
  updateClient: async ({ transaction, auth, params, body, req }) =>
    answer(await clients.updateClient(await transaction(), auth, params.id, body, req.get('If-Match'))),
  deleteClient: async ({ transaction, auth, params, req }) =>
    answer(await clients.deleteClient(await transaction(), auth, params.id, req.get('If-Match'))),
  restoreClient: async ({ transaction, auth, params, req }) =>
    answer(await clients.restoreClient(await transaction(), auth, params.id, req.get('If-Match'))),
} satisfies Partial<Handlers>;
