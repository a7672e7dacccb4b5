/**
 * A client's contacts: the rules. Every write locks the client's row first (FOR UPDATE), so the
 * writes to one client's contacts run one at a time: the count against the limit, the one primary
 * contact and the client's deletion are each checked with nothing changing meanwhile (and the
 * partial unique index on the primary contact holds whatever happens).
 */
import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { ClientRow, Database } from '../db/schema.js';
import { findClientById } from '../clients/clients.queries.js';
import { inTransaction, type KeyedRequest, runKeyedWrite, type WriteAnswer } from '../idempotency/idempotency.js';
import type { Tenant } from '../shared/tenant.js';
import { changedAttributes, clientEvent, insertEvent } from '../events/events.service.js';
import { ApiError, notFound, preconditionFailed, validationFailed } from '../shared/errors.js';
import { ifMatchPasses, strongEtag } from '../shared/etag.js';
import { isUuid } from '../shared/ids.js';
import { decodeKeyset, keysetPage } from '../shared/keyset-cursor.js';
import { LIST_DEFAULTS, parameterMessage } from '../shared/spec-values.js';
import { METADATA_TOO_MANY, mergeMetadata } from '../shared/metadata.js';
import {
  type Contact,
  type ContactInput,
  type ContactList,
  type ContactListQuery,
  type ContactPatch,
  toContact,
  toContactValues,
} from './contacts.mapper.js';
import {
  type ClientScope,
  type ContactValues,
  countContacts,
  deleteContactRow,
  findContactById,
  findPrimaryContact,
  insertContact,
  listContactRows,
  type NewContactRow,
  updateContactRow,
} from './contacts.queries.js';
import type { ContactRow } from '../db/schema.js';

/** The most contacts a client has. */
export const MAX_CONTACTS_PER_CLIENT = 50;

/** A contact as answered, with the strong ETag of exactly that answer. */
export interface ContactState {
  contact: Contact;
  etag: string;
}

function present(row: ContactRow): ContactState {
  const contact = toContact(row);
  return { contact, etag: strongEtag(contact) };
}

const CURSOR_ERROR = parameterMessage('listContacts', 'cursor');

const clientDeleted = () => new ApiError('client_deleted', 'The client is deleted; restore it before changing its contacts.');

/** The client, or 404 (a malformed id, or one of another organisation or environment, included). */
async function findClientOrNotFound(db: Kysely<Database>, tenant: Tenant, clientId: string, forUpdate: boolean): Promise<ClientRow> {
  const row = isUuid(clientId) ? await findClientById(db, tenant, clientId, { forUpdate }) : undefined;
  if (!row) throw notFound('There is no client with this id.');
  return row;
}

async function findContactOrNotFound(db: Kysely<Database>, scope: ClientScope, id: string): Promise<ContactRow> {
  const row = isUuid(id) ? await findContactById(db, scope, id) : undefined;
  if (!row) throw notFound('There is no contact with this id for this client.');
  return row;
}

/**
 * Makes `contactId` the client's one primary contact: the one that was stops being so, with its
 * own `contact.updated` event. Runs under the client's lock, before the write that sets the flag.
 */
async function demotePrimary(trx: Kysely<Database>, tenant: Tenant, scope: ClientScope, contactId: string): Promise<void> {
  const primary = await findPrimaryContact(trx, scope);
  if (!primary || primary.id === contactId) return;
  const before = toContact(primary);
  const after = toContact(await updateContactRow(trx, scope, primary.id, { is_primary: false }));
  await insertEvent(trx, clientEvent('contact.updated', tenant, after, changedAttributes(before, after)));
}

/** 404, then 409: the client locked until the transaction ends, and not deleted. */
async function lockLiveClient(trx: Kysely<Database>, tenant: Tenant, clientId: string): Promise<ClientScope> {
  const client = await findClientOrNotFound(trx, tenant, clientId, true);
  if (client.deleted_at !== null) throw clientDeleted();
  return { orgId: tenant.orgId, env: tenant.env, clientId: client.id };
}

async function applyCreate(trx: Kysely<Database>, tenant: Tenant, clientId: string, input: ContactInput, now: Date): Promise<ContactState> {
  const scope = await lockLiveClient(trx, tenant, clientId);
  if ((await countContacts(trx, scope)) >= MAX_CONTACTS_PER_CLIENT) {
    throw new ApiError(
      'contact_limit_reached',
      `A client has at most ${MAX_CONTACTS_PER_CLIENT} contacts; delete one before adding another.`,
    );
  }
  const values = toContactValues(input);
  const row: NewContactRow = {
    id: randomUUID(),
    org_id: tenant.orgId,
    env: tenant.env,
    client_id: scope.clientId,
    email: null,
    phone: null,
    role: null,
    ...values,
    name: values.name as string,
    is_primary: values.is_primary ?? false,
    receives_invoices: values.receives_invoices ?? false,
    // Fewer keys than the spec's maxProperties can never merge into too many.
    metadata: JSON.stringify(mergeMetadata({}, input.metadata ?? {})!),
    created_at: now,
    updated_at: now,
  };
  if (row.is_primary) await demotePrimary(trx, tenant, scope, row.id);
  const created = present(await insertContact(trx, row));
  await insertEvent(trx, clientEvent('contact.created', tenant, created.contact));
  return created;
}

