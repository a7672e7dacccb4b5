/**
 * RFC 3339 date-times past their shape. A pattern can check each part's range but not that the
 * day exists in its month: 2026-02-30 passes the spec's pattern (and the validator's fast
 * `date-time` format), and then fails in PostgreSQL (a 500) or rolls over in a JS Date (to
 * 2026-03-02). JSON Schema's `date-time` refuses it, so the server must too.
 */

const DATE = /^(\d{4})-(\d{2})-(\d{2})/;

/** Whether the date part of an RFC 3339 date-time (already checked by the spec's pattern) is a day of the calendar. */
export function isCalendarDate(dateTime: string): boolean {
  const match = DATE.exec(dateTime);
  if (!match) return false;
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1];
  return days !== undefined && day >= 1 && day <= days;
}
