/**
 * `npm run bench:create-cost`: what each part of a create costs PostgreSQL, measured with pgbench
 * on the server's own statements (their text as server/clients/clients.queries.ts compiles it):
 *   - the client's insert alone, as migrated (no trigram index on `clients` since issue 25's first
 *     lever: `q` is served by `client_search`, kept off the request path), and with the four trigram
 *     GIN indexes the table had before (name, contactName, email, billingEmail), then 3, 2 and 1 of
 *     them: what each index's entries cost, and what moving them off the request path saved;
 *   - the one statement of an idempotent create (claim the key, insert, store the response), as
 *     migrated and with the four GIN indexes: what the idempotency row costs;
 *   - the event's insert alone (every create's statement includes it): what the outbox costs, with
 *     and without `events_txid_idx` (the search indexer's way through the feed, the lever's one new
 *     cost on the request path);
 *   - the search indexer's rate on those creates, off the request path, its trigram indexes taking
 *     each batch entry by entry (four indexes, fastupdate off, before), in bulk (issue 25's second
 *     lever), and in bulk into one index over the four fields joined (as migrated: the third).
 * Each variant runs `BENCH_ROUNDS` times (alternating), `BENCH_SECONDS` each, with pgbench's
 * prepared protocol (as the server's named statements), `BENCH_CLIENTS` connections; the median
 * transactions per second is printed, and each variant's cost per create in ms of one connection.
 * Needs `pgbench` (Debian: postgresql-client). Creates a scratch database on BENCH_ADMIN_URL.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Kysely } from 'kysely';
import pg from 'pg';
import '../server/clients/clients.queries.js';
import '../server/events/events.queries.js';
import { openDatabase } from '../server/db/database.js';
import { migrateOrThrow } from '../server/db/migrate.js';
import { preparedStatements } from '../server/db/prepared.js';
import { mintTokenForOrganisation } from '../server/tokens/tokens.service.js';
import { indexUntilCaughtUp } from '../server/clients/search-indexer.js';
import * as bulkTrigrams from '../server/db/migrations/2026_12_05_0002_client_search_bulk_trigrams.js';
import * as oneTrigramIndex from '../server/db/migrations/2026_12_06_0001_client_search_one_trigram_index.js';

const adminUrl = process.env.BENCH_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const seconds = Number(process.env.BENCH_SECONDS ?? 8);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const connections = Number(process.env.BENCH_CLIENTS ?? 8);
/** Keyed creates made after each variant's truncation, before its statistics are taken. */
const SEED_CREATES = 2000;
/** Events per statement of the search indexer's run (SEARCH_INDEX_BATCH's default). */
const INDEX_BATCH = Number(process.env.BENCH_INDEX_BATCH ?? 500);
const GIN = ['clients_name_trgm_idx', 'clients_contact_name_trgm_idx', 'clients_email_trgm_idx', 'clients_billing_email_trgm_idx'];
const GIN_COLUMNS: Record<string, string> = {
  clients_name_trgm_idx: 'name',
  clients_contact_name_trgm_idx: 'contact_name',
  clients_email_trgm_idx: 'email',
  clients_billing_email_trgm_idx: 'billing_email',
};
/** The trigram indexes `clients` had before 2026_12_04_0001_client_search (as 2026_11_28_0005 and 2026_11_29_0001 made them). */
const GIN_DEFINITION = (index: string) =>
  `create index ${index} on clients using gin (${GIN_COLUMNS[index]} gin_trgm_ops) with (fastupdate = off)`;
/** The feed's index across tenants that the search indexer reads (2026_12_04_0001_client_search). */
const EVENTS_TXID_INDEX = 'create index if not exists events_txid_idx on events (txid, seq)';

/** A client id per transaction, from its two random variables. */
const CLIENT_ID = `md5((:n)::text || '-' || (:k)::text)::uuid`;

