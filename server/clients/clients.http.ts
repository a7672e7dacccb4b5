/** The clients' operations: HTTP in, plain values to the service, the answer out. */
import type { Handlers } from '../http/handler-types.js';
import { keyedTransaction } from '../idempotency/idempotency.js';
import * as clients from './clients.service.js';

/** Every answer that is one client carries its ETag. */
const answer = ({ client, etag }: clients.ClientState) => ({ status: 200 as const, body: { data: client }, headers: { ETag: etag } });

export const clientHandlers = {
  createClient: async ({ db, key, auth, body, now, respond }) => {
    const created = clients.newClient(auth, body, now);
    const response = respond({
      status: 201,
      body: { data: created.client },
      headers: { Location: `/clients/${created.client.id}`, ETag: created.etag },
    });
    await clients.insertNewClient(db, auth, created, response, key);
    return response;
  },
  listClients: async ({ reads, readConsistency, auth, query }) => {
    const { value, consistency } = await clients.listClients(reads, auth, query, readConsistency);
    return { status: 200, body: value, headers: { 'Read-Consistency': consistency } };
  },
  getClient: async ({ db, auth, params }) => answer(await clients.getClient(db, auth, params.id)),
  updateClient: async ({ db, key, auth, params, body, req, respond }) =>
    keyedTransaction(db, key, async (trx) => respond(answer(await clients.updateClient(trx, auth, params.id, body, req.get('If-Match'))))),
  deleteClient: async ({ db, key, auth, params, req, respond }) =>
    keyedTransaction(db, key, async (trx) => respond(answer(await clients.deleteClient(trx, auth, params.id, req.get('If-Match'))))),
  restoreClient: async ({ db, key, auth, params, req, respond }) =>
    keyedTransaction(db, key, async (trx) => respond(answer(await clients.restoreClient(trx, auth, params.id, req.get('If-Match'))))),
} satisfies Partial<Handlers>;
