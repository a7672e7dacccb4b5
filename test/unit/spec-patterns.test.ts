/**
 * The spec's patterns match in linear time, and the rewrite that made them so changed no
 * pattern's language.
 *
 * The body patterns used to be `^\s*(X)?\s*$`: on a long run of white space followed by a
 * character they refuse, the leading `\s*` and the trailing one share the run in every possible
 * way, and the validator took a minute over one 256 KiB body. They are now `^\s*(?:X\s*)?$`, where
 * X starts and ends with a character that is not white space: the leading run can only be the
 * leading `\s*`'s, and the trailing one only the inner `\s*`'s. For X absent, both read `\s*`; for
 * X present, both read `\s* X \s*`; a lookahead at X's start (`(?=\S{3,254}\s*$)`) sees the same
 * rest of the string in both. The old patterns are kept here only, to prove the two equal on
 * strings built from their alphabets, white space of every kind, NUL and surrogates, compiled
 * with the `u` flag as Ajv compiles them.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import spec from '../../generated/openapi.json' with { type: 'json' };
import { checkPatterns, formatVerdict, specPatterns } from '../../scripts/check-patterns.js';

type Node = Record<string, any>;

/** Each schema's pattern before the rewrite. */
const OLD: Record<string, string> = {
  MoneyInput: '^\\s*(?:[0-9]{1,12}(?:\\.[0-9]{1,4})?)?\\s*$',
  PercentageInput: '^\\s*(?:100(?:\\.0{1,4})?|[0-9]{1,2}(?:\\.[0-9]{1,4})?)?\\s*$',
  NotesInput: '^\\s*(?:[^\\s\\u0000\\ud800-\\udfff](?:[^\\u0000\\ud800-\\udfff]{0,9998}[^\\s\\u0000\\ud800-\\udfff])?)?\\s*$',
  OptionalText: '^\\s*(?:[^\\s\\u0000\\ud800-\\udfff](?:[^\\u0000\\ud800-\\udfff]{0,198}[^\\s\\u0000\\ud800-\\udfff])?)?\\s*$',
  AddressInput: '^\\s*(?:[^\\s\\u0000\\ud800-\\udfff](?:[^\\u0000\\ud800-\\udfff]{0,998}[^\\s\\u0000\\ud800-\\udfff])?)?\\s*$',
  EmailInput:
    "^\\s*(?:(?=\\S{3,254}\\s*$)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z]{2,63})?\\s*$",
  WebsiteInput:
    '^\\s*(?:(?=\\S{1,2048}\\s*$)[Hh][Tt][Tt][Pp][Ss]?://(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\\[[0-9A-Fa-f:.]{2,45}\\])(?::[0-9]{1,5})?(?:[/?#][^\\s\\u0000\\ud800-\\udfff]*)?)?\\s*$',
};

/** The schema's pattern now (on its string branch when it is an anyOf). */
function currentPattern(name: string): string {
  const schema = (spec as unknown as Node).components.schemas[name] as Node;
  const pattern = schema.pattern ?? (schema.anyOf as Node[] | undefined)?.find((branch) => branch.pattern)?.pattern;
  expect(pattern, name).toBeTypeOf('string');
  return pattern as string;
}

/** Every character `\s` matches with the `u` flag, and some that look like white space but are not. */
const WHITE = [
  ' ',
  '\t',
  '\n',
  '\v',
  '\f',
  '\r',
  '\u00a0',
  '\u1680',
  '\u2000',
  '\u200a',
  '\u2028',
  '\u2029',
  '\u202f',
  '\u205f',
  '\u3000',
  '\ufeff',
];
const NOT_QUITE_WHITE = ['\u200b', '\u0085', '\u180e'];
const ODD = ['\u0000', '\ud800', '\udfff', '\ud83d\ude00', 'é', 'ß', 'Ω'];
const ASCII = [...Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i))];
/** Pieces the patterns are made of, so that accepted strings come up as often as refused ones. */
const PIECES = [
  '0',
  '1',
  '12',
  '100',
  '100.0',
  '100.0000',
  '99.9999',
  '123456789012',
  '1234567890123',
  '.5',
  '5.',
  '0.00001',
  'a',
  'Jane Doe',
  'billing',
  'x@y.zz',
  '@',
  'globex.test',
  'a-b',
  '-a',
  'a-',
  '..',
  'http://',
  'HTTPS://',
  'https://globex.test',
  'http://[::1]',
  ':8080',
  ':99999',
  '/p?q#f',
  'xn--bcher-kva.example',
];

const piece = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...PIECES) },
  { weight: 3, arbitrary: fc.constantFrom(...WHITE) },
  { weight: 2, arbitrary: fc.constantFrom(...ASCII) },
  { weight: 1, arbitrary: fc.constantFrom(...ODD, ...NOT_QUITE_WHITE) },
);
const white = fc.array(fc.constantFrom(...WHITE), { maxLength: 6 }).map((chars) => chars.join(''));
const shortText = fc.array(piece, { maxLength: 24 }).map((pieces) => pieces.join(''));
/** White space, something, white space: the shape the patterns are about. */
const padded = fc.tuple(white, shortText, white).map(([lead, core, trail]) => lead + core + trail);
const digits = (n: number) => '1234567890'.repeat(2).slice(0, n);
/** Decimals around the money and percentage bounds: 12 integer digits, 4 decimal places, 100. */
const numbers = fc
  .record({
    lead: white,
    whole: fc.oneof(fc.integer({ min: 0, max: 14 }).map(digits), fc.constantFrom('100', '101', '99', '0', '00')),
    point: fc.constantFrom('', '.'),
    fraction: fc.oneof(fc.integer({ min: 0, max: 6 }).map(digits), fc.constantFrom('0000', '00000', '0001')),
    trail: white,
  })
  .map(({ lead, whole, point, fraction, trail }) => lead + whole + (point ? point + fraction : '') + trail);