/** Each parameter as a pgbench expression: a fresh key and id per transaction, realistic searched text. */
function expressionOf(parameter: string, orgId: string): string {
  const values: Record<string, string> = {
    // The same id in the client's row and its event's object (pgbench has no uuid variable, and two
    // gen_random_uuid() calls would differ), so the search indexer finds each event's client.
    id: CLIENT_ID,
    org_id: `'${orgId}'`,
    keyOrgId: `'${orgId}'`,
    env: `'test'`,
    keyEnv: `'test'`,
    name: `'Globex Corporation ' || (:n)::text`,
    contact_name: `'Hank Scorpio ' || (:n)::text`,
    email: `'hank' || (:n)::text || '@globex.test'`,
    billing_email: `'billing' || (:n)::text || '@globex.test'`,
    require_po_number: 'false',
    metadata: `'{}'`,
    created_at: 'now()',
    updated_at: 'now()',
    keyNow: 'now()',
    keyExpiresAt: `(now() + interval '1 day')`,
    key: `(:k)::text`,
    // pgbench reads a colon inside a literal as a variable: chr(58) spells the same lock name.
    keyLock: `'idempotency' || chr(58) || '${orgId}' || chr(58) || 'test' || chr(58) || (:k)::text`,
    fingerprint: `md5((:k)::text)`,
    responseStatus: '201',
    responseBody: `json_build_object('data', json_build_object('name', 'Globex Corporation'))::text`,
    responseHeaders: `json_build_object('Location', '/clients/x')::text`,
    eventOrgId: `'${orgId}'`,
    eventEnv: `'test'`,
    eventId: 'gen_random_uuid()',
    eventType: `'client.created'`,
    eventCreatedAt: 'now()',
    // About the size of a real client.created event.
    eventData: `json_build_object('object', json_build_object('id', ${CLIENT_ID}, 'name', 'Globex Corporation ' || (:n)::text, 'email', 'hank@globex.test', 'notes', repeat('x', 600)))::text`,
    eventObjectId: CLIENT_ID,
  };
  return `(${values[parameter] ?? 'NULL'})`;
}

