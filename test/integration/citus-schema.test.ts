/**
 * docs/scaling.md's Citus section against the schema the migrations build: every table with an
 * `org_id` column is the one the doc distributes by `org_id`, and every primary or unique key of
 * such a table includes `org_id`, except exactly the keys the doc lists (with what each needs).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { root } from '../support/processes.js';

const doc = readFileSync(join(root, 'docs/scaling.md'), 'utf8');

/** The rows of the markdown table that follows `heading`: their cells, backticks removed. */
function tableAfter(heading: string): string[][] {
  const start = doc.indexOf(heading);
  if (start < 0) throw new Error(`docs/scaling.md has no "${heading}"`);
  const lines = doc.slice(start).split('\n').slice(1);
  const rows = lines.slice(lines.findIndex((line) => line.startsWith('|')));
  return rows
    .slice(
      0,
      rows.findIndex((line) => !line.startsWith('|')),
    )
    .slice(2) // header and separator
    .map((line) =>
      line
        .split('|')
        .slice(1, -1)
        .map((cell) => cell.trim().replaceAll('`', '')),
    );
}

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(() => database?.close());

it('distributes by org_id exactly the tables that have an org_id column', async () => {
  const { rows } = await sql<{ table_name: string }>`
    select table_name from information_schema.columns
    where table_schema = 'public' and column_name = 'org_id' order by table_name`.execute(database.db);
  const distributed = tableAfter('### Tables')
    .filter(([, placement]) => placement === 'distributed by org_id')
    .map(([table]) => table)
    .sort();
  expect(distributed).toEqual(rows.map((row) => row.table_name));
});

it('lists every primary or unique key of a tenant table that lacks org_id, and no other', async () => {
  const { rows } = await sql<{ table_name: string; index_name: string }>`
    select c.relname as table_name, i.relname as index_name
    from pg_index x
    join pg_class c on c.oid = x.indrelid
    join pg_class i on i.oid = x.indexrelid
    join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'public' and x.indisunique
      and exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attname = 'org_id')
      and not exists (
        select 1 from pg_attribute a
        where a.attrelid = c.oid and a.attname = 'org_id' and a.attnum = any (x.indkey::int2[]))
    order by 1, 2`.execute(database.db);
  const listed = tableAfter('### Keys without org_id')
    .map(([table, key]) => `${table}.${key}`)
    .sort();
  expect(listed).toEqual(rows.map((row) => `${row.table_name}.${row.index_name}`));
});
