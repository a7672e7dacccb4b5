/**
 * Tokens by prefix, cached for a second. A request's token is then checked without a round trip
 * to the database on the hot path, while a revocation, an expiry set or a plan change made by any
 * process is seen everywhere within `ttlMs`. In this process a revocation is seen at once: the
 * prefix is not cached again until well after the revoking transaction has committed.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { inSpan } from '../shared/tracing.js';
import { findTokenByPrefix, type TokenForAuth } from '../tokens/tokens.queries.js';

const NO_ATTRIBUTES = {};

export interface TokenLookup {
  find(prefix: string): Promise<TokenForAuth | undefined>;
  /** Stop trusting what is cached of this prefix (the token was just revoked or changed here). */
  forget(prefix: string): void;
}

export interface TokenLookupOptions {
  ttlMs?: number;
  maxEntries?: number;
  clock?: () => number;
}

interface Entry {
  token: TokenForAuth | undefined;
  fetchedAt: number;
}

export function createTokenLookup(db: Kysely<Database>, options: TokenLookupOptions = {}): TokenLookup {
  const ttlMs = options.ttlMs ?? 1000;
  const maxEntries = options.maxEntries ?? 10_000;
  const clock = options.clock ?? Date.now;
  const cache = new Map<string, Entry>();
  /** Lookups in flight: concurrent requests with one token share one query. */
  const pending = new Map<string, Promise<TokenForAuth | undefined>>();
  /** Prefixes not to cache until the given time. */
  const distrusted = new Map<string, number>();

  async function fetch(prefix: string): Promise<TokenForAuth | undefined> {
    const startedAt = clock();
    // A miss of the cache goes to the database: with tracing on, an `auth.token_lookup` span.
    const token = await inSpan('auth.token_lookup', NO_ATTRIBUTES, () => findTokenByPrefix(db, prefix));
    const until = distrusted.get(prefix);
    if (until !== undefined && until > startedAt) return token;
    if (until !== undefined) distrusted.delete(prefix);
    // A plain Map keeps insertion order: the oldest entry goes first when it is full.
    if (cache.size >= maxEntries) cache.delete(cache.keys().next().value!);
    cache.set(prefix, { token, fetchedAt: startedAt });
    return token;
  }

  return {
    find(prefix) {
      const entry = cache.get(prefix);
      if (entry && clock() - entry.fetchedAt < ttlMs) return Promise.resolve(entry.token);
      cache.delete(prefix);
      let inFlight = pending.get(prefix);
      if (!inFlight) {
        inFlight = fetch(prefix).finally(() => pending.delete(prefix));
        pending.set(prefix, inFlight);
      }
      return inFlight;
    },
    forget(prefix) {
      cache.delete(prefix);
      pending.delete(prefix);
      // Long enough for the revoking transaction to commit; lookups meanwhile go to the database.
      distrusted.set(prefix, clock() + 10 * ttlMs);
    },
  };
}