function pgbenchScript(statement: string, orgId: string): string {
  const { text, parameters } = preparedStatements.get(statement)!;
  // Highest first, so that $1 does not eat the start of $10.
  let body = text;
  for (let i = parameters.length; i >= 1; i--) body = body.replaceAll(`$${i}`, expressionOf(parameters[i - 1]!, orgId));
  return `\\set n random(1, 1000000000)\n\\set k random(1, 9000000000000000)\n${body.replace(/\s+/g, ' ').trim()};\n`;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

const name = `bench_create_cost_${process.pid}`;
const admin = new pg.Client({ connectionString: adminUrl });
await admin.connect();
await admin.query(`create database ${name}`);
const url = new URL(adminUrl);
url.pathname = `/${name}`;
const dir = mkdtempSync(join(tmpdir(), 'create-cost-'));
try {
  const handle = await openDatabase({ databaseUrl: url.toString(), poolSize: 2 });
  await migrateOrThrow(handle.db);
  const { orgId } = await mintTokenForOrganisation(handle.db, { orgName: 'Bench', plan: 'studio' });
  await handle.close();
  const sql = new pg.Client({ connectionString: url.toString() });
  sql.on('error', () => {});
  await sql.connect();

  const scripts = { insert: join(dir, 'insert.sql'), keyed: join(dir, 'keyed.sql'), event: join(dir, 'event.sql') };
  writeFileSync(scripts.insert, pgbenchScript('insert_client', orgId));
  writeFileSync(scripts.keyed, pgbenchScript('insert_client_with_key', orgId));
  writeFileSync(scripts.event, pgbenchScript('insert_event', orgId));

  /** Keeps exactly the first `count` trigram indexes on clients, and events_txid_idx or not. */
  async function keepGin(count: number, eventsTxidIndex = true) {
    for (const [i, index] of GIN.entries()) {
      await sql.query(`drop index if exists ${index}`);
      if (i < count) await sql.query(GIN_DEFINITION(index));
    }
    await sql.query(eventsTxidIndex ? EVENTS_TXID_INDEX : 'drop index if exists events_txid_idx');
    await sql.query('truncate clients cascade');
    await sql.query('truncate idempotency_keys');
    await sql.query('truncate events cascade');
    // Statistics of tables that hold rows, as a running service's have: pgbench's sessions prepare
    // each statement, and a generic plan made on tables analysed empty keeps it for the session.
    // That plan probed idempotency_keys by a sequential scan (cheapest on an empty table), whose
    // cost then grew with every key the run inserted: the keyed create measured a third of the
    // insert's throughput, where with the primary key's probe it is about seven tenths.
    execFileSync(
      'pgbench',
      [
        '-n',
        '-M',
        'prepared',
        '-c',
        String(connections),
        '-j',
        '2',
        '-t',
        String(SEED_CREATES / connections),
        '-f',
        scripts.keyed,
        url.toString(),
      ],
      {
        stdio: 'ignore',
      },
    );
    await sql.query('vacuum analyze clients, idempotency_keys, events');
  }

  const variants = [
    { label: 'insert, as migrated (no GIN index)', gin: 0, script: scripts.insert },
    { label: 'insert, 4 GIN indexes (before)', gin: 4, script: scripts.insert },
    { label: 'insert, 3 GIN (no billing_email)', gin: 3, script: scripts.insert },
    { label: 'insert, 2 GIN (name, contact_name)', gin: 2, script: scripts.insert },
    { label: 'insert, 1 GIN (name)', gin: 1, script: scripts.insert },
    { label: 'insert + idempotency key, as migrated', gin: 0, script: scripts.keyed },
    { label: 'insert + idempotency key, 4 GIN (before)', gin: 4, script: scripts.keyed },
    { label: 'the event alone, as migrated', gin: 0, script: scripts.event },
    { label: 'the event alone, without events_txid_idx', gin: 0, script: scripts.event, eventsTxidIndex: false },
  ];
  const tps = new Map<string, number[]>(variants.map((v) => [v.label, []]));
  for (let round = 0; round < rounds; round++) {
    for (const variant of variants) {
      await keepGin(variant.gin, variant.eventsTxidIndex ?? true);
      let out: string;
      try {
        out = execFileSync(
          'pgbench',
          ['-n', '-M', 'prepared', '-c', String(connections), '-j', '2', '-T', String(seconds), '-f', variant.script, url.toString()],
          { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
        );
      } catch (error) {
        throw new Error(`pgbench failed on ${variant.label}: ${(error as { stderr?: string }).stderr ?? error}`);
      }
      const match = /tps = ([\d.]+)/.exec(out);
      if (!match) throw new Error(`pgbench printed no tps:\n${out}`);
      tps.get(variant.label)!.push(Number(match[1]));
      process.stderr.write(`round ${round + 1}: ${variant.label}: ${match[1]} tps\n`);
    }
  }
  // The search indexer's own rate, off the request path: the creates of one pgbench run (clients
  // and their events) indexed from scratch, BATCH events per statement, one connection.
  await keepGin(0);
  execFileSync(
    'pgbench',
    ['-n', '-M', 'prepared', '-c', String(connections), '-j', '2', '-T', String(seconds), '-f', scripts.insert, url.toString()],
    {
      stdio: 'ignore',
    },
  );
  // Each way the search table's trigram indexes have taken a batch, from scratch each time,
  // alternating, laid out by the migrations that made them: four indexes (one a field) taking one
  // entry at a time (fastupdate off, as 2026_12_04_0001 made them); the four in bulk (pending lists
  // merged by each batch: 2026_12_05_0002, issue 25's second lever); one index over the four fields
  // joined, in bulk, and a b-tree for the exact email (as migrated: 2026_12_06_0001, the third).
  const indexing = await openDatabase({ databaseUrl: url.toString(), poolSize: 1 });
  // A migration takes a database of any schema.
  const migrating = indexing.db as Kysely<unknown>;
  const LAYOUTS = {
    'four indexes, entry by entry': async () => {
      await oneTrigramIndex.down(migrating);
      await bulkTrigrams.down(migrating);
    },
    'four indexes, in bulk': () => oneTrigramIndex.down(migrating),
    'one index, in bulk (as migrated)': () => oneTrigramIndex.up(migrating),
  };
  type Layout = keyof typeof LAYOUTS;
  const layouts = Object.keys(LAYOUTS) as Layout[];
  const indexRuns = new Map<Layout, number[]>(layouts.map((layout) => [layout, []]));
  let indexedEvents = 0;
  for (let round = 0; round < rounds; round++) {
    for (const layout of layouts) {
      await sql.query(`update client_search_position set txid = '0'::xid8, seq = 0`);
      await sql.query('truncate client_search');
      await LAYOUTS[layout]();
      await sql.query('vacuum analyze clients, events, client_search');
      const indexStarted = performance.now();
      indexedEvents = await indexUntilCaughtUp(indexing.db, INDEX_BATCH);
      indexRuns.get(layout)!.push((performance.now() - indexStarted) / 1000);
      const { rows } = await sql.query('select count(*)::int as n from client_search');
      if (rows[0].n !== indexedEvents) throw new Error(`indexed ${indexedEvents} events but client_search has ${rows[0].n} rows`);
    }
  }
  await indexing.close();
  await sql.end();

  const base = median(tps.get('insert, as migrated (no GIN index)')!);
  console.log(`\npgbench, ${connections} connections, ${seconds} s × ${rounds} alternating rounds, -M prepared; medians`);
  console.log(`GIN indexes (before): ${GIN.map((i) => GIN_COLUMNS[i]).join(', ')} (fastupdate off, as they were migrated)\n`);
  console.log('| variant | tps | ms per create (one connection) | vs the insert as migrated |');
  console.log('|---|---:|---:|---:|');
  for (const { label } of variants) {
    const value = median(tps.get(label)!);
    console.log(`| ${label} | ${value.toFixed(0)} | ${((1000 * connections) / value).toFixed(2)} | ${(value / base).toFixed(2)} |`);
  }
  const ins4 = median(tps.get('insert, 4 GIN indexes (before)')!);
  const perGin = (base - ins4) / 4;
  console.log(
    `\nEach trigram index cost about ${perGin.toFixed(0)} tps of ${base.toFixed(0)} (${((100 * perGin) / base).toFixed(1)}%) on average; ` +
      `without the four the insert runs ${(base / ins4).toFixed(2)}× as fast.`,
  );
  const key = median(tps.get('insert + idempotency key, as migrated')!);
  const key4 = median(tps.get('insert + idempotency key, 4 GIN (before)')!);
  console.log(
    `the idempotency row and claim: ${(((base - key) / base) * 100).toFixed(1)}% of the insert's throughput as migrated; ` +
      `the keyed create runs ${(key / key4).toFixed(2)}× as fast as with the four GIN indexes.`,
  );
  const event = median(tps.get('the event alone, as migrated')!);
  const eventBare = median(tps.get('the event alone, without events_txid_idx')!);
  console.log(
    `the event alone: ${((1000 * connections) / event).toFixed(2)} ms per create of one connection (every insert above includes it); ` +
      `without events_txid_idx ${((1000 * connections) / eventBare).toFixed(2)} ms.`,
  );
  const indexedIn = (layout: Layout) => {
    const seconds = median(indexRuns.get(layout)!);
    return `${layout} ${seconds.toFixed(2)} s, ${Math.round(indexedEvents / seconds)} events/s, ${((1e6 * seconds) / indexedEvents).toFixed(0)} µs per client`;
  };
  console.log(
    `the search indexer (off the request path; ${indexedEvents} creates indexed from scratch, ${INDEX_BATCH} events per statement, ` +
      `one connection, median of ${rounds}): its trigram indexes ${layouts.map(indexedIn).join('; ')}.`,
  );
} finally {
  if (!process.env.BENCH_KEEP) rmSync(dir, { recursive: true, force: true });
  await admin.query(`drop database if exists ${name} with (force)`);
  await admin.end();
}
