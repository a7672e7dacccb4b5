/**
 * The clients' rules, and each write's unit of work: a write runs in runKeyedWrite
 * (server/idempotency/idempotency.ts), with the request's Idempotency-Key, and answers what the
 * handler's `answer` makes of its result (the answer is stored with the key).
 */
import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { ReadConsistency, Reads, Served } from '../db/reads.js';
import type { ClientRow, Database } from '../db/schema.js';
import {
  inOneStatement,
  inTransaction,
  type KeyedRequest,
  runKeyedWrite,
  type UnitOfWork,
  type WriteAnswer,
} from '../idempotency/idempotency.js';
import { isCalendarDate } from '../shared/date-time.js';
import { ApiError, notFound, preconditionFailed, validationFailed } from '../shared/errors.js';
import { ifMatchPasses, strongEtag } from '../shared/etag.js';
import { keysetPage } from '../shared/keyset-cursor.js';
import { LIST_DEFAULTS, parameterMessage } from '../shared/spec-values.js';
import { assertFeature, assertRoomForActiveClient, PLANS } from '../plans/plans.js';
import type { Tenant } from '../shared/tenant.js';
import { changedAttributes, clientEvent, insertEvent } from '../events/events.service.js';
import { decodeCursor, encodeCursor } from './clients.cursor.js';
import {
  toClient,
  toColumnValues,
  type Client,
  type ClientInput,
  type ClientList,
  type ClientListQuery,
  type ClientPatch,
} from './clients.mapper.js';
import {
  ABSENT_CLIENT_VALUES,
  countActiveClientsLocked,
  findClientById,
  insertClient,
  type ClientListFilter,
  listClientRows,
  listClientRowsExamining,
  type NewClientRow,
  searchUsesIndex,
  setClientDeleted,
  updateClientRow,
  findActiveClientIdByExternalId,
  guardingExternalId,
  isExternalIdTaken,
} from './clients.queries.js';
import { METADATA_TOO_MANY, mergeMetadata } from '../shared/metadata.js';
import { isUuid } from '../shared/ids.js';

/** A client as answered, with the strong ETag of exactly that answer. */
export interface ClientState {
  client: Client;
  etag: string;
}

function present(row: ClientRow): ClientState {
  const client = toClient(row);
  return { client, etag: strongEtag(client) };
}

/** A new client, computed in full (id and times included): its response needs nothing back from the database. */
interface NewClient extends ClientState {
  row: NewClientRow;
}

/** Checks the plan's features and computes the new client; nothing is written yet. */
function newClient(tenant: Tenant, input: ClientInput, now: Date): NewClient {
  const values = toColumnValues(input);
  if (values.require_po_number) assertFeature(tenant.plan, 'clients.requirePoNumber');
  // Fewer keys than the spec's maxProperties can never merge into too many.
  const metadata = mergeMetadata({}, input.metadata ?? {})!;
  const row: NewClientRow = {
    id: randomUUID(),
    org_id: tenant.orgId,
    env: tenant.env,
    ...ABSENT_CLIENT_VALUES,
    ...values,
    name: values.name as string,
    require_po_number: values.require_po_number ?? false,
    metadata: JSON.stringify(metadata),
    created_at: now,
    updated_at: now,
  };
  return { ...present({ ...row, metadata, deleted_at: null }), row };
}

/** The plan's room for one more active client, in the caller's transaction (which the count's lock holds to its end). */
async function assertRoom(trx: Kysely<Database>, tenant: Tenant): Promise<void> {
  if (PLANS[tenant.plan].maxActiveClients === null) return;
  assertRoomForActiveClient(tenant, await countActiveClientsLocked(trx, tenant));
}

/**
 * POST /clients: the new client and its `client.created` event, with the request's key. A plan
 * without a limit needs no reads: one statement, the key's claim and the stored answer included
 * (one round trip). A plan with a limit needs one transaction, to lock the organisation's count
 * and check it before the insert.
 */
export function createClient<A extends WriteAnswer>(
  db: Kysely<Database>,
  tenant: Tenant,
  input: ClientInput,
  now: Date,
  key: KeyedRequest | undefined,
  answer: (created: ClientState) => A,
): Promise<A> {
  return runKeyedWrite(db, key, () => {
    const created = newClient(tenant, input, now);
    const event = clientEvent('client.created', tenant, created.client);
    const response = answer(created);
    const write =
      PLANS[tenant.plan].maxActiveClients === null
        ? inOneStatement(response, (claim) => insertClient(db, created.row, event, claim))
        : inTransaction(async (trx) => {
            await assertRoom(trx, tenant);
            await insertClient(trx, created.row, event);
            return response;
          });
    return created.row.external_id === null ? write : refusingTakenExternalId(write, tenant, created.row.external_id);
  });
}

/**
 * The write, with the unique index's refusal of its externalId turned into 409 external_id_taken
 * once the write has ended (rolled back: nothing written, the key neither), so that runKeyedWrite
 * stores that answer with the key. The hot path pays no lookup: only a refused write looks up the
 * client that has it.
 */
