/**
 * The search indexer: keeps `client_search` (what `q` and `email` look up) from the outbox, off the
 * request path. It runs inside `npm start` (unless SEARCH_INDEXER=false) and in `npm run worker`;
 * any number share one database (a batch is one process's at a time: the others skip it).
 *
 * Each pass indexes batches of `batchSize` events, one statement each
 * (server/clients/client-search.queries.ts), until a batch is not full, then waits `intervalMs`.
 * Its place in the feed is stored with the rows it writes, in the same statement, so a restart (or
 * a crash) goes on from the last batch committed, and a batch done twice changes nothing. A failed
 * pass (the database away) is logged and the loop goes on. A search never waits for it: the clients
 * changed since its place are read live (clients.queries.ts), so its lag costs only that reading.
 */
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Database } from '../db/schema.js';
import { indexNextBatch } from './client-search.queries.js';

export interface SearchIndexerOptions {
  db: Kysely<Database>;
  logger: Pick<Logger, 'error' | 'debug'>;
  /** Pause between passes, when the last batch found the feed caught up. */
  intervalMs: number;
  /** Events per batch (per statement). */
  batchSize: number;
}

export interface SearchIndexer {
  /** Stops after the batch in flight; settles once it has ended (before the database closes). */
  stop(): Promise<void>;
}

/** Indexes until the feed is caught up (a batch that is not full), or another process holds the batch; the events indexed. */
export async function indexUntilCaughtUp(db: Kysely<Database>, batchSize: number, stopped: () => boolean = () => false): Promise<number> {
  let indexed = 0;
  while (!stopped()) {
    const batch = await indexNextBatch(db, batchSize);
    if (!batch) break;
    indexed += batch.events;
    if (batch.events < batchSize) break;
  }
  return indexed;
}

export function startSearchIndexer({ db, logger, intervalMs, batchSize }: SearchIndexerOptions): SearchIndexer {
  let stopping = false;
  let timer: NodeJS.Timeout | undefined;
  let pass: Promise<void> | undefined;
  const run = () => {
    timer = undefined;
    pass = indexUntilCaughtUp(db, batchSize, () => stopping)
      .then(
        (indexed) => {
          if (indexed > 0) logger.debug({ indexed }, 'search index caught up');
        },
        (error: unknown) => logger.error({ err: error }, 'search indexing failed; trying again'),
      )
      .finally(() => {
        pass = undefined;
        if (!stopping) {
          timer = setTimeout(run, intervalMs);
          timer.unref();
        }
      });
  };
  run();
  return {
    async stop() {
      stopping = true;
      if (timer) clearTimeout(timer);
      await pass;
    },
  };
}
