/**
 * The newcomer's path: `npm start` on an empty embedded database prints a token and a curl that
 * works; the CLI mints tokens in the documented shape and refuses to share the embedded database
 * with a running server. On PostgreSQL (TEST_DATABASE_URL), the CLI works against a server database.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../server/db/database.js';
import { createTestDatabase, usingPostgres } from '../support/database.js';
import { readJson } from '../support/json.js';
import { runCli, runEntry, startServerProcess, type RunningServer } from '../support/processes.js';

const dirs: string[] = [];
const servers: RunningServer[] = [];
/**
 * A data directory `data` in a folder of its own: the embedded database's webhook key is made
 * beside it (`.secrets/webhook-secret.key`), and goes with the folder.
 */
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'clients-api-test-'));
  dirs.push(dir);
  mkdirSync(join(dir, 'data'));
  return join(dir, 'data');
};
// An embedded database created and migrated once (by the CLI's own `migrate`); tests that need a
// database of their own, but not the first start on an empty directory, get a copy: creating one
// costs seconds each on this machine.
let template: string;
beforeAll(async () => {
  template = tempDir();
  const migrated = await runCli(['migrate'], { DATA_DIR: template, DATABASE_URL: '' });
  expect(migrated.code, migrated.stderr).toBe(0);
}, 180_000);
const migratedDataDir = () => {
  const dir = tempDir();
  cpSync(template, dir, { recursive: true });
  return dir;
};

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const lastJsonLine = (stdout: string) => JSON.parse(stdout.trim().split('\n').at(-1)!);

