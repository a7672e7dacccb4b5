/**
 * The operator's side of "Settings → API": the first token of an organisation (the API mints the
 * rest), its tokens, its plan.
 *   npm run cli -- token create --org <name> [--plan free|pro|studio] [--env test|live]
 *                               [--scopes clients:read,clients:write,tokens:manage,events:read,webhooks:manage] [--name <label>] [--json]
 *   npm run cli -- idempotency purge
 *   npm run cli -- token list --org <name> [--json]
 *   npm run cli -- token revoke --id <tokenId>
 *   npm run cli -- org set-plan --org <name> --plan free|pro|studio
 *   npm run cli -- migrate
 *   npm run cli -- --help (or -h, or nothing): the usage, exit 0
 * Uses DATABASE_URL, or the embedded database under DATA_DIR like the server.
 */
// First: production mode before any package loads (see the file).
import './production-mode.js';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { toToken } from './tokens/tokens.mapper.js';
import { listTokensOfOrganisation, revokeToken } from './tokens/tokens.queries.js';
import { mintTokenForOrganisation } from './tokens/tokens.service.js';
import { SCOPES, type Scope } from './shared/spec-values.js';
import { databaseOptions, loadConfig } from './config.js';
import { openDatabase, type DatabaseHandle } from './db/database.js';
import { DatabaseInUseError } from './db/embedded.js';
import { migrateOrThrow } from './db/migrate.js';
import { purgeExpiredKeys } from './idempotency/idempotency.js';
import type { Env } from './db/schema.js';
import { findOrganisationByName, setOrganisationPlan } from './orgs/orgs.queries.js';
import { PLAN_ORDER, PLANS } from './plans/plans.js';
import { isUuid } from './shared/ids.js';

const ENVS: Env[] = ['test', 'live'];

/** Bad usage: exit 2 with the usage text. Any other failure is said plainly, with exit 1. */
class UsageError extends Error {}

const usage = `Usage:
  npm run cli -- token create --org <name> [--plan free|pro|studio] [--env test|live]
                              [--scopes clients:read,clients:write,tokens:manage,events:read,webhooks:manage] [--name <label>] [--json]
      mint a token (creating the organisation if there is none of that name; a new one is on free)
  npm run cli -- token list --org <name> [--json]
  npm run cli -- token revoke --id <tokenId>
  npm run cli -- org set-plan --org <name> --plan free|pro|studio
  npm run cli -- idempotency purge
  npm run cli -- migrate
  npm run cli -- --help

Uses DATABASE_URL, or the embedded database under DATA_DIR (./data), which only one process can
open: while the server runs on it, mint, list and revoke tokens through the API instead
(POST /tokens, GET /tokens, DELETE /tokens/{id}, with a token that has tokens:manage).`;

/**
 * The embedded database is held by a running server: tokens can be managed through the API
 * instead (the first start's Demo token has tokens:manage). Anything else needs the server
 * stopped, as the error itself says.
 */
function inUseHint(group: string | undefined): string {
  if (group !== 'token') return '';
  const { host, port } = loadConfig();
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return `While the server runs, manage tokens through the API with a token that has the tokens:manage scope
(the first start's Demo token has it): POST /tokens mints one, GET /tokens lists them, DELETE /tokens/{id} revokes one.

  curl -X POST "${url}/tokens" \\
    -H "Authorization: Bearer <token with tokens:manage>" \\
    -H "Content-Type: application/json" \\
    -d '{ "name": "my script", "scopes": ["clients:read", "clients:write"] }'`;
}

function oneOf<T extends string>(name: string, value: string | undefined, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!allowed.includes(value as T)) throw new UsageError(`--${name} must be one of ${allowed.join(', ')}, not "${value}"`);
  return value as T;
}

async function withDatabase<T>(run: (handle: DatabaseHandle, applied: string[]) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const handle = await openDatabase({ ...databaseOptions(config), poolSize: 2 });
  try {
    const applied = await migrateOrThrow(handle.db);
    return await run(handle, applied);
  } finally {
    await handle.close();
  }
}

function options<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], spec: T) {
  return parseArgs({ args, options: spec, strict: true }).values;
}

function requiredOrg(org: string | undefined): string {
  if (!org?.trim()) throw new UsageError('--org <name> is required');
  return org.trim();
}

