/**
 * Checked by `npm run typecheck`: the handler map must have exactly one handler per operation of
 * the spec, typed from it. Were `Handlers` ever loosened, the @ts-expect-error lines below would
 * stop erroring and the typecheck would fail on them.
 */
import type { Handlers } from '../../server/operations/handler-types.js';
import { systemHandlers } from '../../server/system/system.http.js';

// An operation of the spec with no handler (here: createClient) does not compile.
// @ts-expect-error Property 'createClient' is missing
export const missingOperation: Handlers = { ...systemHandlers };

export const wrongStatus: Pick<Handlers, 'getHealth'> = {
  // @ts-expect-error 204 is not a documented success status of getHealth
  getHealth: async () => ({ status: 204, body: { status: 'ok' } }),
};

export const wrongBody: Pick<Handlers, 'getHealth'> = {
  // @ts-expect-error the body must match the spec's Health schema
  getHealth: async () => ({ status: 200, body: { status: 'fine' } }),
};
