import { expect, it } from 'vitest';
import { formatMoney, formatPercentage } from '../../server/clients/decimal.js';

it.each([
  ['120.5000', '120.50'],
  ['0.1000', '0.10'],
  ['0.1250', '0.125'],
  ['0.0000', '0.00'],
  ['999999999999.9999', '999999999999.9999'],
  ['7', '7.00'],
  ['007.5', '7.50'],
])('money %s is %s', (stored, wire) => expect(formatMoney(stored)).toBe(wire));

it.each([
  ['20.0000', '20'],
  ['8.8750', '8.875'],
  ['100.0000', '100'],
  ['0.0000', '0'],
  ['0.0001', '0.0001'],
])('percentage %s is %s', (stored, wire) => expect(formatPercentage(stored)).toBe(wire));