async function tokenCreate(args: string[]): Promise<void> {
  const values = options(args, {
    org: { type: 'string' },
    plan: { type: 'string' },
    env: { type: 'string' },
    scopes: { type: 'string' },
    name: { type: 'string' },
    json: { type: 'boolean', default: false },
  });
  const org = requiredOrg(values.org);
  const plan = oneOf('plan', values.plan, PLAN_ORDER);
  const env = oneOf('env', values.env, ENVS);
  const tokenName = values.name?.trim();
  // The API lists every token, so a name must be one it can show: 1 to 200 characters.
  if (tokenName !== undefined && (tokenName.length === 0 || tokenName.length > 200)) {
    throw new UsageError('--name must be text of 1 to 200 characters');
  }
  const scopes = values.scopes
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const scope of scopes ?? []) oneOf('scopes', scope, SCOPES);
  if (scopes && scopes.length === 0) throw new UsageError('--scopes needs at least one scope');

  const minted = await withDatabase(({ db }) =>
    mintTokenForOrganisation(db, { orgName: org, plan, env, scopes: scopes as Scope[] | undefined, tokenName }),
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

async function tokenList(args: string[]): Promise<void> {
  const values = options(args, { org: { type: 'string' }, json: { type: 'boolean', default: false } });
  const org = requiredOrg(values.org);
  const { orgId, tokens } = await withDatabase(async ({ db }) => {
    const found = await findOrganisationByName(db, org);
    if (!found) throw new Error(`There is no organisation named "${org}".`);
    return { orgId: found.id, tokens: (await listTokensOfOrganisation(db, found.id)).map(toToken) };
  });
  if (values.json) {
    console.log(JSON.stringify(tokens));
    return;
  }
  console.log(
    `Organisation ${org} (${orgId}): ${tokens.length} token${tokens.length === 1 ? '' : 's'}, newest first. Secrets are never shown again.`,
  );
  for (const t of tokens) {
    const state = t.revokedAt
      ? `revoked ${t.revokedAt}`
      : t.expiresAt && new Date(t.expiresAt) <= new Date()
        ? `expired ${t.expiresAt}`
        : 'active';
    console.log(`\n  ${t.id}  hsk_${t.env}_${t.prefix}_…  "${t.name}"  ${state}`);
    console.log(
      `    scopes ${t.scopes.join(', ')}; created ${t.createdAt}; last used ${t.lastUsedAt ?? 'never'}; expires ${t.expiresAt ?? 'never'}`,
    );
  }
}

async function tokenRevoke(args: string[]): Promise<void> {
  const values = options(args, { id: { type: 'string' } });
  if (!values.id) throw new UsageError('--id <tokenId> is required');
  if (!isUuid(values.id)) throw new UsageError(`--id must be a token id (a UUID, as token list shows it), not "${values.id}"`);
  const id = values.id;
  const revoked = await withDatabase(({ db }) => revokeToken(db, id, 'any'));
  if (!revoked) throw new Error(`There is no token with id ${id}.`);
  console.log(
    `Token ${id} ("${revoked.name}", ${revoked.env}) is revoked since ${revoked.revoked_at!.toISOString()}; requests with it are refused.`,
  );
}

async function orgSetPlan(args: string[]): Promise<void> {
  const values = options(args, { org: { type: 'string' }, plan: { type: 'string' } });
  const org = requiredOrg(values.org);
  const plan = oneOf('plan', values.plan, PLAN_ORDER);
  if (!plan) throw new UsageError(`--plan ${PLAN_ORDER.join('|')} is required`);
  const changed = await withDatabase(({ db }) => setOrganisationPlan(db, org, plan));
  if (!changed) throw new Error(`There is no organisation named "${org}".`);
  const max = PLANS[plan].maxActiveClients;
  console.log(
    `Organisation ${org} (${changed.id}) is on plan ${plan} (was ${changed.previousPlan}): ` +
      `${max === null ? 'unlimited' : `up to ${max}`} active clients per environment.`,
  );
}

const commands: Record<string, (args: string[]) => Promise<void>> = {
  'token create': tokenCreate,
  'token list': tokenList,
  'token revoke': tokenRevoke,
  'org set-plan': orgSetPlan,
  'idempotency purge': idempotencyPurge,
};

async function idempotencyPurge(): Promise<void> {
  const removed = await withDatabase(({ db }) => purgeExpiredKeys(db, new Date()));
  console.log(`Purged ${removed} expired idempotency key${removed === 1 ? '' : 's'}.`);
}

async function main(argv: string[]): Promise<void> {
  if (argv.length === 0 || argv.includes('--help') || argv.includes('-h')) {
    console.log(usage);
    return;
  }
  const [group, command, ...rest] = argv;
  const run = commands[`${group} ${command}`];
  if (run) return run(rest);
  if (group === 'migrate') {
    const applied = await withDatabase(async (_handle, names) => names);
    console.log(applied.length ? `Applied ${applied.join(', ')}.` : 'The database is up to date.');
    return;
  }
  throw new UsageError(`Unknown command: ${[group, command].filter(Boolean).join(' ')}`);
}

const argv = process.argv.slice(2);
main(argv).catch((error: unknown) => {
  if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    console.error(`${(error as Error).message}\n\n${usage}`);
    process.exit(2);
  }
  if (error instanceof DatabaseInUseError) {
    console.error([error.message, inUseHint(argv[0])].filter(Boolean).join('\n\n'));
    process.exit(1);
  }
  console.error((error as Error).message ?? error);
  process.exit(1);
});
