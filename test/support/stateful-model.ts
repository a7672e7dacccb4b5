/**
 * Stateful fuzzing: fast-check model-based testing that follows the spec's chains between calls.
 * A run is a sequence of commands (create, read, update, delete, restore, list pages, tokens, the
 * feed) sent through the typed client to the real server, each checked against a small model of
 * the rules in docs/behaviour.md:
 *
 * - a read after a change shows the change, and only it (every answer is compared with the model);
 * - the ETag changes exactly when the client does: a change gives a new one, a request that
 *   changes nothing (a PATCH of values as they are, a delete of a deleted client, a restore of an
 *   active one, a read) gives the same one; `If-Match` with an older one is 412 and changes nothing;
 * - each change writes exactly one event, in order, whose `data.object` is the client as answered
 *   (and, for an update, whose `previousAttributes` hold the changed fields before it); a replay, a
 *   change of nothing and a refusal write none;
 * - a list walked page by page while other commands write between pages shows no row twice, every
 *   row as it is at that moment, in newest-first order, and every client that matched the walk's
 *   filter from its first page to its last exactly once (a client created during the walk may or
 *   may not appear: it sorts before the cursor, unless it shares the cursor's millisecond);
 * - an Idempotency-Key replays its first answer (201 or 402) and does nothing again; the same key
 *   with another body is 422;
 * - a minted token authenticates the next call within its scopes; a revoked one gets 401 at once;
 * - on the free plan, a create or a restore past three active clients is 402 and changes nothing.
 *
 * Every run gets a new organisation, so runs are independent. A failure prints fast-check's seed,
 * path and the shrunk sequence of calls (each command's toString is the call it makes).
 */
import fc from 'fast-check';
import { isDeepStrictEqual } from 'node:util';
import { expect } from 'vitest';
import { type ClientsApi, type components, createClientsApi } from '../../client/index.js';
import { fuzzDefaults } from './fuzz.js';
import type { TestServer } from './server.js';
import { findOperation, specCheckingFetch } from './spec-check.js';

type Client = components['schemas']['Client'];
type ClientCreate = components['schemas']['ClientCreate'];
type ClientUpdate = components['schemas']['ClientUpdate'];
type Scope = components['schemas']['Scope'];
type EventType = components['schemas']['EventType'];
type Plan = 'studio' | 'free';

/** The free plan's limit of active clients (server/plans/plans.ts). */
const FREE_ACTIVE_CLIENTS = 3;

interface ModelClient {
  /** What the run's commands call it: A, B... */
  label: string;
  /** The client as the last answer about it showed it (the model checked that answer first). */
  client: Client;
  /** Its ETag now, and every ETag it has had (for a stale If-Match). */
  etag: string;
  etags: string[];
}

interface ExpectedEvent {
  type: EventType;
  object: Client;
  previousAttributes?: Record<string, unknown>;
}

interface KeyedCreate {
  /** The label of the create that first sent the key. */
  label: string;
  key: string;
  body: ClientCreate;
  status: number;
  answer: unknown;
  etag: string | null;
}

interface ListWalk {
  deleted: 'exclude' | 'include';
  cursor: string;
  seen: Set<string>;
  /** Clients that matched the filter from the walk's start until now: each must appear exactly once. */
  mustSee: Set<string>;
  /** The last row shown, for the order. */
  last: Client | undefined;
}

interface Model {
  plan: Plan;
  /**
   * Clients in the order this run created them. A create gives its client a label (A, B...) by
   * which later commands name it, so that a shrunk sequence that drops another create still
   * names the same client.
   */
  clients: ModelClient[];
  /** The labels of every create sent, the ones refused included: each label is created once. */
  labels: Set<string>;
  keys: KeyedCreate[];
  tokens: { label: string; scopes: Scope[]; revokedAt: string | null }[];
  /** Events written since the feed was last read, oldest first. */
  pending: ExpectedEvent[];
  walk: ListWalk | undefined;
}

interface Real {
  /** The organisation's token of every scope; adds no Idempotency-Key by itself. */
  api: ClientsApi;
  /** A client for another token of the organisation. */
  as(token: string): ClientsApi;
  tokens: Map<string, { id: string; api: ClientsApi }>;
  /** Where the feed was last read to. */
  feedCursor: string | undefined;
  /** What the runs exercised, to show it (kept across runs). */
  stats: StatefulStats;
}