function refusingTakenExternalId<A extends WriteAnswer>(write: UnitOfWork<A>, tenant: Tenant, externalId: string): UnitOfWork<A> {
  return {
    run: (db, keyed) =>
      write.run(db, keyed).catch(async (error: unknown) => {
        if (!isExternalIdTaken(error)) throw error;
        throw await externalIdTaken(db, tenant, externalId);
      }),
  };
}

/**
 * 409 naming the client not deleted that has `externalId` (other than `exceptId`), as
 * `existingId` and in `fields`. Should it have been deleted since the refusal, the error names none.
 */
async function externalIdTaken(db: Kysely<Database>, tenant: Tenant, externalId: string, exceptId?: string): Promise<ApiError> {
  const existingId = await findActiveClientIdByExternalId(db, tenant, externalId, exceptId);
  return new ApiError('external_id_taken', 'Another client of this organisation and environment has this externalId.', {
    fields: { externalId: existingId ? `is the externalId of client ${existingId}` : 'is the externalId of another client' },
    ...(existingId && { existingId }),
  });
}

/**
 * The one answer for every id that names no client of this organisation and environment, a
 * malformed one included: nothing tells which ids exist elsewhere.
 */
async function findOrNotFound(db: Kysely<Database>, tenant: Tenant, id: string, forUpdate = false): Promise<ClientRow> {
  // Not a UUID: no client has it, and the database would refuse the comparison.
  const row = isUuid(id) ? await findClientById(db, tenant, id, { forUpdate }) : undefined;
  if (!row) throw notFound('There is no client with this id.');
  return row;
}

/**
 * The checks every change starts with, in this order: 404, then 412. The row stays
 * locked until the transaction ends, so nobody changes it between the check and the write.
 */
async function lockForChange(trx: Kysely<Database>, tenant: Tenant, id: string, ifMatch: string | undefined) {
  const row = await findOrNotFound(trx, tenant, id, true);
  const current = present(row);
  if (!ifMatchPasses(ifMatch, current.etag)) {
    throw preconditionFailed('The client has changed since the ETag in If-Match; read it again and retry.');
  }
  return { row, current };
}

export async function getClient(db: Kysely<Database>, tenant: Tenant, id: string): Promise<ClientState> {
  return present(await findOrNotFound(db, tenant, id));
}

/** PATCH /clients/{id}, inside the caller's transaction (updateClient's unit of work; tests hold the transaction). */
export async function applyUpdate(
  trx: Kysely<Database>,
  tenant: Tenant,
  id: string,
  input: ClientPatch,
  ifMatch: string | undefined,
): Promise<ClientState> {
  const { row, current } = await lockForChange(trx, tenant, id, ifMatch);
  if (row.deleted_at !== null) {
    throw new ApiError('client_deleted', 'The client is deleted; restore it before changing it.');
  }
  const values = toColumnValues(input);
  if (values.require_po_number) assertFeature(tenant.plan, 'clients.requirePoNumber');
  if (input.metadata !== undefined) {
    const merged = mergeMetadata(row.metadata, input.metadata);
    if (!merged) throw validationFailed({ metadata: METADATA_TOO_MANY });
    values.metadata = JSON.stringify(merged);
  }
  if (Object.keys(values).length === 0) return current;
  const externalId = values.external_id;
  const write = () => updateClientRow(trx, tenant, id, values);
  // Only a change of externalId can meet the unique index: it alone pays for the savepoint.
  const outcome = externalId && externalId !== row.external_id ? await guardingExternalId(trx, write) : { written: await write() };
  if ('taken' in outcome) throw await externalIdTaken(trx, tenant, externalId!, id);
  const updated = present(outcome.written);
  // Values sent as they already were change nothing, `updatedAt` included: no event.
  const previous = changedAttributes(current.client, updated.client);
  if (previous) await insertEvent(trx, clientEvent('client.updated', tenant, updated.client, previous));
  return updated;
}

/** A deletion or a restoration, and its event, in the caller's transaction. */
async function setDeleted(trx: Kysely<Database>, tenant: Tenant, id: string, deleted: boolean): Promise<ClientState> {
  const changed = present(await setClientDeleted(trx, tenant, id, deleted));
  return changedWithEvent(trx, tenant, changed, deleted);
}

/** The event of a deletion or a restoration just written, in the same transaction. */
async function changedWithEvent(trx: Kysely<Database>, tenant: Tenant, changed: ClientState, deleted: boolean): Promise<ClientState> {
  await insertEvent(trx, clientEvent(deleted ? 'client.deleted' : 'client.restored', tenant, changed.client));
  return changed;
}

/** Soft: the row stays, with deleted_at set. Deleting a deleted client keeps its first deleted_at. */
async function applyDelete(trx: Kysely<Database>, tenant: Tenant, id: string, ifMatch: string | undefined): Promise<ClientState> {
  const { row, current } = await lockForChange(trx, tenant, id, ifMatch);
  if (row.deleted_at !== null) return current;
  return setDeleted(trx, tenant, id, true);
}

