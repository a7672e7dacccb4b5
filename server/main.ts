/** `npm start`: migrate, listen, and on a brand-new embedded database print a demo token. */
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { createApp } from './app.js';
import { mintTokenForOrganisation } from './tokens/tokens.service.js';
import { loadConfig } from './config.js';
import { openDatabase } from './db/database.js';
import { migrateOrThrow } from './db/migrate.js';
import { schedulePurge } from './idempotency/idempotency.js';
import { createLogger } from './logger.js';
import { countOrganisations } from './orgs/orgs.queries.js';

const config = loadConfig();
const logger = createLogger(config.logLevel);

const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir }).catch((error: Error) => {
  console.error(error.message);
  process.exit(1);
});
const { createServer, warmUp } = createApp({
  db: database.db,
  pool: database.counterPool,
  logger,
  validateResponses: config.validateResponses,
  rateLimits: config.rateLimits,
  trustProxy: config.trustProxy,
});
/** Migrations, and on a brand-new embedded database a demo organisation with a token. */
async function prepareDatabase() {
  const applied = await migrateOrThrow(database.db);
  if (applied.length > 0) logger.info({ migrations: applied }, 'migrated');
  const freshEmbedded = database.kind === 'pglite' && (await countOrganisations(database.db)) === 0;
  return freshEmbedded ? mintTokenForOrganisation(database.db, { orgName: 'Demo', tokenName: 'demo' }) : undefined;
}
// The validator compiles the spec while the database is being readied: neither waits for the other.
const [demo] = await Promise.all([prepareDatabase(), warmUp()]);
const stopPurge = schedulePurge(database.db, () => new Date(), (error) => logger.error({ err: error }, 'idempotency purge failed'));
const server = createServer().listen(config.port, config.host, () => {
  const { port } = server.address() as AddressInfo;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  logger.info(
    { url, database: database.kind, startupMs: Math.round(performance.now()) /* since the process started, module loading included */ },
    'listening',
  );
  if (demo) {
    console.log(`
A new embedded database was created in ${config.dataDir}, with organisation "Demo" and this test-mode token
(shown once; mint more with: npm run cli -- token create --org <name>):

  ${demo.token}

Create a client:

  curl -X POST "${url}/clients" \\
    -H "Authorization: Bearer ${demo.token}" \\
    -H "Idempotency-Key: ${randomUUID()}" \\
    -H "Content-Type: application/json" \\
    -d '{ "name": "string" }'
`);
  }
});

let stopping = false;
const stop = (signal: string) => {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'stopping');
  stopPurge();
  server.close(() => {
    void database.close().then(() => {
      logger.flushNow();
      process.exit(0);
    });
  });
  server.closeIdleConnections();
  setTimeout(() => process.exit(1), 10_000).unref();
};
process.on('SIGINT', () => stop('SIGINT'));
process.on('SIGTERM', () => stop('SIGTERM'));
