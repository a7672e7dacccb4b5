/** POST /clients through the typed client, every answer also checked against the spec. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClientResource, ClientsApi } from '../../client/index.js';
import { readJson } from '../support/json.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { specCheckingFetch } from '../support/spec-check.js';

let server: TestServer;
let api: ClientsApi;
let orgId: string;

beforeAll(async () => {
  server = await startTestServer();
  // Studio: these tests create many clients, and are about fields, not plan limits.
  const tenant = await server.tenant({ plan: 'studio' });
  api = tenant.api;
  orgId = tenant.token.orgId;
});
afterAll(() => server?.close());

const SEED_FIELDS = [
  'id',
  'orgId',
  'name',
  'contactName',
  'email',
  'phone',
  'website',
  'currency',
  'notes',
  'billingAddress',
  'billingLine1',
  'billingLine2',
  'billingCity',
  'billingRegion',
  'billingPostalCode',
  'billingCountry',
  'taxNumber',
  'defaultRate',
  'defaultPaymentTerms',
  'defaultTaxRate',
  'requirePoNumber',
  'billingEmail',
  'createdAt',
  'updatedAt',
  'deletedAt',
];

/** Beside the seed's: the integrator's own id and key-value pairs (docs/behaviour.md, "The client resource, in short"). */
const INTEGRATOR_FIELDS = ['externalId', 'metadata'];

const OPTIONAL_FIELDS = [...SEED_FIELDS, 'externalId'].filter(
  (f) => !['id', 'orgId', 'name', 'createdAt', 'updatedAt', 'deletedAt', 'requirePoNumber'].includes(f),
);

/** A raw request (any body, any header), its answer still checked against the spec. */
const checkedFetch = (url: string, init: RequestInit) => specCheckingFetch()(new Request(url, init));

/** POST /clients with any body (the typed client would refuse the bad ones at compile time). */
async function create(body: unknown, init: { headers?: Record<string, string> } = {}) {
  return api.POST('/clients', { body: body as never, headers: init.headers });
}