/** Requests by operation and status, and what the model saw happen. */
export interface StatefulStats {
  runs: number;
  requests: Record<string, number>;
  /** List walks read to their last page while the model checked them. */
  walksFinished: number;
  /** Answers that had to change nothing (same client, same ETag). */
  unchanged: number;
  /** Changes checked, by the event each wrote. */
  changes: Partial<Record<EventType, number>>;
}

type StatefulCommand = fc.AsyncCommand<Model, Real>;

const json = (value: unknown) => JSON.stringify(value);
const active = (m: Model) => m.clients.filter((c) => c.client.deletedAt === null).length;
const roomForOneMore = (m: Model) => m.plan === 'studio' || active(m) < FREE_ACTIVE_CLIENTS;

// Values as sent, a few per field, so that a PATCH often sends what is already stored (a change of nothing).
const NAMES = ['Acme', 'Globex', 'Initech'];
const OPTIONAL: Record<string, readonly unknown[]> = {
  contactName: ['Ada', 'Grace'],
  email: ['ap@acme.test', 'billing@globex.test'],
  notes: ['Net 30', 'Pays late'],
  currency: ['EUR', 'usd'],
  defaultRate: ['120.50', 90],
};

/** What the server stores for a value sent: codes upper-cased, money with two decimals at least. */
function stored(field: string, value: unknown): unknown {
  if (field === 'currency' && typeof value === 'string') return value.toUpperCase();
  if (field === 'defaultRate' && typeof value === 'number') return `${value}.00`;
  return value;
}

const createBody: fc.Arbitrary<ClientCreate> = fc
  .record(
    { name: fc.constantFrom(...NAMES), ...Object.fromEntries(Object.entries(OPTIONAL).map(([f, v]) => [f, fc.constantFrom(...v)])) },
    { requiredKeys: ['name'] },
  )
  .map((body) => body as ClientCreate);

const patchBody: fc.Arbitrary<ClientUpdate> = fc
  .record(
    {
      name: fc.constantFrom(...NAMES),
      ...Object.fromEntries(Object.entries(OPTIONAL).map(([f, v]) => [f, fc.constantFrom(null, ...v)])),
    },
    { requiredKeys: [] },
  )
  .map((body) => body as ClientUpdate);

/** The client a create with `body` makes, but for what the server decides (id, org, times). */
function createdFrom(body: ClientCreate, answer: Client): Client {
  const blank = Object.fromEntries(Object.keys(answer).map((k) => [k, null])) as unknown as Client;
  const sent = Object.fromEntries(Object.entries(body).map(([f, v]) => [f, stored(f, v)]));
  return {
    ...blank,
    ...sent,
    requirePoNumber: false,
    metadata: {},
    id: answer.id,
    orgId: answer.orgId,
    createdAt: answer.createdAt,
    updatedAt: answer.createdAt,
    deletedAt: null,
  } as Client;
}

/** The item of `items` with `label`; commands check first that there is one. */
const labelled = <T extends { label: string }>(items: readonly T[], label: string): T => items.find((i) => i.label === label)!;
const hasLabel = (items: readonly { label: string }[], label: string) => items.some((i) => i.label === label);

type IfMatch = 'none' | 'current' | 'stale' | '*';

function ifMatchValue(c: ModelClient, mode: IfMatch): string | undefined {
  if (mode === 'none') return undefined;
  if (mode === '*') return '*';
  if (mode === 'current') return c.etag;
  return c.etags.find((e) => e !== c.etag);
}

const hasStaleEtag = (c: ModelClient) => c.etags.some((e) => e !== c.etag);

/** Where two values differ, as a report reads it: `notes: expected "Net 30", got null`. */
function differences(actual: unknown, expected: unknown, at = ''): string[] {
  const plain = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!plain(actual) || !plain(expected)) return [`${at || 'the value'}: expected ${json(expected)}, got ${json(actual)}`];
  return [...new Set([...Object.keys(expected), ...Object.keys(actual)])]
    .filter((f) => !isDeepStrictEqual(actual[f], expected[f]))
    .flatMap((f) => differences(actual[f], expected[f], at ? `${at}.${f}` : f));
}

/** Throws `rule`, with the fields that differ, unless `actual` is `expected`. */
function expectSame(actual: unknown, expected: unknown, rule: string) {
  if (!isDeepStrictEqual(actual, expected)) throw new Error(`${rule}: ${differences(actual, expected).join('; ')}`);
}

