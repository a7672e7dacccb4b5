/**
 * The generated types of the spec's `webhooks` section hold the payloads the server really sends:
 * real changes to a client (create, update, delete, restore) and to one of its contacts (create,
 * update, delete) through the typed client, their real
 * events read back from `GET /events` (a delivery's body is its event), and a real test delivery
 * (`webhook.test`) as a receiver got it, each written into a
 * scratch module as a literal assigned to
 * `webhooks['<type>']['post']['requestBody']['content']['application/json']` of generated/api.ts,
 * and the module compiled under `strict` by the TypeScript compiler: no error. Object literals get
 * TypeScript's excess-property check, so a field the server sends and the spec lacks fails too.
 * A negative control (one payload with a field of the wrong type) must fail, at its line, so the
 * check can fail.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClientsApi, Event, EventType } from '../../client/index.js';
import spec from '../../generated/openapi.json' with { type: 'json' };
import { root } from '../support/processes.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { startReceiver } from '../support/webhook-worker-fixtures.js';

let server: TestServer;
let api: ClientsApi;
let scratch: string;

beforeAll(async () => {
  server = await startTestServer();
  api = (await server.tenant({ plan: 'pro' })).api;
  scratch = mkdtempSync(join(tmpdir(), 'clients-api-webhook-payloads-'));
  writeFileSync(join(scratch, 'package.json'), JSON.stringify({ private: true, type: 'module' }));
});
afterAll(async () => {
  await server?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/** One client's life through the API, and one of its contacts', so that every event type is written once. */
async function changeAClient(): Promise<string[]> {
  const created = await api.POST('/clients', {
    body: {
      name: 'Globex Corporation',
      contactName: 'Hank Scorpio',
      email: 'billing@globex.test',
      currency: 'eur',
      defaultRate: '120.50',
      defaultTaxRate: 8.875,
      billingCountry: 'us',
      requirePoNumber: false,
    },
  });
  expect(created.response.status).toBe(201);
  const id = created.data!.data.id;
  const path = { params: { path: { id } } };
  const updated = await api.PATCH('/clients/{id}', { ...path, body: { contactName: 'Mindy', defaultRate: 99, email: null, notes: 'VIP' } });
  expect(updated.response.status).toBe(200);
  const contact = await api.POST('/clients/{id}/contacts', {
    ...path,
    body: { name: 'Hank Scorpio', email: 'hank@globex.test', isPrimary: true, metadata: { crm: 'c-42' } },
  });
  expect(contact.response.status).toBe(201);
  const contactPath = { params: { path: { id, contactId: contact.data!.data.id } } };
  expect((await api.PATCH('/clients/{id}/contacts/{contactId}', { ...contactPath, body: { role: 'Billing' } })).response.status).toBe(200);
  expect((await api.DELETE('/clients/{id}/contacts/{contactId}', contactPath)).response.status).toBe(200);
  expect((await api.DELETE('/clients/{id}', path)).response.status).toBe(200);
  expect((await api.POST('/clients/{id}/restore', path)).response.status).toBe(200);
  return [id, contact.data!.data.id];
}

/** The whole feed of the tenant, page by page. */
async function readTheFeed(): Promise<Event[]> {
  const events: Event[] = [];
  let after: string | undefined;
  for (let page = 0; page < 20; page++) {
    const { data, error, response } = await api.GET('/events', { params: { query: { limit: 100, after } } });
    expect(error, `GET /events answered ${response.status}`).toBeUndefined();
    events.push(...data!.data);
    if (!data!.hasMore) return events;
    after = data!.nextCursor;
  }
  throw new Error('the feed did not end within 20 pages');
}

/** A module assigning each payload, as the JSON literal it arrived as, to its webhook's generated body type. */
function payloadModule(payloads: { type: string; json: string }[]): string {
  const api = relative(scratch, join(root, 'generated/api.js')).split('\\').join('/');
  return [
    `import type { webhooks } from '${api.startsWith('.') ? api : `./${api}`}';`,
    "type Delivered<Type extends keyof webhooks> = webhooks[Type]['post']['requestBody']['content']['application/json'];",
    ...payloads.map(({ type, json }, index) => `export const payload${index}: Delivered<'${type}'> = ${json};`),
    '',
  ].join('\n');
}

