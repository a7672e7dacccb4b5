/**
 * Ids: every resource's id is a UUID (the columns' type), and the API writes it one way only:
 * lower-case hex in 8-4-4-4-12 groups, as `id` fields show it.
 */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Whether `id` can name a row at all: only the canonical spelling. PostgreSQL would also read
 * upper case, braces, no dashes (and refuse `urn:uuid:`, a 500), so any other spelling would name
 * the same row under a second URL, or fail in the database. An id in another spelling names
 * nothing: it is answered 404 like an unknown one, and never reaches the database.
 */
export function isUuid(id: string): boolean {
  return UUID.test(id);
}