/** Checks an answer about client `c` that changed nothing: the same client, the same ETag. */
function expectUnchanged(r: Real, c: ModelClient, answer: Client | undefined, etag: string | null) {
  r.stats.unchanged++;
  expectSame(answer, c.client, 'a request that changes nothing answers the client as it was');
  expect(etag, 'the ETag stays when the client does not change').toBe(c.etag);
}

/**
 * Checks an answer about client `c` that changed it into `expected` (whose `updatedAt`, and
 * `deletedAt` when set, the answer decides), and takes the change into the model.
 */
function expectChanged(
  m: Model,
  r: Real,
  c: ModelClient,
  answer: Client | undefined,
  etag: string | null,
  expected: Client,
  event: ExpectedEvent['type'],
) {
  expectSame(
    answer,
    { ...expected, updatedAt: answer?.updatedAt, deletedAt: expected.deletedAt === null ? null : answer?.updatedAt },
    'the answer shows the change, and nothing else',
  );
  // On the wire to the millisecond: two changes of one client are two round trips apart, so it moves there too.
  expect(answer!.updatedAt > c.client.updatedAt, 'a change moves updatedAt forward').toBe(true);
  if (etag === null || c.etags.includes(etag)) {
    throw new Error(
      `the ETag changes when the client changes: ${c.label} changed, and its answer's ETag is ${etag === c.etag ? 'the one it had' : json(etag)}`,
    );
  }
  let previousAttributes: Record<string, unknown> | undefined;
  if (event === 'client.updated') {
    previousAttributes = Object.fromEntries(
      Object.entries(c.client).filter(([f, v]) => !isDeepStrictEqual(v, (answer as Record<string, unknown>)[f])),
    );
  }
  r.stats.changes[event] = (r.stats.changes[event] ?? 0) + 1;
  c.client = answer!;
  c.etag = etag!;
  c.etags.push(etag!);
  m.pending.push({ type: event, object: answer!, ...(previousAttributes && { previousAttributes }) });
  // A client that stops matching a list walk's filter need not appear in it any more.
  if (m.walk?.deleted === 'exclude' && answer!.deletedAt !== null) m.walk.mustSee.delete(answer!.id);
}

function expectRefused(result: { response: Response; error?: unknown }, status: number, code: string) {
  expect(result.response.status, `${code} expected`).toBe(status);
  expect((result.error as { error: { code: string } }).error.code).toBe(code);
}

class CreateClient implements StatefulCommand {
  constructor(
    readonly label: string,
    readonly body: ClientCreate,
    readonly key: string | undefined,
  ) {}
  check = (m: Readonly<Model>) => !m.labels.has(this.label);
  async run(m: Model, r: Real) {
    m.labels.add(this.label);
    const result = await r.api.POST('/clients', { body: this.body, headers: this.key ? { 'Idempotency-Key': this.key } : {} });
    const etag = result.response.headers.get('ETag');
    if (this.key) {
      const answer = result.data ?? result.error;
      m.keys.push({ label: this.label, key: this.key, body: this.body, status: result.response.status, answer, etag });
    }
    if (!roomForOneMore(m)) return expectRefused(result, 402, 'plan_limit_reached');
    expect(result.response.status).toBe(201);
    const answer = result.data!.data;
    expectSame(answer, createdFrom(this.body, answer), 'a create answers the client as sent');
    expect(result.response.headers.get('Location')).toBe(`/clients/${answer.id}`);
    expect(etag).not.toBeNull();
    m.clients.push({ label: this.label, client: answer, etag: etag!, etags: [etag!] });
    m.pending.push({ type: 'client.created', object: answer });
    r.stats.changes['client.created'] = (r.stats.changes['client.created'] ?? 0) + 1;
  }
  toString() {
    return `${this.label} = POST /clients ${json(this.body)}${this.key ? ' with an Idempotency-Key' : ''}`;
  }
}

class ReplayCreate implements StatefulCommand {
  constructor(readonly k: string) {}
  check = (m: Readonly<Model>) => hasLabel(m.keys, this.k);
  async run(m: Model, r: Real) {
    const first = labelled(m.keys, this.k);
    const result = await r.api.POST('/clients', { body: first.body, headers: { 'Idempotency-Key': first.key } });
    expect(result.response.status, 'a replay answers the first status').toBe(first.status);
    expectSame(result.data ?? result.error, first.answer, 'a replay answers the first body');
    expect(result.response.headers.get('ETag'), 'a replay answers the first ETag').toBe(first.etag);
    expect(result.response.headers.get('Idempotent-Replayed')).toBe('true');
  }
  toString() {
    return `POST /clients again as ${this.k}'s create, its Idempotency-Key and body (a replay)`;
  }
}