/**
 * Text around a length bound (200, 1,000, 10,000 characters once trimmed), padded with white
 * space, ending now and then with a character the patterns refuse.
 */
const nearBound = (bound: number) =>
  fc
    .record({
      lead: white,
      length: fc.integer({ min: bound - 3, max: bound + 2 }),
      fill: fc.constantFrom('a', 'a ', 'a\u3000', 'é', '\ud83d\ude00'),
      last: fc.constantFrom('b', ' ', '\u0000', '\ud800'),
      trail: white,
    })
    .map(({ lead, length, fill, last, trail }) => lead + fill.repeat(length).slice(0, Math.max(0, length - 1)) + last + trail);
/** E-mail addresses around 254 characters, labels around 63, top-level domains around 2 and 63. */
const emails = fc
  .record({
    lead: white,
    local: fc.constantFrom(1, 2, 64, 120, 200).map((n) => 'a.b'.repeat(n).slice(0, n)),
    labels: fc.array(fc.constantFrom(1, 61, 62, 63, 64), { minLength: 0, maxLength: 4 }),
    tld: fc.constantFrom(1, 2, 63, 64),
    trail: white,
  })
  .map(
    ({ lead, local, labels, tld, trail }) =>
      `${lead}${local}@${labels.map((n) => `${'b-'.repeat(n).slice(0, n - 1)}c.`).join('')}${'z'.repeat(tld)}${trail}`,
  );
/** URLs around 2,048 characters, host labels around 63, ports around five digits. */
const urls = fc
  .record({
    lead: white,
    scheme: fc.constantFrom('http://', 'HTTPS://', 'ftp://'),
    labels: fc.array(fc.constantFrom(1, 62, 63, 64), { minLength: 1, maxLength: 3 }),
    port: fc.constantFrom('', ':1', ':65535', ':123456'),
    total: fc.integer({ min: 2_045, max: 2_050 }),
    trail: white,
  })
  .map(({ lead, scheme, labels, port, total, trail }) => {
    const head = scheme + labels.map((n) => 'a'.repeat(n)).join('.') + port;
    return lead + head + '/p'.repeat(total).slice(0, Math.max(0, total - head.length)) + trail;
  });
/** Each pattern's own near-the-edge strings. */
const EDGES: Record<string, fc.Arbitrary<string>> = {
  MoneyInput: numbers,
  PercentageInput: numbers,
  NotesInput: nearBound(10_000),
  OptionalText: nearBound(200),
  AddressInput: nearBound(1_000),
  EmailInput: emails,
  WebsiteInput: urls,
};

describe.each(Object.keys(OLD))('%s: the linear-time pattern reads the same language as the old one', (name) => {
  const before = new RegExp(OLD[name]!, 'u');
  const now = new RegExp(currentPattern(name), 'u');

  it('changed (the old one is not the one in the spec)', () => expect(now.source).not.toBe(before.source));

  it.each([
    ['short strings of its pieces, white space, NUL and surrogates', fc.oneof(padded, shortText), 20_000],
    ['strings at the edges of its language (lengths, labels, digits)', EDGES[name]!, 1_000],
  ] as const)('on %s', (_label, strings, numRuns) => {
    const seen = { accepted: 0, refused: 0 };
    fc.assert(
      fc.property(strings, (text) => {
        const verdict = before.test(text);
        if (verdict) seen.accepted++;
        else seen.refused++;
        return now.test(text) === verdict;
      }),
      { numRuns, seed: 20261202 },
    );
    // Not a vacuous agreement: both answers came up.
    expect(seen.accepted, 'accepted').toBeGreaterThan(0);
    expect(seen.refused, 'refused').toBeGreaterThan(0);
  });
});

describe('the linear-time judge (scripts/check-patterns.ts, a step of npm run lint:spec)', () => {
  it('passes every pattern of the bundled spec', { timeout: 300_000 }, async () => {
    const patterns = specPatterns(spec);
    // Bodies, parameters, headers and responses: all of them, not only the body patterns.
    expect(patterns.size).toBeGreaterThan(20);
    const refused = (await checkPatterns(patterns)).filter((verdict) => verdict.status !== 'safe');
    expect(refused.map(formatVerdict)).toEqual([]);
  });

  it('refuses the old patterns, with an attack that shows it', { timeout: 120_000 }, async () => {
    const old = new Map([OLD.MoneyInput!, OLD.EmailInput!].map((pattern) => [pattern, ['#/old']]));
    const verdicts = await checkPatterns(old);
    for (const verdict of verdicts) {
      expect(verdict).toMatchObject({ status: 'vulnerable', complexity: expect.stringMatching(/polynomial/) });
      // The attack is the run of white space and a refused character.
      expect(verdict.attack).toMatch(/repeat\(\d+\)/);
    }
  });
});