// Each test starts processes (tsx, the CLI, the server): seconds each, more on a busy machine.
describe('on the embedded database', { timeout: 180_000 }, () => {
  it('npm start prints a token and curls that create a client and mint a token, for a Demo on the top plan', async () => {
    const dataDir = tempDir();
    const server = await startServerProcess({ DATA_DIR: dataDir, DATABASE_URL: '' });
    servers.push(server);
    // NODE_ENV as the tests set it: production mode only when nothing says otherwise.
    expect(server.stdout()).toMatch(/"nodeEnv":"test".*"msg":"listening"/);
    await expect.poll(() => server.stdout(), { timeout: 10_000 }).toMatch(/The API reference/);
    const banner = server.stdout();
    expect(banner).toMatch(
      /Organisation "Demo" is on the studio plan, to try every feature: unlimited active clients, clients\.requirePoNumber, webhooks\./,
    );
    expect(banner).toMatch(/WEBHOOK_ALLOW_PRIVATE_NETWORKS=true/);
    /** The banner's curl that posts to `path`, as printed (to its `-d '...'` line). */
    const curlTo = (path: string) => {
      const from = banner.slice(banner.indexOf(`curl -X POST "${server.url}${path}"`));
      return from.slice(0, from.indexOf('\n', from.indexOf(" -d '")));
    };
    const runCurl = async (curl: string) => {
      expect(curl).toContain('"Idempotency-Key: ');
      const { stdout } = await promisify(execFile)('bash', ['-c', `${curl} -s -w '\\n%{http_code}'`]);
      const lines = stdout.trim().split('\n');
      return { status: lines.at(-1), body: JSON.parse(lines.slice(0, -1).join('\n')) };
    };
    const created = await runCurl(curlTo('/clients'));
    expect(created.status).toBe('201');
    expect(created.body.data.name).toBe('string');
    const minted = await runCurl(curlTo('/tokens'));
    expect(minted.status).toBe('201');
    expect(minted.body.data.scopes).toEqual(['clients:read', 'clients:write']);
    const demoToken = /Bearer (hsk_test_\w+)/.exec(banner)![1]!;

    // Every feature: more clients than the free plan's 3 (with the token the API minted), a
    // client that requires a PO number (studio), a webhook endpoint (pro and above).
    const post = (path: string, token: string, body: unknown) =>
      fetch(`${server.url}${path}`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      });
    for (let i = 0; i < 3; i++) expect((await post('/clients', minted.body.token, { name: `client ${i}` })).status).toBe(201);
    expect((await post('/clients', demoToken, { name: 'needs a PO', requirePoNumber: true })).status).toBe(201);
    // A public address written as an IP (nothing to resolve), for an event nothing here causes.
    const endpoint = await post('/webhook-endpoints', demoToken, { url: 'https://93.184.215.14/hooks', enabledEvents: ['client.deleted'] });
    expect(endpoint.status, await endpoint.clone().text()).toBe(201);

    // The webhook secrets' key was made beside the data, never in it: a copy of the data holds no key.
    const keyFile = join(dirname(dataDir), '.secrets', 'webhook-secret.key');
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(Buffer.from(readFileSync(keyFile, 'utf8').trim(), 'base64')).toHaveLength(32);
    expect(existsSync(join(dataDir, 'webhook-secret.key'))).toBe(false);

    // While the server holds the embedded database, the CLI says so instead of opening it, and
    // points token commands to the API.
    const busy = await runCli(['token', 'create', '--org', 'Acme', '--json'], { DATA_DIR: dataDir, DATABASE_URL: '' });
    expect(busy.code).toBe(1);
    expect(busy.stderr).toMatch(/in use by another process/);
    expect(busy.stderr).toMatch(/POST \/tokens mints one/);
    expect(busy.stderr).toMatch(/curl -X POST "http:\/\/[^"]+\/tokens"/);
    const busyPlan = await runCli(['org', 'set-plan', '--org', 'Demo', '--plan', 'pro'], { DATA_DIR: dataDir, DATABASE_URL: '' });
    expect(busyPlan.code).toBe(1);
    expect(busyPlan.stderr).toMatch(/in use by another process/);
    expect(busyPlan.stderr).not.toMatch(/POST \/tokens/);

    // A second start finds the organisation, on its plan, with both tokens, and prints no new demo token.
    await server.stop();
    const again = await startServerProcess({ DATA_DIR: dataDir, DATABASE_URL: '' });
    servers.push(again);
    expect(again.stdout()).not.toMatch(/hsk_test_/);
    const tokens = await fetch(`${again.url}/tokens`, { headers: { Authorization: `Bearer ${demoToken}` } });
    expect(tokens.status).toBe(200);
    expect(((await tokens.json()) as { data: { name: string }[] }).data.map((t) => t.name).sort()).toEqual(['demo', 'my script']);
    await again.stop();
  });

  it.each([[['--help']], [['-h']], [[]], [['token', 'create', '--help']]])('prints the usage for %j with exit 0', async (args) => {
    const result = await runCli(args, { DATA_DIR: tempDir(), DATABASE_URL: '' });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^Usage:\n {2}npm run cli -- token create --org <name>/);
    expect(result.stdout).toMatch(/POST \/tokens/);
    expect(result.stderr).not.toMatch(/Unknown/);
  });

  it('token create --json mints a token whose last stdout line is the documented JSON', async () => {
    const dataDir = migratedDataDir();
    const env = { DATA_DIR: dataDir, DATABASE_URL: '' };
    const first = await runCli(
      ['token', 'create', '--org', 'Acme Ltd', '--plan', 'pro', '--env', 'live', '--scopes', 'clients:read,clients:write', '--json'],
      env,
    );
    expect(first.code, first.stderr).toBe(0);
    const minted = lastJsonLine(first.stdout);
    expect(Object.keys(minted).sort()).toEqual(['env', 'orgId', 'plan', 'scopes', 'token', 'tokenId']);
    expect(minted).toMatchObject({ env: 'live', plan: 'pro', scopes: ['clients:read', 'clients:write'] });
    expect(minted.token).toMatch(/^hsk_live_[A-Za-z0-9]{12}_[A-Za-z0-9]{32}$/);

    // Same organisation by name: no new one; a plan given changes it; defaults are test and all scopes.
    const second = lastJsonLine((await runCli(['token', 'create', '--org', 'Acme Ltd', '--json'], env)).stdout);
    expect(second).toMatchObject({
      orgId: minted.orgId,
      plan: 'pro',
      env: 'test',
      scopes: ['clients:read', 'clients:write', 'tokens:manage', 'events:read', 'webhooks:manage'],
    });
    const third = lastJsonLine((await runCli(['token', 'create', '--org', 'Acme Ltd', '--plan', 'studio', '--json'], env)).stdout);
    expect(third).toMatchObject({ orgId: minted.orgId, plan: 'studio' });

    const server = await startServerProcess(env);
    servers.push(server);
    const response = await fetch(`${server.url}/clients`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${minted.token}`, 'Content-Type': 'application/json' },
      body: '{"name":"From the CLI"}',
    });
    expect(response.status).toBe(201);
    expect((await readJson(response)).data.orgId).toBe(minted.orgId);
    await server.stop();
  });

  it('idempotency purge removes every expired key, however many (more than any one batch), and keeps live ones', async () => {
    const dataDir = migratedDataDir();
    const env = { DATA_DIR: dataDir, DATABASE_URL: '' };
    const minted = lastJsonLine((await runCli(['token', 'create', '--org', 'Purge', '--json'], env)).stdout);
    const handle = await openDatabase({ dataDir });
    const insertKeys = (prefix: string, count: number, expiresAt: Date) =>
      sql`
        insert into idempotency_keys (org_id, env, key, fingerprint, response_status, response_body, response_headers, expires_at)
        select ${minted.orgId}, 'test', ${prefix} || i, 'f', 201, '{}', '{}', ${expiresAt}::timestamptz
        from generate_series(1, ${count}::int) as i
      `.execute(handle.db);
    await insertKeys('old-', 25_000, new Date(Date.now() - 1000));
    await insertKeys('live-', 1, new Date(Date.now() + 3_600_000));
    await handle.close();
    const purge = await runCli(['idempotency', 'purge'], env);
    expect(purge.code, purge.stderr).toBe(0);
    expect(purge.stdout).toMatch(/Purged 25000 expired idempotency keys/);
    const after = await openDatabase({ dataDir });
    expect((await after.db.selectFrom('idempotency_keys').select('key').execute()).map((r) => r.key)).toEqual(['live-1']);
    await after.close();
  });

  it('token list, token revoke and org set-plan manage an organisation', async () => {
    const env = { DATA_DIR: migratedDataDir(), DATABASE_URL: '' };
    const cli = (...args: string[]) => runCli(args, env);
    const first = lastJsonLine((await cli('token', 'create', '--org', 'Acme Ltd', '--name', 'laptop', '--json')).stdout);
    const second = lastJsonLine(
      (await cli('token', 'create', '--org', 'Acme Ltd', '--env', 'live', '--scopes', 'clients:read', '--json')).stdout,
    );

    const listed = await cli('token', 'list', '--org', 'Acme Ltd', '--json');
    expect(listed.code, listed.stderr).toBe(0);
    const tokens = lastJsonLine(listed.stdout);
    expect(tokens.map((t: { id: string }) => t.id)).toEqual([second.tokenId, first.tokenId]);
    expect(tokens[1]).toMatchObject({ name: 'laptop', env: 'test', prefix: first.token.split('_')[2], revokedAt: null });
    expect(listed.stdout).not.toContain(first.token.split('_')[3]);
    const human = await cli('token', 'list', '--org', 'Acme Ltd');
    expect(human.stdout).toContain(`hsk_live_${second.token.split('_')[2]}_…`);
    expect(human.stdout).not.toContain(second.token.split('_')[3]);

    // Revoking again keeps the first revokedAt.
    const revoked = await cli('token', 'revoke', '--id', first.tokenId);
    expect(revoked.code, revoked.stderr).toBe(0);
    const revokedAt = /is revoked since (\S+);/.exec(revoked.stdout)?.[1];
    expect(revokedAt).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect((await cli('token', 'revoke', '--id', first.tokenId)).stdout).toContain(`is revoked since ${revokedAt};`);

    const planned = await cli('org', 'set-plan', '--org', 'Acme Ltd', '--plan', 'studio');
    expect(planned.code, planned.stderr).toBe(0);
    expect(planned.stdout).toMatch(/plan studio \(was free\): unlimited active clients/);
    expect(lastJsonLine((await cli('token', 'create', '--org', 'Acme Ltd', '--json')).stdout).plan).toBe('studio');
  });

  it('token create obeys the limit of 100 active tokens per environment (exit 1 saying so); token list still lists them all', async () => {
    const env = { DATA_DIR: migratedDataDir(), DATABASE_URL: '' };
    const first = lastJsonLine((await runCli(['token', 'create', '--org', 'Full', '--json'], env)).stdout);
    const handle = await openDatabase({ dataDir: env.DATA_DIR });
    const filler = (i: number, extra: { env?: 'test' | 'live'; revoked_at?: Date } = {}) => ({
      org_id: first.orgId,
      env: 'test' as const,
      name: `Filler ${i}`,
      prefix: `F${String(i).padStart(11, '0')}`,
      secret_hash: Buffer.alloc(32, i),
      scopes: ['clients:read'],
      ...extra,
    });
    await handle.db
      .insertInto('api_tokens')
      .values([
        ...Array.from({ length: 99 }, (_, i) => filler(i)),
        ...Array.from({ length: 20 }, (_, i) => filler(100 + i, { revoked_at: new Date() })),
        ...Array.from({ length: 3 }, (_, i) => filler(200 + i, { env: 'live' })),
      ])
      .execute();
    await handle.close();

    const refused = await runCli(['token', 'create', '--org', 'Full', '--json'], env);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/has 100 active tokens in its test environment, the most it can have; revoke one first/);
    expect(refused.stderr).not.toMatch(/Usage:/);
    expect(refused.stdout).not.toMatch(/hsk_/);
    const live = await runCli(['token', 'create', '--org', 'Full', '--env', 'live', '--json'], env);
    expect(live.code, live.stderr).toBe(0);

    const listed = await runCli(['token', 'list', '--org', 'Full', '--json'], env);
    expect(listed.code, listed.stderr).toBe(0);
    const tokens: { env: string }[] = lastJsonLine(listed.stdout);
    expect(tokens).toHaveLength(1 + 99 + 20 + 3 + 1);
    expect(tokens.filter((t) => t.env === 'live')).toHaveLength(4);
  });

  it.each([
    [['org', 'set-plan', '--org', 'Nobody', '--plan', 'pro'], /no organisation named "Nobody"/],
    [['token', 'list', '--org', 'Nobody'], /no organisation named "Nobody"/],
    [['token', 'revoke', '--id', '00000000-0000-4000-8000-000000000000'], /no token with id 00000000-0000-4000-8000-000000000000/],
  ])('says plainly what is not there: %j exits 1', async (args, message) => {
    const result = await runCli(args, { DATA_DIR: migratedDataDir(), DATABASE_URL: '' });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).not.toMatch(/Usage:/);
  });

  it.each([
    [['token', 'create'], /--org <name> is required/],
    [['token', 'create', '--org', 'A', '--plan', 'gold'], /--plan must be one of free, pro, studio/],
    [['token', 'create', '--org', 'A', '--env', 'prod'], /--env must be one of test, live/],
    [['token', 'create', '--org', 'A', '--scopes', 'clients:delete'], /--scopes must be one of/],
    [['token', 'create', '--org', 'A', '--bogus'], /Unknown option/],
    [['token', 'create', '--org', 'A', '--name', '  '], /--name must be text of 1 to 200 characters/],
    [['token', 'list'], /--org <name> is required/],
    [['token', 'list', '--org', 'A', '--plan', 'pro'], /Unknown option/],
    [['token', 'revoke'], /--id <tokenId> is required/],
    [['token', 'revoke', '--id', '42'], /--id must be a token id/],
    [['token', 'revoke', '--id', '0B7D5A1E-2C4F-4E8A-9B6D-3F1A2C5E7D90'], /--id must be a token id/],
    [['org', 'set-plan', '--org', 'A'], /--plan free\|pro\|studio is required/],
    [['org', 'set-plan', '--plan', 'pro'], /--org <name> is required/],
    [['org', 'set-plan', '--org', 'A', '--plan', 'gold'], /--plan must be one of free, pro, studio/],
    [['org', 'delete', '--org', 'A'], /Unknown command: org delete/],
    [['nothing'], /Unknown command/],
  ])('refuses bad usage %j with exit 2', async (args, message) => {
    const result = await runCli(args, { DATA_DIR: tempDir(), DATABASE_URL: '' });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).toMatch(/Usage:/);
  });
});

describe('the webhook secrets’ key', { timeout: 180_000 }, () => {
  // Nothing listens here: a process that got as far as the database would fail otherwise.
  const unreachable = 'postgres://postgres@127.0.0.1:1/clients';

  it.each([['server/main.ts'], ['server/worker-main.ts']])(
    '%s on PostgreSQL without WEBHOOK_SECRET_KEY exits 1 before anything else, saying how to make one',
    async (entry) => {
      const result = await runEntry(entry, [], { DATABASE_URL: unreachable, WEBHOOK_SECRET_KEY: '', DATA_DIR: tempDir() });
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/WEBHOOK_SECRET_KEY is not set/);
      expect(result.stderr).toMatch(/openssl rand -base64 32/);
      expect(result.stderr).not.toMatch(/ECONNREFUSED|at .*\.ts:\d+/);
    },
  );

  it.each([
    ['server/main.ts', { REDIS_URL: 'http://cache:6379' }, /REDIS_URL must be a redis:\/\/ or rediss:\/\/ URL/],
    ['server/worker-main.ts', { REDIS_URL: 'redis://cache/zero' }, /REDIS_URL: the path must be a database number/],
    ['server/main.ts', { OTEL_TRACES_EXPORTER: 'zipkin' }, /OTEL_TRACES_EXPORTER: zipkin is not an exporter/],
  ])('%s refuses a bad setting (%j) with its sentence and exit 1, no stack', async (entry, env, message) => {
    const result = await runEntry(entry, [], { DATABASE_URL: unreachable, WEBHOOK_SECRET_KEY: randomBytes(32).toString('base64'), ...env });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).not.toMatch(/^\s+at /m);
  });

  it('npm start refuses a WEBHOOK_SECRET_KEY_FILE inside DATA_DIR, and makes no key there', async () => {
    const dataDir = tempDir();
    const keyFile = join(dataDir, 'keys', 'webhook.key');
    const result = await runEntry('server/main.ts', [], { DATABASE_URL: '', DATA_DIR: dataDir, WEBHOOK_SECRET_KEY_FILE: keyFile });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/WEBHOOK_SECRET_KEY_FILE .* is inside DATA_DIR/);
    expect(existsSync(keyFile)).toBe(false);
  });

  it('npm start moves a key an earlier version made inside DATA_DIR out of it, and says so', async () => {
    const dataDir = migratedDataDir();
    const old = randomBytes(32).toString('base64');
    writeFileSync(join(dataDir, 'webhook-secret.key'), `${old}\n`, { mode: 0o600 });
    const server = await startServerProcess({ DATA_DIR: dataDir, DATABASE_URL: '' });
    servers.push(server);
    await server.stop();
    const keyFile = join(dirname(dataDir), '.secrets', 'webhook-secret.key');
    expect(readFileSync(keyFile, 'utf8').trim()).toBe(old);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(existsSync(join(dataDir, 'webhook-secret.key'))).toBe(false);
    expect(server.stdout()).toMatch(/moved the webhook secret key out of the data directory/);
  });
});

describe.runIf(usingPostgres)('on PostgreSQL', { timeout: 120_000 }, () => {
  it('migrate and token create work against DATABASE_URL', async () => {
    const database = await createTestDatabase();
    try {
      const env = { DATABASE_URL: database.url };
      const migrate = await runCli(['migrate'], env);
      expect(migrate.code, migrate.stderr).toBe(0);
      expect(migrate.stdout).toMatch(/up to date/);
      const minted = lastJsonLine((await runCli(['token', 'create', '--org', 'Pg Org', '--json'], env)).stdout);
      const row = await database.db.selectFrom('organisations').selectAll().where('id', '=', minted.orgId).executeTakeFirstOrThrow();
      expect(row).toMatchObject({ name: 'Pg Org', plan: 'free' });
    } finally {
      await database.close();
    }
  });
});
