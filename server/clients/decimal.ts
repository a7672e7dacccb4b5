/**
 * Decimal strings as PostgreSQL `numeric` returns them ("120.5000"), formatted for the wire.
 * Pure string work: money never passes through a binary float.
 */
function split(value: string): [string, string] {
  const [whole = '0', fraction = ''] = value.split('.');
  return [whole.replace(/^0+(?=\d)/, ''), fraction.replace(/0+$/, '')];
}

/** Money: at least 2 decimal places ("120.50", "0.125"). */
export function formatMoney(value: string): string {
  const [whole, fraction] = split(value);
  return `${whole}.${fraction.padEnd(2, '0')}`;
}

/** A percentage in its shortest form ("20", "8.875"). */
export function formatPercentage(value: string): string {
  const [whole, fraction] = split(value);
  return fraction ? `${whole}.${fraction}` : whole;
}
