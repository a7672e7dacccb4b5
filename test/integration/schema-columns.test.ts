/**
 * A table's columns are written once, in server/db/schema.ts (CLIENT_COLUMNS, CONTACT_COLUMNS), its
 * Kysely type derived from them, and the clients' queries take their column list and their casts
 * from there. That is only safe if the list is the table:
 * after every migration, on both databases, the same columns in the same order, each with the type
 * and nullability the list gives it. A migration that adds, drops or retypes a column without
 * the list fails here.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ABSENT_CLIENT_VALUES } from '../../server/clients/clients.queries.js';
import { CLIENT_COLUMNS, CONTACT_COLUMNS } from '../../server/db/schema.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(() => database?.close());

/** format_type's spelling of the short names CLIENT_COLUMNS uses. */
function short(type: string): string {
  return type.replace(/^timestamp with time zone$/, 'timestamptz').replace(/^character\(/, 'char(');
}

it.each([
  ['clients', CLIENT_COLUMNS],
  ['contacts', CONTACT_COLUMNS],
])('the columns written in schema.ts are the %s table: every column, in order, with its type and nullability', async (table, columns) => {
  const { rows } = await sql<{ name: string; type: string; not_null: boolean }>`
    select attname as name, format_type(atttypid, atttypmod) as type, attnotnull as not_null from pg_attribute
    where attrelid = ${table}::regclass and attnum > 0 and not attisdropped
    order by attnum`.execute(database.db);
  expect(rows.map((row) => [row.name, `${short(row.type)}${row.not_null ? '' : ' null'}`])).toEqual(Object.entries(columns));
});

it('a new client leaves null exactly the nullable columns it may omit', () => {
  const nullable = Object.entries(CLIENT_COLUMNS)
    .filter(([, type]) => type.endsWith(' null'))
    .map(([column]) => column);
  expect(Object.keys(ABSENT_CLIENT_VALUES).sort()).toEqual(nullable.filter((column) => column !== 'deleted_at').sort());
  expect(Object.values(ABSENT_CLIENT_VALUES).every((value) => value === null)).toBe(true);
});