/** Compiles the module under strict; each error as `line: message`. */
function compile(file: string, source: string): string[] {
  const path = join(scratch, file);
  writeFileSync(path, source);
  const program = ts.createProgram([path], {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    types: [],
    skipLibCheck: true,
  });
  return ts.getPreEmitDiagnostics(program).map((diagnostic) => {
    const where = diagnostic.file
      ? `${relative(scratch, diagnostic.file.fileName)}:${diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start ?? 0).line + 1}`
      : '';
    return `${where}: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')}`;
  });
}

/** The body of a real test delivery (POST /webhook-endpoints/{id}/test), as a receiver gets it. */
async function aTestDelivery(): Promise<string> {
  const receiver = await startReceiver();
  try {
    const { data } = await api.POST('/webhook-endpoints', { body: { url: receiver.url, enabledEvents: ['client.deleted'] } });
    await api.POST('/webhook-endpoints/{id}/test', { params: { path: { id: data!.data.id } } });
    return receiver.requests[0]!.body;
  } finally {
    await receiver.close();
  }
}

describe("the webhooks section's generated types", () => {
  let payloads: { type: EventType; json: string; event: Event }[];
  let testDelivery: { type: 'webhook.test'; json: string };

  beforeAll(async () => {
    const ids = await changeAClient();
    const events = (await readTheFeed()).filter((event) => ids.includes(event.data.object.id));
    payloads = events.map((event) => ({ type: event.type, json: JSON.stringify(event, null, 2), event }));
    testDelivery = { type: 'webhook.test', json: JSON.stringify(JSON.parse(await aTestDelivery()), null, 2) };
  }, 60_000);

  it('has one webhook per event type, and the feed has one event of each for the client and the contact changed', () => {
    const types = [
      'client.created',
      'client.updated',
      'contact.created',
      'contact.updated',
      'contact.deleted',
      'client.deleted',
      'client.restored',
    ];
    expect(Object.keys(spec.webhooks).sort()).toEqual([...types, 'webhook.test'].sort());
    expect(payloads.map((payload) => payload.type)).toEqual(types);
    const updated = payloads[1]!.event;
    expect(updated.type === 'client.updated' && updated.data.previousAttributes).toMatchObject({
      contactName: 'Hank Scorpio',
      defaultRate: '120.50',
      email: 'billing@globex.test',
      notes: null,
    });
  });

  it('compile against the real payloads with no error', () => {
    expect(compile('payloads.ts', payloadModule([...payloads, testDelivery]))).toEqual([]);
  }, 120_000);

  it('refuse a payload with a field of the wrong type, or under another type (the negative control)', () => {
    const [created, updated] = [payloads[0]!, payloads[1]!];
    const wrongType = created.json.replace(/"defaultRate": "[^"]*"/, '"defaultRate": 120.5');
    expect(wrongType).not.toBe(created.json);
    const source = payloadModule([created, { type: created.type, json: wrongType }, { type: 'client.created', json: updated.json }]);
    const lines = source.split('\n');
    const start = (index: number) => lines.findIndex((line) => line.startsWith(`export const payload${index}:`)) + 1;
    const linesOf = (index: number) => ({ from: start(index), to: index === 2 ? lines.length : start(index + 1) - 1 });
    const errors = compile('wrong-payloads.ts', source);
    const errorsIn = (index: number) => {
      const { from, to } = linesOf(index);
      return errors.filter((error) => {
        const line = Number(error.split(':')[1]);
        return line >= from && line <= to;
      });
    };
    expect(errorsIn(0)).toEqual([]);
    expect(errorsIn(1).join('\n')).toMatch(/Type 'number' is not assignable to type 'string'/);
    expect(errorsIn(2).join('\n')).toContain('\'"previousAttributes"\' does not exist');
    expect(errorsIn(1).length + errorsIn(2).length).toBe(errors.length);
  }, 120_000);
});
