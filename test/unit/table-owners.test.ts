/**
 * One owner per table (docs/architecture.md): a table's rows are written only from its resource's
 * own queries file; other concerns offer pieces that the owner's statement includes. This reads
 * every module of server/ (migrations aside, which create the tables) for the statements that
 * write, Kysely's and SQL's alike, and fails on a write from anywhere else, or an insert by a
 * table name that is not written out.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../..');

/**
 * Every table of server/db/schema.ts, and the files that may write it (rate_limits: the library's
 * own store). One file each, but for webhook_endpoints: the API writes an endpoint's configuration,
 * the delivery worker its delivery state (its place in the feed, failures, the circuit).
 */
const OWNERS: Record<string, readonly string[] | null> = {
  clients: ['server/clients/clients.queries.ts'],
  contacts: ['server/contacts/contacts.queries.ts'],
  api_tokens: ['server/tokens/tokens.queries.ts'],
  organisations: ['server/orgs/orgs.queries.ts'],
  idempotency_keys: ['server/idempotency/idempotency.queries.ts'],
  rate_limits: null,
  events: ['server/events/events.queries.ts'],
  webhook_endpoints: ['server/webhook-endpoints/endpoints.queries.ts', 'server/webhook-delivery/endpoint-state.queries.ts'],
  webhook_deliveries: ['server/webhook-delivery/deliveries.queries.ts'],
  webhook_attempts: ['server/webhook-delivery/deliveries.queries.ts'],
  client_search: ['server/clients/client-search.queries.ts'],
  client_search_position: ['server/clients/client-search.queries.ts'],
};

const WRITES = [
  /\b(?:insertInto|updateTable|deleteFrom|mergeInto)\(\s*'([a-z_]+)'/g,
  /\binsert\s+into\s+([a-z_]+)/gi,
  /\bupdate\s+([a-z_]+)\s+set\b/gi,
  /\bdelete\s+from\s+([a-z_]+)/gi,
];
/** A write whose table is not written out, or a row poured into whatever table it names. */
const BY_NAME = [/\b(?:insertInto|updateTable|deleteFrom|mergeInto)\(\s*(?!')/g, /json_populate_record/g, /sql\.table\(/g];

function writesIn(text: string): { table: string | undefined; at: number }[] {
  const found: { table: string | undefined; at: number }[] = [];
  for (const pattern of WRITES) for (const match of text.matchAll(pattern)) found.push({ table: match[1]!.toLowerCase(), at: match.index });
  for (const pattern of BY_NAME) for (const match of text.matchAll(pattern)) found.push({ table: undefined, at: match.index });
  return found;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'migrations' ? [] : sources(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

describe('the scanner', () => {
  it('finds writes of every kind, and writes by a table name not written out', () => {
    const text = `db.insertInto('clients'); trx.updateTable('api_tokens'); sql\`delete from idempotency_keys where\`;
      sql\`update organisations set plan = 1\`; db.insertInto(table); sql\`select * from json_populate_record(null)\``;
    expect(writesIn(text).map((w) => w.table)).toEqual([
      'clients',
      'api_tokens',
      'organisations',
      'idempotency_keys',
      undefined,
      undefined,
    ]);
    expect(writesIn("select * from clients; on conflict do update set fingerprint = 1; db.selectFrom('clients')")).toEqual([]);
  });
});

it('every write to a table is in its owner’s queries file, and names its table', () => {
  const strays: string[] = [];
  for (const file of sources(join(root, 'server'))) {
    const path = relative(root, file);
    const text = readFileSync(file, 'utf8');
    for (const { table, at } of writesIn(text)) {
      const line = text.slice(0, at).split('\n').length;
      if (table === undefined) strays.push(`${path}:${line} writes a table it does not name`);
      else if (!(table in OWNERS)) strays.push(`${path}:${line} writes ${table}, which server/db/schema.ts does not have`);
      else if (!OWNERS[table]?.includes(path))
        strays.push(`${path}:${line} writes ${table}, owned by ${OWNERS[table]?.join(' and ') ?? 'rate-limiter-flexible'}`);
    }
  }
  expect(strays).toEqual([]);
});
