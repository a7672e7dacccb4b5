/**
 * Starts the real app on an ephemeral port over a fresh database, with response validation on
 * (against the spec with closed responses, test/support/closed-spec.ts, so that an undocumented
 * field fails), and hands out typed clients whose every response is also checked by an
 * independent validator.
 * Under `npm run test:prism` the tests reach the server through Prism's validating proxy instead.
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { pino } from 'pino';
import { createApp, type AppDeps } from '../../server/app.js';
import { mintTokenForOrganisation, type MintForOrganisation, type MintedToken } from '../../server/tokens/tokens.service.js';
import { createClientsApi, type ClientsApi, type ClientsApiOptions } from '../../client/index.js';
import type { OpenApiDocument } from '../../server/http/spec.js';
import type { IdempotencyStore } from '../../server/idempotency/idempotency.js';
import * as idempotencyQueries from '../../server/idempotency/idempotency.queries.js';
import { ephemeralWebhookSettings } from '../../server/webhook-delivery/settings.js';
import { closedSpec } from './closed-spec.js';
import { createTestDatabase, type TestDatabase } from './database.js';
import { PRISM_URL_VARIABLE, startPrismFront } from './prism.js';
import { specCheckingFetch } from './spec-check.js';

export interface TestServer {
  /** Where tests send requests: the server itself, or its Prism front under `npm run test:prism`. */
  baseUrl: string;
  /**
   * The server itself, never through Prism: for tests of what no proxy can carry unchanged (the
   * client's own network address) or of requests outside the spec that Prism refuses and the
   * server, by a choice the spec does not state, carries out.
   */
  serverUrl: string;
  database: TestDatabase;
  /** Mints a token (creating the organisation if needed) straight in the database. */
  mint(request: Partial<MintForOrganisation> & { orgName: string }): Promise<MintedToken>;
  /**
   * A typed client for `token`, checking every response against the spec. It adds Idempotency-Keys
   * like the published client, but does not retry unless asked, so tests see every answer.
   */
  client(token: string, options?: Partial<ClientsApiOptions>): ClientsApi;
  /** A new organisation with a token of all scopes, and a client for it. */
  tenant(request?: Partial<MintForOrganisation>): Promise<{ api: ClientsApi; token: MintedToken }>;
  close(): Promise<void>;
}

let counter = 0;

/** `shared.database`: serve an existing test database (not closed by this server's close). */
export async function startTestServer(overrides: Partial<AppDeps> = {}, shared: { database?: TestDatabase } = {}): Promise<TestServer> {
  const database = shared.database ?? (await createTestDatabase());
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const { createServer } = createApp({
    db: database.db,
    pool: database.counterPool,
    logger,
    validateResponses: true,
    apiSpec: closedSpec as OpenApiDocument,
    // Tests' receivers listen on 127.0.0.1; the address checks' own tests turn them back on.
    webhooks: ephemeralWebhookSettings({ allowPrivateNetworks: true }),
    ...overrides,
  });
  const server: Server = await new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => resolve(s));
  });
  const serverUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const prismUrl = process.env[PRISM_URL_VARIABLE];
  const front = prismUrl ? await startPrismFront(serverUrl, prismUrl) : undefined;
  const baseUrl = front?.url ?? serverUrl;
  const mint: TestServer['mint'] = (request) => mintTokenForOrganisation(database.db, request);
  const client = (token: string, options: Partial<ClientsApiOptions> = {}) =>
    createClientsApi({ baseUrl, token, retry: false, ...options, fetch: specCheckingFetch(options.fetch) });
  return {
    baseUrl,
    serverUrl,
    database,
    mint,
    client,
    tenant: async (request = {}) => {
      const token = await mint({ orgName: `org-${process.pid}-${++counter}-${Date.now()}`, ...request });
      return { api: client(token.token), token };
    },
    close: async () => {
      await front?.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (!shared.database) await database.close();
    },
  };
}

/**
 * Idempotency queries whose first `saveAnswer` fails (the transaction's last statement, after
 * the write itself): what a store that breaks mid-write looks like, for `idempotencyStore`.
 */
export function storeFailingFirstSave(): { store: Partial<IdempotencyStore>; saves: () => number } {
  let saves = 0;
  const store: Partial<IdempotencyStore> = {
    saveAnswer: async (...args) => {
      if (++saves === 1) throw new Error('the response store is down');
      return idempotencyQueries.saveAnswer(...args);
    },
  };
  return { store, saves: () => saves };
}

/**
 * What a handler might throw that the error handler cannot read: every property, the prototype
 * and the keys throw `message` (a bug, or a hostile object from a dependency).
 */
export function unreadableError(message: string): object {
  const fail = () => {
    throw new Error(message);
  };
  return new Proxy({}, { get: fail, getPrototypeOf: fail, ownKeys: fail });
}
