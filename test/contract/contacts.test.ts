/**
 * A client's contacts (/clients/{id}/contacts and /clients/{id}/contacts/{contactId}): create with
 * the clients' coercions, list newest first by cursor, read with an ETag, PATCH with If-Match and
 * metadata merged, delete; one primary contact per client, kept under concurrent writes; at most
 * 50 per client; a deleted client's contacts readable but frozen until it is restored; tenancy
 * across organisations and environments; Idempotency-Key as for clients. Every answer is checked
 * against the spec by the typed client's spec-checking fetch.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClientsApi, ContactResource } from '../../client/index.js';
import { MAX_CONTACTS_PER_CLIENT } from '../../server/contacts/contacts.service.js';
import { FUZZ_RATE_LIMITS } from '../support/operation-fixtures.js';
import { startTestServer, type TestServer } from '../support/server.js';

let server: TestServer;
let api: ClientsApi;
let orgId: string;

beforeAll(async () => {
  // Concurrent writers of one organisation (the primary under races): no concurrency limit.
  server = await startTestServer({ rateLimits: FUZZ_RATE_LIMITS, concurrencyLimit: false });
  const tenant = await server.tenant({ plan: 'studio' });
  api = tenant.api;
  orgId = tenant.token.orgId;
});
afterAll(() => server?.close());

const UNKNOWN_ID = '497f6eca-6276-4993-bfeb-53cbbbba6f08';

async function newClient(on: ClientsApi = api): Promise<string> {
  const { data, response } = await on.POST('/clients', { body: { name: 'Globex Corporation' } });
  expect(response.status).toBe(201);
  return data!.data.id;
}

const createContact = (clientId: string, body: Record<string, unknown>, on: ClientsApi = api, headers: Record<string, string> = {}) =>
  on.POST('/clients/{id}/contacts', { params: { path: { id: clientId } }, body: body as never, headers });

async function contact(clientId: string, body: Record<string, unknown> = {}, on: ClientsApi = api) {
  const { data, response } = await createContact(clientId, { name: 'Marge Simpson', ...body }, on);
  expect(response.status, JSON.stringify(data)).toBe(201);
  return { contact: data!.data, etag: response.headers.get('ETag')! };
}

const get = (clientId: string, contactId: string, on: ClientsApi = api) =>
  on.GET('/clients/{id}/contacts/{contactId}', { params: { path: { id: clientId, contactId } } });

const patch = (clientId: string, contactId: string, body: unknown, options: { ifMatch?: string; key?: string; on?: ClientsApi } = {}) =>
  (options.on ?? api).PATCH('/clients/{id}/contacts/{contactId}', {
    params: {
      path: { id: clientId, contactId },
      header: options.ifMatch === undefined ? undefined : { 'If-Match': options.ifMatch },
    },
    body: body as never,
    headers: options.key ? { 'Idempotency-Key': options.key } : {},
  });

const remove = (clientId: string, contactId: string, ifMatch?: string, on: ClientsApi = api) =>
  on.DELETE('/clients/{id}/contacts/{contactId}', {
    params: { path: { id: clientId, contactId }, header: ifMatch === undefined ? undefined : { 'If-Match': ifMatch } },
  });

const list = (clientId: string, query: { limit?: number; cursor?: string } = {}, on: ClientsApi = api) =>
  on.GET('/clients/{id}/contacts', { params: { path: { id: clientId }, query } });

function expectError(result: { response: Response; error?: unknown }, status: number, code: string) {
  expect(result.response.status).toBe(status);
  expect((result.error as { error: { code: string } }).error.code).toBe(code);
  return (result.error as { error: { code: string; message: string; fields?: Record<string, string> } }).error;
}

async function primaries(clientId: string): Promise<string[]> {
  const rows = await server.database.db
    .selectFrom('contacts')
    .select('id')
    .where('client_id', '=', clientId)
    .where('is_primary', '=', true)
    .execute();
  return rows.map((r) => r.id);
}

describe('POST /clients/{id}/contacts', () => {
  it('creates a contact: trimmed, blanks null, flags false by default, metadata without empty keys; Location and ETag', async () => {
    const clientId = await newClient();
    const { data, response } = await createContact(clientId, {
      name: '  Marge Simpson ',
      email: ' ap@globex.test ',
      phone: '   ',
      role: '',
      metadata: { crmId: ' 48213 ', gone: '', alsoGone: null },
    });
    expect(response.status).toBe(201);
    const created = data!.data;
    expect(created).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      clientId,
      name: 'Marge Simpson',
      email: 'ap@globex.test',
      phone: null,
      role: null,
      isPrimary: false,
      receivesInvoices: false,
      metadata: { crmId: '48213' },
      createdAt: expect.any(String),
      updatedAt: created.createdAt,
    });
    expect(response.headers.get('Location')).toBe(`/clients/${clientId}/contacts/${created.id}`);
    const read = await get(clientId, created.id);
    expect(read.data!.data).toEqual(created);
    expect(read.response.headers.get('ETag')).toBe(response.headers.get('ETag'));
  });

  it.each([
    ['no name', {}, 'name'],
    ['a blank name', { name: '   ' }, 'name'],
    ['an unknown field', { name: 'A', nmae: 'B' }, 'nmae'],
    ['a bad e-mail', { name: 'A', email: 'nope' }, 'email'],
    ['a flag that is not one', { name: 'A', isPrimary: 'yes' }, 'isPrimary'],
    ['51 metadata keys', { name: 'A', metadata: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, 'v'])) }, 'metadata'],
    ['a metadata key of 41 characters', { name: 'A', metadata: { ['k'.repeat(41)]: 'v' } }, 'metadata'],
    ['a metadata value of 501 characters', { name: 'A', metadata: { k: 'v'.repeat(501) } }, 'metadata'],
    ['a metadata key with a bracket', { name: 'A', metadata: { 'a[b]': 'v' } }, 'metadata'],
    ['a metadata value that is not text', { name: 'A', metadata: { k: 1 } }, 'metadata'],
    ['metadata that is not an object', { name: 'A', metadata: 'x' }, 'metadata'],
  ])('%s is 400 naming the field', async (_label, body, field) => {
    const clientId = await newClient();
    const error = expectError(await createContact(clientId, body), 400, 'validation_failed');
    expect(Object.keys(error.fields ?? {})).toEqual([field]);
    expect(await primaries(clientId)).toEqual([]);
  });

  it('takes 50 metadata keys of 40 characters with values of 500', async () => {
    const clientId = await newClient();
    const metadata = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`${i}`.padStart(40, 'k'), 'v'.repeat(500)]));
    const { contact: created } = await contact(clientId, { metadata });
    expect(created.metadata).toEqual(metadata);
  });

  it.each([
    ['an unknown client', UNKNOWN_ID],
    ['an id that is not a UUID', 'nope'],
    ['an id in upper case', null],
  ])('%s is 404', async (_label, id) => {
    const clientId = id ?? (await newClient()).toUpperCase();
    expectError(await createContact(clientId, { name: 'A' }), 404, 'not_found');
  });

  it(`refuses the ${MAX_CONTACTS_PER_CLIENT + 1}st contact with 409 contact_limit_reached, and takes one again after a delete`, async () => {
    const clientId = await newClient();
    const made: ContactResource[] = [];
    for (let i = 0; i < MAX_CONTACTS_PER_CLIENT; i++) made.push((await contact(clientId, { name: `Contact ${i}` })).contact);
    const key = randomUUID();
    const refused = await createContact(clientId, { name: 'One too many' }, api, { 'Idempotency-Key': key });
    const error = expectError(refused, 409, 'contact_limit_reached');
    expect(error.message).toContain('50');
    // The refusal is stored with its key and replayed, as a client's 402 is.
    const replay = await createContact(clientId, { name: 'One too many' }, api, { 'Idempotency-Key': key });
    expectError(replay, 409, 'contact_limit_reached');
    expect(replay.response.headers.get('Idempotent-Replayed')).toBe('true');
    // Another client is not full.
    await contact(await newClient(), { name: 'Elsewhere' });
    expect((await remove(clientId, made[0]!.id)).response.status).toBe(200);
    await contact(clientId, { name: 'Room again' });
    const count = await server.database.db
      .selectFrom('contacts')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('client_id', '=', clientId)
      .executeTakeFirstOrThrow();
    expect(Number(count.n)).toBe(MAX_CONTACTS_PER_CLIENT);
  }, 60_000);
});

describe('GET /clients/{id}/contacts', () => {
  it('lists newest first, page by page, every contact exactly once', async () => {
    const clientId = await newClient();
    const made: string[] = [];
    for (let i = 0; i < 5; i++) made.push((await contact(clientId, { name: `C${i}` })).contact.id);
    // Another client's contacts are not listed.
    await contact(await newClient(), { name: 'Other' });
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const { data, response } = await list(clientId, { limit: 2, ...(cursor && { cursor }) });
      expect(response.status).toBe(200);
      expect(data!.data.length).toBeLessThanOrEqual(2);
      seen.push(...data!.data.map((c) => c.id));
      cursor = data!.nextCursor ?? undefined;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual([...made].reverse());
  });

  it('an unknown client is 404; a cursor this API did not give out is 400 naming cursor', async () => {
    expectError(await list(UNKNOWN_ID), 404, 'not_found');
    expectError(await list('nope'), 404, 'not_found');
    const clientId = await newClient();
    const error = expectError(await list(clientId, { cursor: 'bm90LWEtY3Vyc29y' }), 400, 'validation_failed');
    expect(Object.keys(error.fields!)).toEqual(['cursor']);
    const tooMany = expectError(await list(clientId, { limit: 101 }), 400, 'validation_failed');
    expect(Object.keys(tooMany.fields!)).toEqual(['limit']);
  });
});

describe('GET /clients/{id}/contacts/{contactId}', () => {
  it("is 404 for an unknown contact, another client's contact, and any other spelling of its id", async () => {
    const clientId = await newClient();
    const { contact: mine } = await contact(clientId);
    const otherClient = await newClient();
    expectError(await get(clientId, UNKNOWN_ID), 404, 'not_found');
    expectError(await get(otherClient, mine.id), 404, 'not_found');
    expectError(await get(clientId, mine.id.toUpperCase()), 404, 'not_found');
    expectError(await get('nope', mine.id), 404, 'not_found');
    expectError(await get(clientId, 'nope'), 404, 'not_found');
  });
});

describe('PATCH /clients/{id}/contacts/{contactId}', () => {
  it('changes the fields sent, merges metadata (a key set to "" or null is removed), moves updatedAt and the ETag', async () => {
    const clientId = await newClient();
    const { contact: created, etag } = await contact(clientId, {
      email: 'ap@globex.test',
      metadata: { crmId: '1', segment: 'smb', legacy: 'x' },
    });
    await new Promise((resolve) => setTimeout(resolve, 3));
    const { data, response } = await patch(
      clientId,
      created.id,
      { role: ' Head of finance ', phone: '', metadata: { segment: 'enterprise', legacy: null, crmId: '', added: 'y' } },
      { ifMatch: etag },
    );
    expect(response.status).toBe(200);
    const updated = data!.data;
    expect(updated).toEqual({
      ...created,
      role: 'Head of finance',
      metadata: { segment: 'enterprise', added: 'y' },
      updatedAt: expect.any(String),
    });
    expect(updated.updatedAt > created.updatedAt).toBe(true);
    const newEtag = response.headers.get('ETag')!;
    expect(newEtag).not.toBe(etag);
    expect((await get(clientId, created.id)).data!.data).toEqual(updated);

    // The same values again, and an empty object: nothing changes, the ETag included.
    for (const body of [{ role: 'Head of finance', metadata: { segment: 'enterprise' } }, {}, { metadata: {} }]) {
      const same = await patch(clientId, created.id, body, { ifMatch: newEtag });
      expect(same.response.status).toBe(200);
      expect(same.data!.data).toEqual(updated);
      expect(same.response.headers.get('ETag')).toBe(newEtag);
    }
  });

  it('a stale If-Match is 412 and changes nothing; * passes; 404 comes before 412', async () => {
    const clientId = await newClient();
    const { contact: created, etag } = await contact(clientId);
    expect((await patch(clientId, created.id, { role: 'A' }, { ifMatch: etag })).response.status).toBe(200);
    expectError(await patch(clientId, created.id, { role: 'B' }, { ifMatch: etag }), 412, 'precondition_failed');
    expect((await get(clientId, created.id)).data!.data.role).toBe('A');
    expect((await patch(clientId, created.id, { role: 'C' }, { ifMatch: '*' })).data!.data.role).toBe('C');
    expectError(await patch(clientId, UNKNOWN_ID, { role: 'D' }, { ifMatch: '"stale"' }), 404, 'not_found');
    expectError(await patch(clientId, created.id, { role: 'D' }, { ifMatch: 'not a tag' }), 400, 'validation_failed');
  });

  it('refuses clearing the name, unknown fields, and metadata that would hold more than 50 keys once merged', async () => {
    const clientId = await newClient();
    const full = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`k${i}`, 'v']));
    const { contact: created } = await contact(clientId, { metadata: full });
    expect(Object.keys(expectError(await patch(clientId, created.id, { name: null }), 400, 'validation_failed').fields!)).toEqual(['name']);
    expect(Object.keys(expectError(await patch(clientId, created.id, { orgId: UNKNOWN_ID }), 400, 'validation_failed').fields!)).toEqual([
      'orgId',
    ]);
    const error = expectError(await patch(clientId, created.id, { metadata: { one: 'more' } }), 400, 'validation_failed');
    expect(Object.keys(error.fields!)).toEqual(['metadata']);
    // Removing one makes room for another in the same request.
    const swapped = await patch(clientId, created.id, { metadata: { k0: null, one: 'more' } });
    expect(swapped.response.status).toBe(200);
    expect(Object.keys(swapped.data!.data.metadata)).toHaveLength(50);
    expect(swapped.data!.data.metadata.one).toBe('more');
  });
});

describe('DELETE /clients/{id}/contacts/{contactId}', () => {
  it('answers the contact as it was, then it is gone (404); If-Match is honoured', async () => {
    const clientId = await newClient();
    const { contact: created, etag } = await contact(clientId, { isPrimary: true });
    expect((await patch(clientId, created.id, { role: 'Boss' })).response.status).toBe(200);
    expectError(await remove(clientId, created.id, etag), 412, 'precondition_failed');
    const current = await get(clientId, created.id);
    const deleted = await remove(clientId, created.id, current.response.headers.get('ETag')!);
    expect(deleted.response.status).toBe(200);
    expect(deleted.data!.data).toEqual(current.data!.data);
    expectError(await get(clientId, created.id), 404, 'not_found');
    expectError(await remove(clientId, created.id), 404, 'not_found');
    expect(await primaries(clientId)).toEqual([]);
  });
});

describe('isPrimary: at most one per client', () => {
  it('making one primary makes the other not, on create and on PATCH', async () => {
    const clientId = await newClient();
    const { contact: a } = await contact(clientId, { name: 'A', isPrimary: true });
    const { contact: b } = await contact(clientId, { name: 'B', isPrimary: true });
    expect(await primaries(clientId)).toEqual([b.id]);
    const demoted = (await get(clientId, a.id)).data!.data;
    expect(demoted.isPrimary).toBe(false);
    expect(demoted.updatedAt > a.updatedAt).toBe(true);
    const { contact: c } = await contact(clientId, { name: 'C' });
    expect((await patch(clientId, c.id, { isPrimary: true })).data!.data.isPrimary).toBe(true);
    expect(await primaries(clientId)).toEqual([c.id]);
    // Setting false on the primary leaves the client without one; another client's primary is untouched.
    const other = await newClient();
    const { contact: elsewhere } = await contact(other, { isPrimary: true });
    expect((await patch(clientId, c.id, { isPrimary: false })).data!.data.isPrimary).toBe(false);
    expect(await primaries(clientId)).toEqual([]);
    expect(await primaries(other)).toEqual([elsewhere.id]);
  });

  it('stays true under concurrent writes: 10 racing PATCHes and creates making different contacts primary leave exactly one', async () => {
    const clientId = await newClient();
    const existing: string[] = [];
    for (let i = 0; i < 5; i++) existing.push((await contact(clientId, { name: `P${i}`, isPrimary: i === 0 })).contact.id);
    const answers = await Promise.all([
      ...existing.map((id) => patch(clientId, id, { isPrimary: true })),
      ...Array.from({ length: 5 }, (_, i) => createContact(clientId, { name: `New ${i}`, isPrimary: true })),
    ]);
    expect(answers.map((a) => a.response.status).sort()).toEqual([200, 200, 200, 200, 200, 201, 201, 201, 201, 201]);
    const now = await primaries(clientId);
    expect(now).toHaveLength(1);
    const listed = (await list(clientId, { limit: 100 })).data!.data;
    expect(listed.filter((c) => c.isPrimary).map((c) => c.id)).toEqual(now);
  });
});

describe("a deleted client's contacts", () => {
  it('can be read and listed but not changed (409 client_deleted), and are as they were after its restore', async () => {
    const clientId = await newClient();
    const { contact: kept, etag } = await contact(clientId, { isPrimary: true, metadata: { a: '1' } });
    expect((await api.DELETE('/clients/{id}', { params: { path: { id: clientId } } })).response.status).toBe(200);

    expect((await get(clientId, kept.id)).data!.data).toEqual(kept);
    expect((await list(clientId)).data!.data).toEqual([kept]);
    expectError(await createContact(clientId, { name: 'New' }), 409, 'client_deleted');
    expectError(await patch(clientId, kept.id, { role: 'X' }), 409, 'client_deleted');
    // 412 comes before 409, as for a client.
    expectError(await patch(clientId, kept.id, { role: 'X' }, { ifMatch: '"stale"' }), 412, 'precondition_failed');
    expectError(await remove(clientId, kept.id), 409, 'client_deleted');

    expect((await api.POST('/clients/{id}/restore', { params: { path: { id: clientId } } })).response.status).toBe(200);
    const after = await get(clientId, kept.id);
    expect(after.data!.data).toEqual(kept);
    expect(after.response.headers.get('ETag')).toBe(etag);
    expect((await patch(clientId, kept.id, { role: 'X' }, { ifMatch: etag })).response.status).toBe(200);
  });
});

describe('tenancy', () => {
  it("another organisation and the owner's other environment see none of it (404) and change nothing", async () => {
    const owner = await server.tenant({ plan: 'studio', env: 'test' });
    const clientId = await newClient(owner.api);
    const { contact: mine } = await contact(clientId, { isPrimary: true }, owner.api);
    const orgName = (
      await server.database.db.selectFrom('organisations').select('name').where('id', '=', owner.token.orgId).executeTakeFirstOrThrow()
    ).name;
    const intruders = [
      (await server.tenant({ plan: 'studio', env: 'test' })).api,
      server.client((await server.mint({ orgName, env: 'live' })).token),
    ];
    for (const intruder of intruders) {
      // A client of its own, with a contact, so that a 404 is not just an empty table.
      const theirs = await newClient(intruder);
      await contact(theirs, {}, intruder);
      expectError(await list(clientId, {}, intruder), 404, 'not_found');
      expectError(await get(clientId, mine.id, intruder), 404, 'not_found');
      expectError(await get(theirs, mine.id, intruder), 404, 'not_found');
      expectError(await createContact(clientId, { name: 'Intruder' }, intruder), 404, 'not_found');
      expectError(await patch(clientId, mine.id, { name: 'Hijacked' }, { on: intruder }), 404, 'not_found');
      expectError(await patch(theirs, mine.id, { name: 'Hijacked' }, { on: intruder }), 404, 'not_found');
      expectError(await remove(clientId, mine.id, undefined, intruder), 404, 'not_found');
      expectError(await remove(theirs, mine.id, undefined, intruder), 404, 'not_found');
    }
    expect((await list(clientId, {}, owner.api)).data!.data).toEqual([mine]);
  });

  it('a token without clients:write can read but not write (403 naming the scope)', async () => {
    const clientId = await newClient();
    const { contact: created } = await contact(clientId);
    const reader = (await server.tenant({ plan: 'studio', scopes: ['clients:read'] })).api;
    // The reader is of another organisation: its own client, read and refused a write.
    const { token } = await server.mint({
      orgName: (await server.database.db.selectFrom('organisations').select('name').where('id', '=', orgId).executeTakeFirstOrThrow()).name,
      scopes: ['clients:read'],
    });
    const sameOrgReader = server.client(token);
    expect((await get(clientId, created.id, sameOrgReader)).response.status).toBe(200);
    const refused = expectError(await createContact(clientId, { name: 'X' }, sameOrgReader), 403, 'forbidden');
    expect(refused.message).toContain('clients:write');
    expectError(await list(clientId, {}, reader), 404, 'not_found');
  });
});

describe('Idempotency-Key', () => {
  it('a create replays its first answer and adds no second contact; another body with the key is 422', async () => {
    const clientId = await newClient();
    const key = randomUUID();
    const first = await createContact(clientId, { name: 'Once', isPrimary: true }, api, { 'Idempotency-Key': key });
    expect(first.response.status).toBe(201);
    const again = await createContact(clientId, { isPrimary: true, name: 'Once' }, api, { 'Idempotency-Key': key });
    expect(again.response.status).toBe(201);
    expect(again.response.headers.get('Idempotent-Replayed')).toBe('true');
    expect(again.data).toEqual(first.data);
    expect(again.response.headers.get('ETag')).toBe(first.response.headers.get('ETag'));
    expect((await list(clientId)).data!.data).toHaveLength(1);
    expectError(await createContact(clientId, { name: 'Twice' }, api, { 'Idempotency-Key': key }), 422, 'idempotency_key_reused');
    // The same key on another client's path is another request.
    expectError(
      await createContact(await newClient(), { name: 'Once', isPrimary: true }, api, { 'Idempotency-Key': key }),
      422,
      'idempotency_key_reused',
    );
  });

  it('a PATCH replays its first answer, even after the contact changed since', async () => {
    const clientId = await newClient();
    const { contact: created } = await contact(clientId);
    const key = randomUUID();
    const first = await patch(clientId, created.id, { role: 'First' }, { key });
    expect(first.response.status).toBe(200);
    expect((await patch(clientId, created.id, { role: 'Second' })).response.status).toBe(200);
    const replay = await patch(clientId, created.id, { role: 'First' }, { key });
    expect(replay.response.headers.get('Idempotent-Replayed')).toBe('true');
    expect(replay.data).toEqual(first.data);
    expect((await get(clientId, created.id)).data!.data.role).toBe('Second');
    expectError(await patch(clientId, created.id, { role: 'Other' }, { key }), 422, 'idempotency_key_reused');
  });
});