/** Counts against the plan again, so it passes the same gate as create. */
export async function applyRestore(trx: Kysely<Database>, tenant: Tenant, id: string, ifMatch: string | undefined): Promise<ClientState> {
  const { row, current } = await lockForChange(trx, tenant, id, ifMatch);
  if (row.deleted_at === null) return current;
  await assertRoom(trx, tenant);
  if (row.external_id === null) return setDeleted(trx, tenant, id, false);
  // Another client may have taken its externalId while it was deleted.
  const outcome = await guardingExternalId(trx, () => setClientDeleted(trx, tenant, id, false));
  if ('taken' in outcome) throw await externalIdTaken(trx, tenant, row.external_id, id);
  return changedWithEvent(trx, tenant, present(outcome.written), false);
}

/** A change of one client, in one transaction with the request's key: `apply`, then the handler's `answer`. */
function changeClient<A extends WriteAnswer>(
  db: Kysely<Database>,
  key: KeyedRequest | undefined,
  apply: (trx: Kysely<Database>) => Promise<ClientState>,
  answer: (changed: ClientState) => A,
): Promise<A> {
  return runKeyedWrite(db, key, () => inTransaction(async (trx) => answer(await apply(trx))));
}

export function updateClient<A extends WriteAnswer>(
  db: Kysely<Database>,
  tenant: Tenant,
  id: string,
  input: ClientPatch,
  ifMatch: string | undefined,
  key: KeyedRequest | undefined,
  answer: (updated: ClientState) => A,
): Promise<A> {
  return changeClient(db, key, (trx) => applyUpdate(trx, tenant, id, input, ifMatch), answer);
}

export function deleteClient<A extends WriteAnswer>(
  db: Kysely<Database>,
  tenant: Tenant,
  id: string,
  ifMatch: string | undefined,
  key: KeyedRequest | undefined,
  answer: (deleted: ClientState) => A,
): Promise<A> {
  return changeClient(db, key, (trx) => applyDelete(trx, tenant, id, ifMatch), answer);
}

export function restoreClient<A extends WriteAnswer>(
  db: Kysely<Database>,
  tenant: Tenant,
  id: string,
  ifMatch: string | undefined,
  key: KeyedRequest | undefined,
  answer: (restored: ClientState) => A,
): Promise<A> {
  return changeClient(db, key, (trx) => applyRestore(trx, tenant, id, ifMatch), answer);
}

/** The spec's own words for `updatedSince`, for the dates its pattern cannot refuse. */
const UPDATED_SINCE_ERROR = parameterMessage('listClients', 'updatedSince');

/**
 * How many clients a search that no index can narrow (`q` without three letters or digits in a
 * row) examines per request: its page holds the matches among them, so its cost does not grow
 * with the organisation. The spec's `q` states this number.
 */
export const SHORT_SEARCH_EXAMINED = 2_000;

/**
 * A page of the list, read on a replica when the caller accepts `eventual` (a list may be a
 * little behind: server/db/replica.ts says how little). `examineAtMost`: SHORT_SEARCH_EXAMINED
 * but in tests, which walk with smaller bounds.
 */
export async function listClients(
  reads: Reads,
  tenant: Tenant,
  query: ClientListQuery,
  consistency: ReadConsistency,
  examineAtMost = SHORT_SEARCH_EXAMINED,
): Promise<Served<ClientList>> {
  // The validator fills in the spec's defaults; the fallbacks only satisfy the optional types.
  const limit = query.limit ?? LIST_DEFAULTS.limit;
  if (query.updatedSince !== undefined && !isCalendarDate(query.updatedSince))
    throw validationFailed({ updatedSince: UPDATED_SINCE_ERROR });
  const search = query.q?.trim();
  const filter: ClientListFilter = {
    // One row more than the page tells whether another page follows, without counting.
    limit: limit + 1,
    after: query.cursor === undefined ? undefined : decodeCursor(query.cursor),
    search,
    updatedSince: query.updatedSince,
    deleted: query.deleted ?? LIST_DEFAULTS.deleted,
    externalId: query.externalId,
    email: query.email,
    taxNumber: query.taxNumber,
    metadata: query.metadata && Object.keys(query.metadata).length > 0 ? query.metadata : undefined,
  };
  return reads.read(consistency, async (db) => {
    if (search === undefined || searchUsesIndex(search)) return keysetPage(await listClientRows(db, tenant, filter), limit, toClient);
    const { rows, lastExamined } = await listClientRowsExamining(db, tenant, filter, examineAtMost);
    const page = keysetPage(rows, limit, toClient);
    // Past the page's last match when another match follows it; else, if the walk stopped at its
    // bound, past the last client it examined (a page that may hold fewer than `limit`, even none).
    return page.nextCursor === null && lastExamined ? { ...page, nextCursor: encodeCursor(lastExamined) } : page;
  });
}