class ReuseKey implements StatefulCommand {
  constructor(readonly k: string) {}
  check = (m: Readonly<Model>) => hasLabel(m.keys, this.k);
  async run(m: Model, r: Real) {
    const first = labelled(m.keys, this.k);
    const body = { ...first.body, name: `${first.body.name} (another)` };
    expectRefused(await r.api.POST('/clients', { body, headers: { 'Idempotency-Key': first.key } }), 422, 'idempotency_key_reused');
  }
  toString() {
    return `POST /clients with ${this.k}'s Idempotency-Key and another body`;
  }
}

class GetClient implements StatefulCommand {
  constructor(readonly c: string) {}
  check = (m: Readonly<Model>) => hasLabel(m.clients, this.c);
  async run(m: Model, r: Real) {
    const c = labelled(m.clients, this.c);
    const result = await r.api.GET('/clients/{id}', { params: { path: { id: c.client.id } } });
    expect(result.response.status).toBe(200);
    expectUnchanged(r, c, result.data?.data, result.response.headers.get('ETag'));
  }
  toString() {
    return `GET /clients/{${this.c}}`;
  }
}

/** The client after `patch`, as the model expects it (but for `updatedAt`, which the answer decides). */
const patched = (client: Client, patch: ClientUpdate): Client => ({
  ...client,
  ...Object.fromEntries(Object.entries(patch).map(([f, v]) => [f, stored(f, v)])),
});

type PatchResult = { response: Response; data?: { data: Client }; error?: unknown };

/** Checks a 200 to `patch` of `c` (as it was before it), and takes it into the model. */
function expectPatched(m: Model, r: Real, c: ModelClient, patch: ClientUpdate, result: PatchResult) {
  expect(result.response.status).toBe(200);
  const expected = patched(c.client, patch);
  const etag = result.response.headers.get('ETag');
  if (isDeepStrictEqual(expected, c.client)) return expectUnchanged(r, c, result.data?.data, etag);
  expectChanged(m, r, c, result.data?.data, etag, expected, 'client.updated');
}

class UpdateClient implements StatefulCommand {
  constructor(
    readonly c: string,
    readonly patch: ClientUpdate,
    readonly ifMatch: IfMatch,
  ) {}
  check = (m: Readonly<Model>) => hasLabel(m.clients, this.c) && (this.ifMatch !== 'stale' || hasStaleEtag(labelled(m.clients, this.c)));
  async run(m: Model, r: Real) {
    const c = labelled(m.clients, this.c);
    const ifMatch = ifMatchValue(c, this.ifMatch);
    const result = await r.api.PATCH('/clients/{id}', {
      params: { path: { id: c.client.id }, header: ifMatch ? { 'If-Match': ifMatch } : {} },
      body: this.patch,
    });
    if (this.ifMatch === 'stale') return expectRefused(result, 412, 'precondition_failed');
    if (c.client.deletedAt !== null) return expectRefused(result, 409, 'client_deleted');
    expectPatched(m, r, c, this.patch, result);
  }
  toString() {
    return `PATCH /clients/{${this.c}} ${json(this.patch)} If-Match: ${this.ifMatch}`;
  }
}

/**
 * Two PATCHes of one client at once, both with its current ETag in If-Match: whichever the server
 * takes first is made; the other is 412 if the first changed the client, and is made after it if
 * the first changed nothing (the ETag stayed). Never both changes from one ETag.
 */
class RacingUpdates implements StatefulCommand {
  constructor(
    readonly c: string,
    readonly patches: [ClientUpdate, ClientUpdate],
  ) {}
  check = (m: Readonly<Model>) => hasLabel(m.clients, this.c);
  async run(m: Model, r: Real) {
    const c = labelled(m.clients, this.c);
    const header = { 'If-Match': c.etag };
    const results = await Promise.all(
      this.patches.map((body) => r.api.PATCH('/clients/{id}', { params: { path: { id: c.client.id }, header }, body })),
    );
    if (c.client.deletedAt !== null) {
      for (const result of results) expectRefused(result, 409, 'client_deleted');
      return;
    }
    // Whether each would change the client as it was before both.
    const changes = this.patches.map((patch) => !isDeepStrictEqual(patched(c.client, patch), c.client));
    const statuses = results.map((x) => x.response.status).join(' and ');
    // Which the server took first: the one made while the other was refused; else one that changed nothing.
    const first = statuses === '200 and 412' ? 0 : statuses === '412 and 200' ? 1 : !changes[0] ? 0 : !changes[1] ? 1 : undefined;
    if (first === undefined || (statuses !== '200 and 200' && !changes[first])) {
      throw new Error(`two PATCHes with one ETag: one is made, the other is 412 unless the first changed nothing; answered ${statuses}`);
    }
    const second = 1 - first;
    expectPatched(m, r, c, this.patches[first]!, results[first]!);
    if (changes[first]) return expectRefused(results[second]!, 412, 'precondition_failed');
    expectPatched(m, r, c, this.patches[second]!, results[second]!);
  }
  toString() {
    return `PATCH /clients/{${this.c}} ${json(this.patches[0])} and ${json(this.patches[1])} at once, both If-Match: current`;
  }
}

