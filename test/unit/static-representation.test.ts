/** A body that never changes, compressed once per coding, and the coding chosen for a request. */
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { chooseCoding } from '../../server/http/send-representation.js';
import { StaticRepresentation } from '../../server/shared/static-representation.js';

describe('StaticRepresentation', () => {
  it('loads its body on first use, and compresses it once per coding, however many requests ask', async () => {
    let loads = 0;
    const page = new StaticRepresentation('text/html', () => {
      loads++;
      return '<!doctype html><p>Hello</p>'.repeat(1000);
    });
    expect(loads).toBe(0);
    const together = await Promise.all(Array.from({ length: 20 }, () => page.variant('gzip')));
    expect(new Set(together).size).toBe(1);
    expect(await page.variant('gzip')).toBe(together[0]);
    const br = await page.variant('br');
    expect(await page.variant('br')).toBe(br);
    const identity = await page.variant('identity');
    expect(await page.variant('identity')).toBe(identity);
    expect(loads).toBe(1);

    expect(gunzipSync(together[0]!.body).equals(identity.body)).toBe(true);
    expect(brotliDecompressSync(br.body).equals(identity.body)).toBe(true);
    expect(new Set([identity.etag, together[0]!.etag, br.etag]).size).toBe(3);
  });

  it('gives the same tags to the same content, and other tags to other content', async () => {
    const tags = async (text: string) => {
      const body = new StaticRepresentation('application/json', () => text);
      return Promise.all((['identity', 'gzip', 'br'] as const).map(async (coding) => (await body.variant(coding)).etag));
    };
    expect(await tags('{"a":1}')).toEqual(await tags('{"a":1}'));
    const [one, other] = [await tags('{"a":1}'), await tags('{"a":2}')];
    for (const tag of other) expect(one).not.toContain(tag);
  });
});

describe('chooseCoding', () => {
  it.each([
    [undefined, 'identity'],
    ['', 'identity'],
    ['identity', 'identity'],
    ['deflate', 'identity'],
    ['gzip', 'gzip'],
    ['x-gzip', 'gzip'],
    ['GZIP', 'gzip'],
    ['br', 'br'],
    ['gzip, deflate, br, zstd', 'br'],
    ['gzip;q=1, br;q=0.8', 'gzip'],
    ['gzip;q=0.5, br;q=0.5', 'br'],
    ['br;q=0, gzip', 'gzip'],
    ['br;q=0, gzip;q=0', 'identity'],
    ['*', 'br'],
    ['*;q=0', 'identity'],
    ['*, br;q=0', 'gzip'],
    ['gzip;q=oops', 'identity'],
    [' br ; q = 0.9 , gzip ; q = 0.1 ', 'br'],
  ])('Accept-Encoding %j: %s', (header, coding) => {
    expect(chooseCoding(header)).toBe(coding);
  });
});
