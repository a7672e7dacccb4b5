/**
 * Deliberate regressions of the rules that live between calls, for the judges that follow the
 * chains (the stateful fuzzer) to prove they catch them. Each is a set of handlers that a test
 * server takes in place of the real ones (`startTestServer({ handlers })`, the way
 * test/judges/mismatches.test.ts injects its mismatches); every answer stays valid against the
 * spec, so no judge of single calls can see them.
 */
import { clientHandlers } from '../../server/clients/clients.http.js';
import { toClient } from '../../server/clients/clients.mapper.js';
import { updateClientRow } from '../../server/clients/clients.queries.js';
import * as clients from '../../server/clients/clients.service.js';
import { inTransaction, runKeyedWrite } from '../../server/idempotency/idempotency.js';
import type { Handlers } from '../../server/operations/handler-types.js';
import { strongEtag } from '../../server/shared/etag.js';

export const regressions = {
  /**
   * A restore that loses a field: the client comes back without its `notes` (in the row and in the
   * answer), as a restore that rebuilt the row from an incomplete copy would.
   */
  restoreDropsField: {
    restoreClient: async ({ db, key, auth, params, req, respond }) =>
      runKeyedWrite(db, key, () =>
        inTransaction(async (trx) => {
          const before = await clients.getClient(trx, auth, params.id);
          const state = await clients.applyRestore(trx, auth, params.id, req.get('If-Match'));
          if (before.client.deletedAt === null || state.client.notes === null) {
            return respond({ status: 200, body: { data: state.client }, headers: { ETag: state.etag } });
          }
          const client = toClient(await updateClientRow(trx, auth, params.id, { notes: null }));
          return respond({ status: 200, body: { data: client }, headers: { ETag: strongEtag(client) } });
        }),
      ),
  },
  /** An update that answers the ETag the client had before it: the change is made, the ETag stays. */
  updateKeepsEtag: {
    updateClient: async ({ db, key, auth, params, body, req, respond }) =>
      runKeyedWrite(db, key, () =>
        inTransaction(async (trx) => {
          const before = await clients.getClient(trx, auth, params.id);
          const state = await clients.applyUpdate(trx, auth, params.id, body, req.get('If-Match'));
          return respond({ status: 200, body: { data: state.client }, headers: { ETag: before.etag } });
        }),
      ),
  },
  /** A cursor that skips a row: every page after the first leaves out the row it should start with. */
  listSkipsRow: {
    listClients: async (ctx) => {
      const page = await clientHandlers.listClients(ctx);
      if (ctx.query.cursor === undefined) return page;
      return { ...page, body: { ...page.body, data: page.body.data.slice(1) } };
    },
  },
} satisfies Record<string, Partial<Handlers>>;

export type Regression = keyof typeof regressions;