class DeleteClient implements StatefulCommand {
  constructor(
    readonly c: string,
    readonly ifMatch: IfMatch,
  ) {}
  check = (m: Readonly<Model>) => hasLabel(m.clients, this.c) && (this.ifMatch !== 'stale' || hasStaleEtag(labelled(m.clients, this.c)));
  async run(m: Model, r: Real) {
    const c = labelled(m.clients, this.c);
    const ifMatch = ifMatchValue(c, this.ifMatch);
    const result = await r.api.DELETE('/clients/{id}', {
      params: { path: { id: c.client.id }, header: ifMatch ? { 'If-Match': ifMatch } : {} },
    });
    if (this.ifMatch === 'stale') return expectRefused(result, 412, 'precondition_failed');
    expect(result.response.status).toBe(200);
    const etag = result.response.headers.get('ETag');
    if (c.client.deletedAt !== null) return expectUnchanged(r, c, result.data?.data, etag);
    expectChanged(m, r, c, result.data?.data, etag, { ...c.client, deletedAt: 'set' }, 'client.deleted');
  }
  toString() {
    return `DELETE /clients/{${this.c}} If-Match: ${this.ifMatch}`;
  }
}

class RestoreClient implements StatefulCommand {
  constructor(
    readonly c: string,
    readonly ifMatch: IfMatch,
  ) {}
  check = (m: Readonly<Model>) => hasLabel(m.clients, this.c) && (this.ifMatch !== 'stale' || hasStaleEtag(labelled(m.clients, this.c)));
  async run(m: Model, r: Real) {
    const c = labelled(m.clients, this.c);
    const ifMatch = ifMatchValue(c, this.ifMatch);
    const result = await r.api.POST('/clients/{id}/restore', {
      params: { path: { id: c.client.id }, header: ifMatch ? { 'If-Match': ifMatch } : {} },
      headers: { 'Idempotency-Key': crypto.randomUUID() },
    });
    if (this.ifMatch === 'stale') return expectRefused(result, 412, 'precondition_failed');
    const etag = result.response.headers.get('ETag');
    if (c.client.deletedAt === null) {
      expect(result.response.status).toBe(200);
      return expectUnchanged(r, c, result.data?.data, etag);
    }
    if (!roomForOneMore(m)) return expectRefused(result, 402, 'plan_limit_reached');
    expect(result.response.status).toBe(200);
    // Everything as it was before the delete: only deletedAt and updatedAt move.
    expectChanged(m, r, c, result.data?.data, etag, { ...c.client, deletedAt: null }, 'client.restored');
  }
  toString() {
    return `POST /clients/{${this.c}}/restore If-Match: ${this.ifMatch}`;
  }
}

/** The list's order: newest first by createdAt, then by id. */
const newerFirst = (a: Client, b: Client) => a.createdAt > b.createdAt || (a.createdAt === b.createdAt && a.id > b.id);

/** Checks one page of a list walk against the model, and takes it into the walk. */
function takePage(m: Model, walk: ListWalk, rows: Client[]) {
  for (const row of rows) {
    expect(walk.seen.has(row.id), `a list walk shows ${row.id} twice`).toBe(false);
    walk.seen.add(row.id);
    const c = m.clients.find((x) => x.client.id === row.id);
    expectSame(row, c?.client, 'a listed row is the client as it is now');
    if (walk.deleted === 'exclude') expect(row.deletedAt, 'deleted=exclude shows no deleted client').toBeNull();
    if (walk.last) expect(newerFirst(walk.last, row), `a list walk is newest first: ${row.id} came after ${walk.last.id}`).toBe(true);
    walk.last = row;
  }
}

