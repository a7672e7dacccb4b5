/** A client's contacts' operations: HTTP in, plain values to the service, the answer out. */
import type { Handlers } from '../http/handler-types.js';
import { keyedTransaction } from '../idempotency/idempotency.js';
import * as contacts from './contacts.service.js';

/** Every answer that is one contact carries its ETag. */
const answer = ({ contact, etag }: contacts.ContactState) => ({ status: 200 as const, body: { data: contact }, headers: { ETag: etag } });

export const contactHandlers = {
  createContact: async ({ db, key, auth, params, body, now, respond }) =>
    keyedTransaction(db, key, async (trx) => {
      const { contact, etag } = await contacts.createContact(trx, auth, params.id, body, now);
      return respond({
        status: 201,
        body: { data: contact },
        headers: { Location: `/clients/${contact.clientId}/contacts/${contact.id}`, ETag: etag },
      });
    }),
  listContacts: async ({ db, auth, params, query }) => ({
    status: 200,
    body: await contacts.listContacts(db, auth, params.id, query),
  }),
  getContact: async ({ db, auth, params }) => answer(await contacts.getContact(db, auth, params.id, params.contactId)),
  updateContact: async ({ db, key, auth, params, body, req, respond }) =>
    keyedTransaction(db, key, async (trx) =>
      respond(answer(await contacts.updateContact(trx, auth, params.id, params.contactId, body, req.get('If-Match')))),
    ),
  deleteContact: async ({ db, key, auth, params, req, respond }) =>
    keyedTransaction(db, key, async (trx) =>
      respond({
        status: 200,
        body: { data: (await contacts.deleteContact(trx, auth, params.id, params.contactId, req.get('If-Match'))).contact },
      }),
    ),
} satisfies Partial<Handlers>;
