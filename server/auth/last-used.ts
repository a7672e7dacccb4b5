/**
 * Tokens' lastUsedAt, kept off the hot path: at most one write per token per interval (a minute),
 * sent once the response is out, never awaited by a request. The SQL condition keeps it to one
 * write per interval across server processes too.
 */
import type { Response } from 'express';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Database } from '../db/schema.js';
import { touchTokenLastUsed } from '../tokens/tokens.queries.js';

const LAST_USED_INTERVAL_MS = 60_000;

/** This process's memory of writes is pruned of stale entries once it holds this many tokens. */
const PRUNE_AT = 10_000;

export type LastUsedRecorder = (tokenId: string, res: Response) => void;

export function createLastUsedRecorder(db: Kysely<Database>, logger: Logger, intervalMs = LAST_USED_INTERVAL_MS): LastUsedRecorder {
  /** Token id → when this process last recorded it (ms since the epoch). */
  const recorded = new Map<string, number>();
  return (tokenId, res) => {
    const now = Date.now();
    if (now - (recorded.get(tokenId) ?? -Infinity) < intervalMs) return;
    if (recorded.size >= PRUNE_AT) {
      for (const [id, at] of recorded) if (now - at >= intervalMs) recorded.delete(id);
    }
    recorded.set(tokenId, now);
    res.once('close', () => {
      touchTokenLastUsed(db, tokenId, new Date(now), intervalMs).catch((error: unknown) =>
        logger.warn({ err: error, tokenId }, 'could not record the token as used'),
      );
    });
  };
}