/** Keeps the walk's cursor, or ends the walk when its last page was read: nobody who matched throughout was missed. */
function settleWalk(m: Model, r: Real, next: string | null) {
  const walk = m.walk!;
  if (next !== null) {
    walk.cursor = next;
    return;
  }
  m.walk = undefined;
  finishWalk(m, walk);
  r.stats.walksFinished++;
}

function finishWalk(m: Model, walk: ListWalk) {
  const missed = m.clients.filter((c) => walk.mustSee.has(c.client.id) && !walk.seen.has(c.client.id)).map((c) => c.label);
  if (missed.length > 0) throw new Error(`a list walk shows every client that matched throughout it: it missed ${missed.join(', ')}`);
}

class StartList implements StatefulCommand {
  constructor(
    readonly limit: number,
    readonly deleted: 'exclude' | 'include',
  ) {}
  check = () => true;
  async run(m: Model, r: Real) {
    const matching = m.clients.filter((c) => this.deleted === 'include' || c.client.deletedAt === null).map((c) => c.client.id);
    m.walk = { deleted: this.deleted, cursor: '', seen: new Set(), mustSee: new Set(matching), last: undefined };
    const result = await r.api.GET('/clients', { params: { query: { limit: this.limit, deleted: this.deleted } } });
    expect(result.response.status).toBe(200);
    takePage(m, m.walk, result.data!.data);
    settleWalk(m, r, result.data!.nextCursor);
  }
  toString() {
    return `GET /clients?limit=${this.limit}&deleted=${this.deleted} (a new list walk)`;
  }
}

class NextPage implements StatefulCommand {
  constructor(readonly limit: number) {}
  check = (m: Readonly<Model>) => m.walk !== undefined;
  async run(m: Model, r: Real) {
    const walk = m.walk!;
    const result = await r.api.GET('/clients', { params: { query: { limit: this.limit, deleted: walk.deleted, cursor: walk.cursor } } });
    expect(result.response.status).toBe(200);
    takePage(m, walk, result.data!.data);
    settleWalk(m, r, result.data!.nextCursor);
  }
  toString() {
    return `GET /clients?limit=${this.limit}&cursor={the walk's nextCursor}`;
  }
}

const TOKEN_SCOPES: Scope[] = ['clients:read', 'clients:write', 'events:read'];

class MintToken implements StatefulCommand {
  constructor(
    readonly label: string,
    readonly scopes: Scope[],
  ) {}
  check = (m: Readonly<Model>) => !hasLabel(m.tokens, this.label);
  async run(m: Model, r: Real) {
    const result = await r.api.POST('/tokens', { body: { name: 'stateful', scopes: this.scopes } });
    expect(result.response.status).toBe(201);
    expect(result.data!.data.scopes).toEqual(this.scopes);
    r.tokens.set(this.label, { id: result.data!.data.id, api: r.as(result.data!.token!) });
    m.tokens.push({ label: this.label, scopes: this.scopes, revokedAt: null });
  }
  toString() {
    return `${this.label} = POST /tokens ${json({ scopes: this.scopes })}`;
  }
}

class UseToken implements StatefulCommand {
  constructor(readonly t: string) {}
  check = (m: Readonly<Model>) => hasLabel(m.tokens, this.t);
  async run(m: Model, r: Real) {
    const token = labelled(m.tokens, this.t);
    const result = await r.tokens.get(this.t)!.api.GET('/clients', { params: { query: { limit: 1 } } });
    if (token.revokedAt !== null) return expectRefused(result, 401, 'unauthenticated');
    if (!token.scopes.includes('clients:read')) return expectRefused(result, 403, 'forbidden');
    expect(result.response.status).toBe(200);
    const newest = m.clients
      .map((c) => c.client)
      .filter((c) => c.deletedAt === null)
      .sort((a, b) => (newerFirst(a, b) ? -1 : 1))
      .slice(0, 1);
    expect(result.data!.data, "the token reads the organisation's newest client").toEqual(newest);
  }
  toString() {
    return `GET /clients?limit=1 with token ${this.t}`;
  }
}

class RevokeToken implements StatefulCommand {
  constructor(readonly t: string) {}
  check = (m: Readonly<Model>) => hasLabel(m.tokens, this.t);
  async run(m: Model, r: Real) {
    const token = labelled(m.tokens, this.t);
    const result = await r.api.DELETE('/tokens/{id}', { params: { path: { id: r.tokens.get(this.t)!.id } } });
    expect(result.response.status).toBe(200);
    const revokedAt = result.data!.data.revokedAt;
    expect(revokedAt).not.toBeNull();
    if (token.revokedAt !== null) expect(revokedAt, 'revoking again keeps the first revokedAt').toBe(token.revokedAt);
    token.revokedAt = revokedAt;
  }
  toString() {
    return `DELETE /tokens/{${this.t}}`;
  }
}

