/**
 * The search indexer: keeps `client_search` (what `q` and `email` look up) from the outbox, off the
 * request path. It runs inside `npm start` (unless SEARCH_INDEXER=false) and in `npm run worker`;
 * any number share one database (a batch is one process's at a time: the others skip it).
 *
 * Each pass indexes batches of `batchSize` events, one statement each
 * (server/clients/client-search.queries.ts), until a batch is not full, then waits `intervalMs`.
 * Its place in the feed is stored with the rows it writes, in the same statement, so a restart (or
 * a crash) goes on from the last batch committed, and a batch done twice changes nothing. A failed
 * pass (the database away) is logged and the loop goes on. After writing a tenth of the table
 * (ANALYZE_AFTER_ROWS at least) it analyses client_search. A search never waits for it: the
 * clients changed since its place are read live (clients.queries.ts), so its lag costs only that
 * reading.
 */
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Database } from '../db/schema.js';
import { analyzeSearchTable, type IndexedBatch, indexNextBatch } from './client-search.queries.js';

/**
 * Rows the indexer writes before it analyses client_search again: a tenth of the table as last
 * analysed, and at least this many. Statistics older than a tenant's rows made the planner expect
 * one row for it and walk the tenant's rows of client_search for a rare term instead of asking the
 * trigram indexes (191 ms for 14,000 rows in the soak, growing with the tenant). Autovacuum waits
 * for a tenth of the table (and this machine's is off); the indexer, the table's only writer,
 * knows when it has written enough.
 */
export const ANALYZE_AFTER_ROWS = 5_000;

export interface SearchIndexerOptions {
  db: Kysely<Database>;
  logger: Pick<Logger, 'error' | 'debug'>;
  /** Pause between passes, when the last batch found the feed caught up. */
  intervalMs: number;
  /** Events per batch (per statement). */
  batchSize: number;
  /** Rows written before the first ANALYZE of client_search (ANALYZE_AFTER_ROWS; the tests' smaller). */
  analyzeAfterRows?: number;
}

export interface SearchIndexer {
  /** Stops after the batch in flight; settles once it has ended (before the database closes). */
  stop(): Promise<void>;
}

/** Indexes until the feed is caught up (a batch that is not full), or another process holds the batch; the events indexed. */
export async function indexUntilCaughtUp(
  db: Kysely<Database>,
  batchSize: number,
  stopped: () => boolean = () => false,
  afterBatch: (batch: IndexedBatch) => Promise<void> = async () => {},
): Promise<number> {
  let indexed = 0;
  while (!stopped()) {
    const batch = await indexNextBatch(db, batchSize);
    if (!batch) break;
    indexed += batch.events;
    await afterBatch(batch);
    if (batch.events < batchSize) break;
  }
  return indexed;
}

export function startSearchIndexer({
  db,
  logger,
  intervalMs,
  batchSize,
  analyzeAfterRows = ANALYZE_AFTER_ROWS,
}: SearchIndexerOptions): SearchIndexer {
  let stopping = false;
  // Rows written since this process last analysed client_search, and how many call for the next.
  let written = 0;
  let analyzeAt = analyzeAfterRows;
  const keepStatistics = async (batch: IndexedBatch) => {
    written += batch.changed;
    if (written < analyzeAt) return;
    const rows = await analyzeSearchTable(db);
    written = 0;
    analyzeAt = Math.max(analyzeAfterRows, Math.ceil(rows / 10));
  };
  let timer: NodeJS.Timeout | undefined;
  let pass: Promise<void> | undefined;
  const run = () => {
    timer = undefined;
    pass = indexUntilCaughtUp(db, batchSize, () => stopping, keepStatistics)
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
