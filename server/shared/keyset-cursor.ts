/**
 * The opaque cursor of a list walked newest first by keyset: the last row's time, to the
 * microsecond as PostgreSQL keeps it, and its id, as base64url JSON. A cursor built from a JS Date
 * (milliseconds) would skip or repeat rows made within the same millisecond.
 */
import { type RawBuilder, sql } from 'kysely';
import { isUuid } from './ids.js';

/** A place in a list: a row's time (`YYYY-MM-DDTHH:MM:SS.ffffffZ`) and its id (a UUID). */
export interface KeysetPosition {
  at: string;
  id: string;
}

/** A row's position as a list selects it (as `position`): its time in UTC to the microsecond, the text a cursor carries. */
export function positionOf(timeColumn: string): RawBuilder<string> {
  return sql<string>`to_char(${sql.ref(timeColumn)} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
}

/** The rows after `position` in newest-first order: `(time, id)` below it. */
export function afterPosition(position: KeysetPosition, timeColumn: string, idColumn: string): RawBuilder<boolean> {
  return sql<boolean>`(${sql.ref(timeColumn)}, ${sql.ref(idColumn)}) < (${position.at}::timestamptz, ${position.id}::uuid)`;
}

const POSITION_TIME = /^(?!0000)\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

export function encodeKeyset(position: KeysetPosition): string {
  return Buffer.from(JSON.stringify([position.at, position.id])).toString('base64url');
}

/** A cursor this API did not give out throws `refusal()` (a 400 naming the parameter), never a database error. */
export function decodeKeyset(cursor: string, refusal: () => Error): KeysetPosition {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw refusal();
  }
  if (Array.isArray(value) && value.length === 2) {
    const [at, id] = value as unknown[];
    if (typeof at === 'string' && typeof id === 'string' && isRealInstant(at) && isUuid(id)) return { at, id };
  }
  throw refusal();
}

/** The shape alone lets 2026-02-30 through, which PostgreSQL would refuse. */
function isRealInstant(text: string): boolean {
  if (!POSITION_TIME.test(text)) return false;
  const time = Date.parse(text);
  return !Number.isNaN(time) && new Date(time).toISOString().slice(0, 23) === text.slice(0, 23);
}

/** A row of a list read by keyset: its id, and its `position`, its time as KeysetPosition's `at`. */
export interface KeysetRow {
  id: string;
  position: string;
}

export interface KeysetPage<Item> {
  data: Item[];
  /** The cursor of the page after this one; null on the last page. */
  nextCursor: string | null;
}

/**
 * The one "limit + 1" paging: a list reads one row more than its page, which tells whether another
 * page follows without counting. The page's rows, and whether more follow.
 */
export function pageOf<Row>(rows: Row[], limit: number): { page: Row[]; more: boolean } {
  return { page: rows.slice(0, limit), more: rows.length > limit };
}

/** A page of `limit` items from rows read with `limit + 1` (pageOf); the next page starts after this page's last row. */
export function keysetPage<Row extends KeysetRow, Item>(rows: Row[], limit: number, toItem: (row: Row) => Item): KeysetPage<Item> {
  const { page, more } = pageOf(rows, limit);
  const last = page[page.length - 1];
  return {
    data: page.map(toItem),
    nextCursor: more && last ? encodeKeyset({ at: last.position, id: last.id }) : null,
  };
}
