/** Ids: every resource's id is a UUID (the columns' type), in either case. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Whether `id` can name a row at all. A path id that is not a UUID names nothing: it is answered
 * 404 like an unknown one, and never reaches the database, which would refuse the comparison.
 */
export function isUuid(id: string): boolean {
  return UUID.test(id);
}