export async function listContacts(db: Kysely<Database>, tenant: Tenant, clientId: string, query: ContactListQuery): Promise<ContactList> {
  const client = await findClientOrNotFound(db, tenant, clientId, false);
  const limit = query.limit ?? LIST_DEFAULTS.limit;
  const after = query.cursor === undefined ? undefined : decodeKeyset(query.cursor, () => validationFailed({ cursor: CURSOR_ERROR }));
  // One row more than the page tells whether another page follows, without counting.
  const rows = await listContactRows(db, { ...tenant, clientId: client.id }, { limit: limit + 1, after });
  return keysetPage(rows, limit, toContact);
}

export async function getContact(db: Kysely<Database>, tenant: Tenant, clientId: string, id: string): Promise<ContactState> {
  if (!isUuid(clientId)) throw notFound('There is no client with this id.');
  return present(await findContactOrNotFound(db, { ...tenant, clientId }, id));
}

/** The checks every change of a contact starts with, in the order docs/behaviour.md gives: 404, 412, then 409. */
async function lockForChange(trx: Kysely<Database>, tenant: Tenant, clientId: string, id: string, ifMatch: string | undefined) {
  const client = await findClientOrNotFound(trx, tenant, clientId, true);
  const scope: ClientScope = { orgId: tenant.orgId, env: tenant.env, clientId: client.id };
  const row = await findContactOrNotFound(trx, scope, id);
  const current = present(row);
  if (!ifMatchPasses(ifMatch, current.etag)) {
    throw preconditionFailed('The contact has changed since the ETag in If-Match; read it again and retry.');
  }
  if (client.deleted_at !== null) throw clientDeleted();
  return { scope, row, current };
}

async function applyUpdate(
  trx: Kysely<Database>,
  tenant: Tenant,
  clientId: string,
  id: string,
  input: ContactPatch,
  ifMatch: string | undefined,
): Promise<ContactState> {
  const { scope, row, current } = await lockForChange(trx, tenant, clientId, id, ifMatch);
  const values: ContactValues = toContactValues(input);
  if (input.metadata !== undefined) {
    const merged = mergeMetadata(row.metadata, input.metadata);
    if (!merged) throw validationFailed({ metadata: METADATA_TOO_MANY });
    values.metadata = JSON.stringify(merged);
  }
  if (Object.keys(values).length === 0) return current;
  if (values.is_primary === true) await demotePrimary(trx, tenant, scope, id);
  const updated = present(await updateContactRow(trx, scope, id, values));
  // Values sent as they already were change nothing, `updatedAt` included: no event.
  const previous = changedAttributes(current.contact, updated.contact);
  if (previous) await insertEvent(trx, clientEvent('contact.updated', tenant, updated.contact, previous));
  return updated;
}

/** For good: the answer and the event's object are the contact as it was just before. */
async function applyDelete(
  trx: Kysely<Database>,
  tenant: Tenant,
  clientId: string,
  id: string,
  ifMatch: string | undefined,
): Promise<ContactState> {
  const { scope, current } = await lockForChange(trx, tenant, clientId, id, ifMatch);
  const deletedAt = await deleteContactRow(trx, scope, id);
  await insertEvent(trx, { ...clientEvent('contact.deleted', tenant, current.contact), eventCreatedAt: deletedAt });
  return current;
}

/** A change of one client's contacts, in one transaction with the request's key: `apply`, then the handler's `answer`. */
function changeContacts<A extends WriteAnswer>(
  db: Kysely<Database>,
  key: KeyedRequest | undefined,
  apply: (trx: Kysely<Database>) => Promise<ContactState>,
  answer: (changed: ContactState) => A,
): Promise<A> {
  return runKeyedWrite(db, key, () => inTransaction(async (trx) => answer(await apply(trx))));
}

export function createContact<A extends WriteAnswer>(
  db: Kysely<Database>,
  tenant: Tenant,
  clientId: string,
  input: ContactInput,
  now: Date,
  key: KeyedRequest | undefined,
  answer: (created: ContactState) => A,
): Promise<A> {
  return changeContacts(db, key, (trx) => applyCreate(trx, tenant, clientId, input, now), answer);
}

export function updateContact<A extends WriteAnswer>(
  db: Kysely<Database>,
  tenant: Tenant,
  clientId: string,
  id: string,
  input: ContactPatch,
  ifMatch: string | undefined,
  key: KeyedRequest | undefined,
  answer: (updated: ContactState) => A,
): Promise<A> {
  return changeContacts(db, key, (trx) => applyUpdate(trx, tenant, clientId, id, input, ifMatch), answer);
}

export function deleteContact<A extends WriteAnswer>(
  db: Kysely<Database>,
  tenant: Tenant,
  clientId: string,
  id: string,
  ifMatch: string | undefined,
  key: KeyedRequest | undefined,
  answer: (deleted: ContactState) => A,
): Promise<A> {
  return changeContacts(db, key, (trx) => applyDelete(trx, tenant, clientId, id, ifMatch), answer);
}