async function countRows(): Promise<number> {
  const row = await server.database.db
    .selectFrom('clients')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

describe('the seed example', () => {
  it('creates a client with exactly the seed fields, the token orgId and a Location', async () => {
    const { data, error, response } = await create({ name: 'string' });
    expect(error).toBeUndefined();
    expect(response.status).toBe(201);
    expect(Object.keys(data!.data).sort()).toEqual([...SEED_FIELDS, ...INTEGRATOR_FIELDS].sort());
    expect(data!.data).toMatchObject({ name: 'string', orgId, requirePoNumber: false, deletedAt: null, defaultRate: null, metadata: {} });
    expect(response.headers.get('Location')).toBe(`/clients/${data!.data.id}`);
    expect(response.headers.get('X-Request-Id')).toBeTruthy();
    expect(data!.data.createdAt).toBe(data!.data.updatedAt);
    expect(new Date(data!.data.createdAt).getTime()).toBeGreaterThan(Date.now() - 60_000);
  });

  it('stores the row in the token environment', async () => {
    const live = await server.tenant({ env: 'live' });
    const { data } = await live.api.POST('/clients', { body: { name: 'Live one' } });
    const row = await server.database.db
      .selectFrom('clients')
      .select(['env', 'org_id'])
      .where('id', '=', data!.data.id)
      .executeTakeFirstOrThrow();
    expect(row).toEqual({ env: 'live', org_id: live.token.orgId });
  });

  it('takes every field, trimmed, with codes upper-cased', async () => {
    const { data, response } = await create({
      name: '  Globex Corporation  ',
      contactName: ' Hank Scorpio ',
      email: ' hank@globex.test ',
      phone: '+1 555 0100',
      website: 'https://globex.test',
      currency: 'usd',
      notes: 'Pays on time.\nLikes hammocks.',
      billingAddress: '1 Globex Way\nCypress Creek',
      billingLine1: '1 Globex Way',
      billingLine2: 'Suite 100',
      billingCity: 'Cypress Creek',
      billingRegion: 'OR',
      billingPostalCode: '97000',
      billingCountry: 'us',
      taxNumber: 'US-123',
      defaultRate: '120.50',
      defaultPaymentTerms: 'Net 30',
      defaultTaxRate: 8.875,
      requirePoNumber: false,
      billingEmail: 'ap@globex.test',
    });
    expect(response.status).toBe(201);
    expect(data!.data).toMatchObject({
      name: 'Globex Corporation',
      contactName: 'Hank Scorpio',
      email: 'hank@globex.test',
      website: 'https://globex.test',
      currency: 'USD',
      notes: 'Pays on time.\nLikes hammocks.',
      billingCountry: 'US',
      defaultRate: '120.50',
      defaultTaxRate: '8.875',
      billingEmail: 'ap@globex.test',
    });
  });

  it('keeps e-mails and URLs as sent (no lower-casing, no trailing slash)', async () => {
    const { data } = await create({ name: 'Case', email: 'Jane.Doe@Example.COM', website: 'HTTPS://Example.com/Path?q=1' });
    expect(data!.data.email).toBe('Jane.Doe@Example.COM');
    expect(data!.data.website).toBe('HTTPS://Example.com/Path?q=1');
  });
});

describe('money is exact', () => {
  const rate = [
    [120.5, '120.50'],
    ['120.5', '120.50'],
    [120, '120.00'],
    ['120', '120.00'],
    [0.1, '0.10'],
    ['0.125', '0.125'],
    [0, '0.00'],
    ['  42.4200 ', '42.42'],
    ['999999999999.9999', '999999999999.9999'],
    [999999999999.9999, '999999999999.9999'],
    [123456789012.1234, '123456789012.1234'],
  ] as const;
  it.each(rate)('defaultRate %j gives %j', async (sent, returned) => {
    const { data, error } = await create({ name: 'Rate', defaultRate: sent });
    expect(error).toBeUndefined();
    expect(data!.data.defaultRate).toBe(returned);
  });

  const tax = [
    [8.875, '8.875'],
    [20, '20'],
    ['20.0', '20'],
    ['100', '100'],
    [100.0, '100'],
    [0, '0'],
    ['0.0001', '0.0001'],
  ] as const;
  it.each(tax)('defaultTaxRate %j gives %j', async (sent, returned) => {
    const { data, error } = await create({ name: 'Tax', defaultTaxRate: sent });
    expect(error).toBeUndefined();
    expect(data!.data.defaultTaxRate).toBe(returned);
  });

  const badRates: unknown[] = [
    '1,000',
    '1e3',
    '-5',
    -5,
    '-0',
    '1.23456',
    1.23456,
    '1000000000000',
    1e12,
    'NaN',
    'abc',
    '.5',
    '5.',
    '+5',
    '1 000',
    true,
    [],
    {},
  ];
  it.each(badRates.map((v) => [v]))('defaultRate %j is a 400 naming the field', async (sent) => {
    const before = await countRows();
    const { error, response } = await create({ name: 'Bad', defaultRate: sent });
    expect(response.status).toBe(400);
    expect(error!.error.code).toBe('validation_failed');
    expect(Object.keys(error!.error.fields!)).toEqual(['defaultRate']);
    expect(await countRows()).toBe(before);
  });

  it('refuses numbers in exponent notation and with too many digits, sent as raw JSON', async () => {
    for (const raw of ['1e3', '1E3', '12345678901234567890', '0.00001', '1.000000000000000001']) {
      const response = await checkedFetch(`${server.baseUrl}/clients`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${(await server.tenant({ plan: 'studio' })).token.token}`, 'Content-Type': 'application/json' },
        body: `{"name":"Raw","defaultRate":${raw}}`,
      });
      expect(response.status, raw).toBe(400);
      expect((await readJson(response)).error.fields).toHaveProperty('defaultRate');
    }
  });

  it('reads a JSON number as the decimal written, beyond what a float carries', async () => {
    const token = (await server.tenant({ plan: 'studio' })).token.token;
    const response = await checkedFetch(`${server.baseUrl}/clients`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      // As a float this is 100000000000.00002: the server must keep the decimal as written.
      body: '{"name":"Exact","defaultRate":100000000000.0001,"defaultTaxRate":33.3333}',
    });
    const body = await readJson(response);
    expect(response.status).toBe(201);
    expect(body.data.defaultRate).toBe('100000000000.0001');
    expect(body.data.defaultTaxRate).toBe('33.3333');
  });

  const badTax: unknown[] = [100.0001, '100.5', '101', -1, '8.87501', '1e1', ''];
  it.each(badTax.filter((v) => v !== '').map((v) => [v]))('defaultTaxRate %j is a 400 naming the field', async (sent) => {
    const { error, response } = await create({ name: 'Bad', defaultTaxRate: sent });
    expect(response.status).toBe(400);
    expect(Object.keys(error!.error.fields!)).toEqual(['defaultTaxRate']);
  });
});

describe('empty strings are null', () => {
  // Enum-valued fields take the literal "" (so that generated clients keep their literal unions),
  // not a string of white space, which is no code: a 400 naming the field.
  const ENUM_FIELDS = ['currency', 'billingCountry'];
  it.each(OPTIONAL_FIELDS.map((f) => [f]))('%s sent as "" (or "   " where it is not a code) comes back null', async (field) => {
    for (const blank of ENUM_FIELDS.includes(field) ? [''] : ['', '   ', '\t\n ']) {
      const { data, error } = await create({ name: 'Blank', [field]: blank });
      expect(error, `${field}=${JSON.stringify(blank)}`).toBeUndefined();
      expect(data!.data[field as keyof ClientResource]).toBeNull();
    }
  });

  it.each([...ENUM_FIELDS, 'requirePoNumber'].map((f) => [f]))('%s of only white space is a 400 naming the field', async (field) => {
    for (const blank of ['   ', '\t\n ']) {
      const { error, response } = await create({ name: 'Blank', [field]: blank });
      expect(response.status, `${field}=${JSON.stringify(blank)}`).toBe(400);
      expect(Object.keys(error!.error.fields!)).toEqual([field]);
    }
  });

  it('requirePoNumber "" or null is false', async () => {
    for (const value of ['', null]) {
      const { data } = await create({ name: 'Po', requirePoNumber: value });
      expect(data!.data.requirePoNumber).toBe(false);
    }
  });

  it('every optional field takes null', async () => {
    const body = Object.fromEntries(OPTIONAL_FIELDS.map((f) => [f, null]));
    const { data, error } = await create({ name: 'Nulls', ...body, requirePoNumber: null });
    expect(error).toBeUndefined();
    for (const field of OPTIONAL_FIELDS) expect(data!.data[field as keyof ClientResource]).toBeNull();
  });

  it.each([[''], ['   '], [null], [undefined]])('name %j is a 400 on name', async (name) => {
    const { error, response } = await create(name === undefined ? {} : { name });
    expect(response.status).toBe(400);
    expect(Object.keys(error!.error.fields!)).toEqual(['name']);
  });
});

describe('lengths count characters once trimmed', () => {
  it('name takes 200 characters, not 201', async () => {
    expect((await create({ name: 'x'.repeat(200) })).response.status).toBe(201);
    expect((await create({ name: `   ${'x'.repeat(200)}   ` })).response.status).toBe(201);
    const { error } = await create({ name: 'x'.repeat(201) });
    expect(Object.keys(error!.error.fields!)).toEqual(['name']);
  });

  it('counts characters, not UTF-16 units', async () => {
    const { data } = await create({ name: '😀'.repeat(200) });
    expect(data!.data.name).toBe('😀'.repeat(200));
  });

  it.each([
    ['contactName', 200],
    ['taxNumber', 200],
    ['billingPostalCode', 200],
    ['billingAddress', 1000],
    ['notes', 10000],
  ])('%s takes %i characters, not one more', async (field, max) => {
    expect((await create({ name: 'Len', [field]: 'y'.repeat(max) })).response.status).toBe(201);
    const { error } = await create({ name: 'Len', [field]: 'y'.repeat(max + 1) });
    expect(Object.keys(error!.error.fields!)).toEqual([field]);
  });
});

describe('bad input is a 400 naming the field, and writes nothing', () => {
  const cases: [string, Record<string, unknown>, string[]][] = [
    ['an unknown field', { name: 'A', nmae: 'typo' }, ['nmae']],
    ['orgId, which comes from the token', { name: 'A', orgId: '25b2c2d5-a7fc-47d0-89e4-8709a1560bfa' }, ['orgId']],
    ['id', { name: 'A', id: '497f6eca-6276-4993-bfeb-53cbbbba6f08' }, ['id']],
    ['a number for name', { name: 42 }, ['name']],
    ['an object for notes', { name: 'A', notes: { a: 1 } }, ['notes']],
    ['a string for requirePoNumber', { name: 'A', requirePoNumber: 'yes' }, ['requirePoNumber']],
    ['a bad e-mail', { name: 'A', email: 'not-an-email' }, ['email']],
    ['a bad billing e-mail', { name: 'A', billingEmail: 'a@b' }, ['billingEmail']],
    ['an ftp URL', { name: 'A', website: 'ftp://files.example.com' }, ['website']],
    ['a relative URL', { name: 'A', website: 'example.com' }, ['website']],
    ['a made-up currency', { name: 'A', currency: 'ABC' }, ['currency']],
    ['a withdrawn currency', { name: 'A', currency: 'HRK' }, ['currency']],
    ['a mixed-case currency', { name: 'A', currency: 'Usd' }, ['currency']],
    ['a made-up country', { name: 'A', billingCountry: 'ZZ' }, ['billingCountry']],
    ['an alpha-3 country', { name: 'A', billingCountry: 'USA' }, ['billingCountry']],
    ['several at once', { name: '', email: 'x', currency: 'XYZ', extra: 1 }, ['currency', 'email', 'extra', 'name']],
    // PostgreSQL text cannot hold U+0000: refused by the spec's patterns, never a 500 (found by the fuzzer).
    ['a NUL character in text', { name: 'A\u0000B', notes: 'x\u0000', website: 'https://a.test/\u0000' }, ['name', 'notes', 'website']],
    // Not a character at all: refused rather than stored as U+FFFD (PGlite even failed on it; found by the fuzzer).
    [
      'an unpaired surrogate in text',
      { name: '0 \udfff', billingAddress: '\ud800x', contactName: '😀\ud83d' },
      ['billingAddress', 'contactName', 'name'],
    ],
  ];
  it.each(cases)('%s', async (_label, body, fields) => {
    const before = await countRows();
    const { error, response } = await create(body);
    expect(response.status).toBe(400);
    expect(error!.error.code).toBe('validation_failed');
    expect(Object.keys(error!.error.fields!).sort()).toEqual(fields);
    expect(error!.error.message).toMatch(/invalid/);
    expect(await countRows()).toBe(before);
  });

  async function raw(body: string, contentType = 'application/json') {
    const token = (await server.tenant({ plan: 'studio' })).token.token;
    const response = await checkedFetch(`${server.baseUrl}/clients`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': contentType },
      body,
    });
    return { status: response.status, body: await readJson(response), headers: response.headers };
  }

  it.each([['{bad json'], ['{"name":"a",}'], ['{"name":"a","name":"b"'], ["{'name':'a'}"]])('malformed JSON %s', async (text) => {
    const { status, body } = await raw(text);
    expect(status).toBe(400);
    expect(body.error).toMatchObject({ code: 'validation_failed', fields: { body: 'is not valid JSON' } });
  });

  it.each([['[]'], ['"a string"'], ['42'], ['null'], ['true']])('a non-object body %s', async (text) => {
    const { status, body } = await raw(text);
    expect(status).toBe(400);
    expect(body.error.code).toBe('validation_failed');
    expect(Object.keys(body.error.fields!)).toEqual(['body']);
  });

  it('an empty body', async () => {
    const { status, body } = await raw('');
    expect(status).toBe(400);
    expect(Object.keys(body.error.fields!)).toEqual(['body']);
  });

  it('a body that is not JSON is 415', async () => {
    const { status, body } = await raw('name=Acme', 'application/x-www-form-urlencoded');
    expect(status).toBe(415);
    expect(body.error.code).toBe('unsupported_media_type');
  });

  it('a body over 256 KiB is 413', async () => {
    const { status, body } = await raw(JSON.stringify({ name: 'Big', notes: 'x'.repeat(300_000) }));
    expect(status).toBe(413);
    expect(body.error.code).toBe('payload_too_large');
  });

  it('a malformed Idempotency-Key is a 400 naming the header', async () => {
    const { error, response } = await create({ name: 'A' }, { headers: { 'Idempotency-Key': 'string' } });
    expect(response.status).toBe(400);
    expect(error!.error.fields).toEqual({ 'Idempotency-Key': 'must be a UUID or a ULID' });
  });
});

describe('failures inside the server', () => {
  it('are a 500 with no stack, SQL or secret, and a request id', async () => {
    const failing = await startTestServer({
      handlers: {
        createClient: async () => {
          throw new Error('insert into clients failed: password=hunter2 at /work/main/server/x.ts:1');
        },
      },
    });
    try {
      const { api: failingApi } = await failing.tenant();
      const { error, response } = await failingApi.POST('/clients', { body: { name: 'Boom' } });
      expect(response.status).toBe(500);
      expect(error!.error.code).toBe('internal_error');
      const text = JSON.stringify(error);
      expect(text).not.toMatch(/insert|hunter2|\.ts|at /);
      expect(response.headers.get('X-Request-Id')).toBeTruthy();
    } finally {
      await failing.close();
    }
  });
});
