/** The clients' operations: parameters to the service, its result to a status. */
import type { Handlers } from '../operations/handler-types.js';
import * as clients from './clients.service.js';

/** Every answer that is one client carries its ETag. */
const one = ({ client, etag }: clients.ClientState) => ({ status: 200 as const, body: { data: client }, headers: { ETag: etag } });

export const clientHandlers = {
  createClient: ({ db, key, auth, body, now, respond }) =>
    clients.createClient(db, auth, body, now, key, ({ client, etag }) =>
      respond({ status: 201, body: { data: client }, headers: { Location: `/clients/${client.id}`, ETag: etag } }),
    ),
  listClients: async ({ reads, readConsistency, auth, query }) => {
    const { value, consistency } = await clients.listClients(reads, auth, query, readConsistency);
    return { status: 200, body: value, headers: { 'Read-Consistency': consistency } };
  },
  getClient: async ({ db, auth, params }) => one(await clients.getClient(db, auth, params.id)),
  updateClient: ({ db, key, auth, params, body, req, respond }) =>
    clients.updateClient(db, auth, params.id, body, req.get('If-Match'), key, (updated) => respond(one(updated))),
  deleteClient: ({ db, key, auth, params, req, respond }) =>
    clients.deleteClient(db, auth, params.id, req.get('If-Match'), key, (deleted) => respond(one(deleted))),
  restoreClient: ({ db, key, auth, params, req, respond }) =>
    clients.restoreClient(db, auth, params.id, req.get('If-Match'), key, (restored) => respond(one(restored))),
} satisfies Partial<Handlers>;
