/**
 * Requests held in flight, for the concurrency limit's tests: a `GET /tokens` handler that makes
 * each request carrying `X-Test-Hold` wait until the test lets it go (with `X-Test-Hold: fail`,
 * it then throws: a 500), and answers every other request as the real handler does.
 */
import type { Handlers } from '../../server/operations/handler-types.js';
import { tokenHandlers } from '../../server/tokens/tokens.http.js';

export interface HoldingHandler {
  /** For `startTestServer({ handlers: { listTokens } })`. */
  listTokens: Handlers['listTokens'];
  /** How many requests wait in the handler now. */
  held(): number;
  /** Lets every waiting request go on. */
  letGo(): void;
}

/** The real handler: listing tokens needs none of the tokens module's dependencies. */
const realListTokens = tokenHandlers({ forgetToken: () => {} }).listTokens;

export function holdingHandler(): HoldingHandler {
  const waiting: (() => void)[] = [];
  return {
    listTokens: async (ctx) => {
      const hold = ctx.req.get('X-Test-Hold');
      if (hold) {
        await new Promise<void>((resolve) => waiting.push(resolve));
        if (hold === 'fail') throw new Error('injected failure');
      }
      return realListTokens(ctx);
    },
    held: () => waiting.length,
    letGo: () => {
      for (const resolve of waiting.splice(0)) resolve();
    },
  };
}