interface FeedEvent {
  id: string;
  type: string;
  createdAt: string;
  data: { object: Client; previousAttributes?: Record<string, unknown> };
}

/**
 * Reads the feed from where it was last read to its end, and checks it holds exactly the events
 * the model expects, in order. The feed shows an event only once every older transaction on the
 * database server has ended (another test file's too): it waits for the expected ones a while.
 */
async function readFeed(m: Model, r: Real) {
  const events: FeedEvent[] = [];
  const deadline = Date.now() + 15_000;
  for (;;) {
    const result = await r.api.GET('/events', { params: { query: { limit: 100, ...(r.feedCursor && { after: r.feedCursor }) } } });
    expect(result.response.status).toBe(200);
    events.push(...(result.data!.data as unknown as FeedEvent[]));
    r.feedCursor = result.data!.nextCursor;
    if (result.data!.hasMore) continue;
    if (events.length >= m.pending.length || Date.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const seen = events.map((e) => ({
    type: e.type,
    object: e.data.object,
    ...(e.data.previousAttributes && { previousAttributes: e.data.previousAttributes }),
  }));
  const rule = 'each change writes exactly one event, in order, with the client as answered';
  expect(
    seen.map((e) => e.type),
    rule,
  ).toEqual(m.pending.map((e) => e.type));
  for (const [i, event] of seen.entries()) expectSame(event, m.pending[i], `${rule} (event ${i + 1} of ${seen.length})`);
  for (const e of events) expect(e.createdAt, "an event's time is its change's updatedAt").toBe(e.data.object.updatedAt);
  m.pending = [];
}

class ReadFeed implements StatefulCommand {
  check = () => true;
  run = readFeed;
  toString() {
    return 'GET /events?after={the last nextCursor} until the end';
  }
}

const TOKENS = ['T1', 'T2'];
/** Labels of clients: four, one more than the free plan holds; most commands are about A, so that chains on one client are long. */
const client = fc.oneof(
  { arbitrary: fc.constant('A'), weight: 4 },
  { arbitrary: fc.constant('B'), weight: 2 },
  { arbitrary: fc.constantFrom('C', 'D'), weight: 2 },
);
const token = fc.constantFrom(...TOKENS);
const ifMatch = fc.constantFrom<IfMatch>('current', 'none', 'stale', '*');
const pageSize = fc.integer({ min: 1, max: 3 });

/** A command and how often it is drawn, relative to the others. */
const weighted = (weight: number, command: fc.Arbitrary<StatefulCommand>) => Array.from({ length: weight }, () => command);

/** Every command, weighted so that a run builds clients, changes them and walks the chains between. */
const statefulCommands: fc.Arbitrary<StatefulCommand>[] = [
  ...weighted(
    4,
    fc.tuple(client, createBody, fc.option(fc.uuid({ version: 4 }), { nil: undefined })).map(([c, b, k]) => new CreateClient(c, b, k)),
  ),
  ...weighted(
    1,
    client.map((k) => new ReplayCreate(k)),
  ),
  ...weighted(
    1,
    client.map((k) => new ReuseKey(k)),
  ),
  ...weighted(
    2,
    client.map((c) => new GetClient(c)),
  ),
  ...weighted(
    4,
    fc.tuple(client, patchBody, ifMatch).map(([c, p, i]) => new UpdateClient(c, p, i)),
  ),
  ...weighted(
    1,
    fc.tuple(client, patchBody, patchBody).map(([c, a, b]) => new RacingUpdates(c, [a, b])),
  ),
  ...weighted(
    3,
    fc.tuple(client, ifMatch).map(([c, i]) => new DeleteClient(c, i)),
  ),
  ...weighted(
    3,
    fc.tuple(client, ifMatch).map(([c, i]) => new RestoreClient(c, i)),
  ),
  ...weighted(
    1,
    fc.tuple(pageSize, fc.constantFrom('exclude' as const, 'include' as const)).map(([l, d]) => new StartList(l, d)),
  ),
  ...weighted(
    3,
    pageSize.map((l) => new NextPage(l)),
  ),
  ...weighted(
    1,
    fc.tuple(token, fc.subarray(TOKEN_SCOPES, { minLength: 1 })).map(([t, s]) => new MintToken(t, s)),
  ),
  ...weighted(
    1,
    token.map((t) => new UseToken(t)),
  ),
  ...weighted(
    1,
    token.map((t) => new RevokeToken(t)),
  ),
  ...weighted(1, fc.constant(new ReadFeed())),
];

/** After each run: the feed holds what the model expects, and each client reads and lists as the model says. */
async function finalChecks(m: Model, r: Real) {
  await readFeed(m, r);
  for (const c of m.clients) {
    const read = await r.api.GET('/clients/{id}', { params: { path: { id: c.client.id } } });
    expectSame(read.data?.data, c.client, 'a read after the changes shows them');
    expect(read.response.headers.get('ETag')).toBe(c.etag);
  }
  const walk: ListWalk = {
    deleted: 'include',
    cursor: '',
    seen: new Set(),
    mustSee: new Set(m.clients.map((c) => c.client.id)),
    last: undefined,
  };
  let cursor: string | undefined;
  do {
    const page = await r.api.GET('/clients', { params: { query: { limit: 100, deleted: 'include', ...(cursor && { cursor }) } } });
    takePage(m, walk, page.data!.data);
    cursor = page.data!.nextCursor ?? undefined;
  } while (cursor);
  finishWalk(m, walk);
}

interface StatefulTarget {
  server: TestServer;
  /** Record what is observed for the contract-coverage gate (off when a test injects a regression). */
  record?: boolean;
}

export interface StatefulOptions {
  numRuns: number;
  seed: number;
  /** fast-check's `path` of a failure, to replay just that counterexample. */
  path?: string | undefined;
  /** The commands' own replay path (fast-check prints it as `replayPath` in the counterexample). */
  replayPath?: string | undefined;
  maxCommands: number;
}

/**
 * Runs: FUZZ_STATEFUL_RUNS, or else a tenth of FUZZ_RUNS (30 by default: a run is a sequence of
 * up to 30 calls, a per-operation run is one). Seed: FUZZ_SEED, as the per-operation fuzzer's.
 * A failure is replayed with FUZZ_SEED, FUZZ_PATH and FUZZ_REPLAY_PATH from its report.
 */
export const statefulDefaults: StatefulOptions = {
  numRuns: Number(process.env.FUZZ_STATEFUL_RUNS ?? Math.max(1, Math.ceil(fuzzDefaults.numRuns / 10))),
  seed: fuzzDefaults.seed,
  path: process.env.FUZZ_PATH,
  replayPath: process.env.FUZZ_REPLAY_PATH,
  maxCommands: 80,
};

/**
 * Runs the stateful fuzzer against `target.server`; throws fast-check's report (seed, path and
 * the shrunk sequence of calls) when the server and the model part ways.
 */
export async function fuzzStateful(target: StatefulTarget, options: StatefulOptions = statefulDefaults): Promise<StatefulStats> {
  const stats: StatefulStats = { runs: 0, requests: {}, walksFinished: 0, unchanged: 0, changes: {} };
  const checked = specCheckingFetch(undefined, { record: target.record ?? true });
  const fetch = async (request: Request) => {
    const response = await checked(request);
    const name = `${findOperation(request.method, new URL(request.url).pathname)?.operation.operationId} ${response.status}`;
    stats.requests[name] = (stats.requests[name] ?? 0) + 1;
    return response;
  };
  const as = (token: string) => createClientsApi({ baseUrl: target.server.baseUrl, token, retry: false, idempotencyKeys: false, fetch });
  const property = fc.asyncProperty(
    fc.constantFrom<Plan>('studio', 'free'),
    fc.commands(statefulCommands, { maxCommands: options.maxCommands, size: 'max', replayPath: options.replayPath }),
    async (plan, commands) => {
      const { token } = await target.server.tenant({ plan });
      const model: Model = { plan, clients: [], labels: new Set(), keys: [], tokens: [], pending: [], walk: undefined };
      const real: Real = { api: as(token.token), as, tokens: new Map(), feedCursor: undefined, stats };
      stats.runs++;
      await fc.asyncModelRun(() => ({ model, real }), commands);
      await finalChecks(model, real);
    },
  );
  await fc.assert(property, {
    numRuns: options.numRuns,
    seed: options.seed,
    ...(options.path !== undefined && { path: options.path, endOnFailure: true }),
    includeErrorInReport: true,
  });
  return stats;
}
