/**
 * A response body that does not change while the process runs (a page, a document), kept ready in
 * each content coding a client may accept: compressed once, on the first request that asks for
 * that coding, never per request. Each coding is its own representation (RFC 9110 §8.8.3), with
 * its own strong entity tag: the body's hash, and the coding after it.
 */
import { promisify } from 'node:util';
import { brotliCompress, constants, gzip } from 'node:zlib';
import { strongEtagOf } from './etag.js';

export type ContentCoding = 'br' | 'gzip' | 'identity';

export interface EncodedVariant {
  coding: ContentCoding;
  body: Buffer;
  etag: string;
}

const gzipAsync = promisify(gzip);
const brotliAsync = promisify(brotliCompress);

/**
 * Brotli's default quality (11) costs seconds on a body of a few megabytes; 6 is within a few per
 * cent of its size at a small fraction of the time. Either runs on libuv's threads, off the event loop.
 */
const encoders: Record<Exclude<ContentCoding, 'identity'>, (body: Buffer) => Promise<Buffer>> = {
  gzip: (body) => gzipAsync(body),
  br: (body) =>
    brotliAsync(body, {
      params: { [constants.BROTLI_PARAM_QUALITY]: 6, [constants.BROTLI_PARAM_SIZE_HINT]: body.length },
    }),
};

export class StaticRepresentation<MediaType extends string = string> {
  readonly #load: () => string | Buffer;
  #identity: EncodedVariant | undefined;
  readonly #encoded = new Map<ContentCoding, Promise<EncodedVariant>>();

  /** `load` runs once, on the first request: a large body costs nothing at start-up. */
  constructor(
    readonly contentType: MediaType,
    load: () => string | Buffer,
  ) {
    this.#load = load;
  }

  /** The body in `coding`: made on the first call for that coding, the same object afterwards. */
  variant(coding: ContentCoding): Promise<EncodedVariant> {
    const identity = this.#identityVariant();
    if (coding === 'identity') return Promise.resolve(identity);
    let encoded = this.#encoded.get(coding);
    if (!encoded) {
      encoded = encoders[coding](identity.body).then((body) => ({ coding, body, etag: strongEtagOf(identity.body, coding) }));
      // A failed compression is not kept: the next request tries again.
      encoded.catch(() => this.#encoded.delete(coding));
      this.#encoded.set(coding, encoded);
    }
    return encoded;
  }

  #identityVariant(): EncodedVariant {
    if (!this.#identity) {
      const loaded = this.#load();
      const body = typeof loaded === 'string' ? Buffer.from(loaded) : loaded;
      this.#identity = { coding: 'identity', body, etag: strongEtagOf(body) };
    }
    return this.#identity;
  }
}
