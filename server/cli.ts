/**
 * The product's "Settings → API" until the tokens API exists:
 *   npm run cli -- token create --org <name> [--plan free|pro|studio] [--env test|live]
 *                               [--scopes clients:read,clients:write,tokens:manage] [--name <label>] [--json]
 *   npm run cli -- idempotency purge
 *   npm run cli -- migrate
 * Uses DATABASE_URL, or the embedded database under DATA_DIR like the server.
 */
import { parseArgs } from 'node:util';
import { mintTokenForOrganisation } from './auth/tokens.service.js';
import { SCOPES, type Scope } from './auth/token-format.js';
import { loadConfig } from './config.js';
import { openDatabase, type DatabaseHandle } from './db/database.js';
import { migrateOrThrow } from './db/migrate.js';
import { purgeExpiredKeys } from './idempotency/idempotency.js';
import type { Env, PlanName } from './db/schema.js';

const PLANS: PlanName[] = ['free', 'pro', 'studio'];
const ENVS: Env[] = ['test', 'live'];

class UsageError extends Error {}

const usage = `Usage:
  npm run cli -- token create --org <name> [--plan free|pro|studio] [--env test|live]
                              [--scopes clients:read,clients:write,tokens:manage] [--name <label>] [--json]
  npm run cli -- idempotency purge
  npm run cli -- migrate`;

function oneOf<T extends string>(name: string, value: string | undefined, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!allowed.includes(value as T)) throw new UsageError(`--${name} must be one of ${allowed.join(', ')}, not "${value}"`);
  return value as T;
}

async function withDatabase<T>(run: (handle: DatabaseHandle, applied: string[]) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const handle = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, poolSize: 2 });
  try {
    const applied = await migrateOrThrow(handle.db);
    return await run(handle, applied);
  } finally {
    await handle.close();
  }
}

async function tokenCreate(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      org: { type: 'string' },
      plan: { type: 'string' },
      env: { type: 'string' },
      scopes: { type: 'string' },
      name: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (!values.org?.trim()) throw new UsageError('--org <name> is required');
  const plan = oneOf('plan', values.plan, PLANS);
  const env = oneOf('env', values.env, ENVS);
  const scopes = values.scopes?.split(',').map((s) => s.trim()).filter(Boolean);
  for (const scope of scopes ?? []) oneOf('scopes', scope, SCOPES);
  if (scopes && scopes.length === 0) throw new UsageError('--scopes needs at least one scope');

  const minted = await withDatabase(({ db }) =>
    mintTokenForOrganisation(db, { orgName: values.org!.trim(), plan, env, scopes: scopes as Scope[] | undefined, tokenName: values.name }),
  );
  if (values.json) {
    const { token, tokenId, orgId, env: tokenEnv, scopes: tokenScopes, plan: orgPlan } = minted;
    console.log(JSON.stringify({ token, tokenId, orgId, env: tokenEnv, scopes: tokenScopes, plan: orgPlan }));
    return;
  }
  console.log(`Organisation ${values.org} (${minted.orgId}), plan ${minted.plan}.`);
  console.log(`New ${minted.env} token ${minted.tokenId} with scopes ${minted.scopes.join(', ')}.`);
  console.log('It is shown only this once; keep it somewhere safe:\n');
  console.log(`  ${minted.token}\n`);
}

async function main(argv: string[]): Promise<void> {
  const [group, command, ...rest] = argv;
  if (group === 'token' && command === 'create') return tokenCreate(rest);
  if (group === 'idempotency' && command === 'purge') {
    const removed = await withDatabase(({ db }) => purgeExpiredKeys(db, new Date()));
    console.log(`Purged ${removed} expired idempotency key${removed === 1 ? '' : 's'}.`);
    return;
  }
  if (group === 'migrate') {
    const applied = await withDatabase(async (_handle, names) => names);
    console.log(applied.length ? `Applied ${applied.join(', ')}.` : 'The database is up to date.');
    return;
  }
  throw new UsageError(group ? `Unknown command: ${[group, command].filter(Boolean).join(' ')}` : 'No command given');
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    console.error(`${(error as Error).message}\n\n${usage}`);
    process.exit(2);
  }
  console.error((error as Error).message ?? error);
  process.exit(1);
});
