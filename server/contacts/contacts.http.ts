/** A client's contacts' operations: parameters to the service, its result to a status. */
import type { Handlers } from '../operations/handler-types.js';
import * as contacts from './contacts.service.js';

/** Every answer that is one contact carries its ETag. */
const one = ({ contact, etag }: contacts.ContactState) => ({ status: 200 as const, body: { data: contact }, headers: { ETag: etag } });

export const contactHandlers = {
  createContact: ({ db, key, auth, params, body, now, respond }) =>
    contacts.createContact(db, auth, params.id, body, now, key, ({ contact, etag }) =>
      respond({
        status: 201,
        body: { data: contact },
        headers: { Location: `/clients/${contact.clientId}/contacts/${contact.id}`, ETag: etag },
      }),
    ),
  listContacts: async ({ db, auth, params, query }) => ({
    status: 200,
    body: await contacts.listContacts(db, auth, params.id, query),
  }),
  getContact: async ({ db, auth, params }) => one(await contacts.getContact(db, auth, params.id, params.contactId)),
  updateContact: ({ db, key, auth, params, body, req, respond }) =>
    contacts.updateContact(db, auth, params.id, params.contactId, body, req.get('If-Match'), key, (updated) => respond(one(updated))),
  deleteContact: ({ db, key, auth, params, req, respond }) =>
    contacts.deleteContact(db, auth, params.id, params.contactId, req.get('If-Match'), key, ({ contact }) =>
      respond({ status: 200, body: { data: contact } }),
    ),
} satisfies Partial<Handlers>;
