/**
 * JSON Schema's `multipleOf` on the decimal a JSON number is written as: JSON.stringify writes a
 * number as String(n), the shortest decimal that reads back as the same double, and that text is
 * what the server reads. Whole-number arithmetic on those decimals is exact where binary floating
 * point is not (0.3 / 0.0001 is 2999.9999999999995).
 */
function decimalOf(n: number): { digits: bigint; scale: number } {
  const [mantissa = '0', exponent = '0'] = String(n).toLowerCase().split('e');
  const [whole = '0', fraction = ''] = mantissa.split('.');
  const scale = fraction.length - Number(exponent);
  const digits = BigInt(whole + fraction);
  return scale >= 0 ? { digits, scale } : { digits: digits * 10n ** BigInt(-scale), scale: 0 };
}

export function isDecimalMultipleOf(value: number, divisor: number): boolean {
  if (!Number.isFinite(value) || !Number.isFinite(divisor) || divisor <= 0) return false;
  const a = decimalOf(value);
  const b = decimalOf(divisor);
  const scale = Math.max(a.scale, b.scale);
  const scaledValue = a.digits * 10n ** BigInt(scale - a.scale);
  const scaledDivisor = b.digits * 10n ** BigInt(scale - b.scale);
  return scaledValue % scaledDivisor === 0n;
}
