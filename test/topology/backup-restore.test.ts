/**
 * Backups proven by a restore (docs/operations.md, "Backups and point-in-time recovery"): a
 * scratch PostgreSQL 15 primary archives its WAL to a pgBackRest repository in a temporary
 * directory; a full backup is taken; the service (the built server, as deployed) creates clients
 * before a point in time T and after it; a differential backup and more archived WAL follow; the
 * backup is restored to T on a new scratch node (`--type=time --target=T --target-action=promote`),
 * and the service started on that node has every client acknowledged before T, as it was then,
 * with its events and its stored Idempotency-Key, and nothing acknowledged after T.
 *
 * And what a restore to the past does to the feed: the restored node hands out again the
 * transaction ids that the lost time after T had used, so a consumer holding a cursor from past T
 * would miss new events; a new epoch of transaction ids (`pg_resetwal -e`) puts them after it.
 *
 * T is unambiguous: it is read from the database's own clock after the last create before it was
 * acknowledged, and the creates after it start only once it has been read. Every commit before T
 * has an earlier commit timestamp, every commit after it a later one.
 *
 * Runs when TEST_DATABASE_URL is set (the PostgreSQL suite) and /usr/bin/pgbackrest is there (CI
 * installs Debian's `pgbackrest`).
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chownSync, copyFileSync, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ClientsApi, createClientsApi } from '../../client/index.js';
import { openDatabase } from '../../server/db/database.js';
import { migrateOrThrow } from '../../server/db/migrate.js';
import { mintTokenForOrganisation, type MintedToken } from '../../server/tokens/tokens.service.js';
import { usingPostgres } from '../support/database.js';
import { track } from '../support/external.js';
import { root, startServerProcess, type RunningServer } from '../support/processes.js';
import {
  createScratchPostgres,
  havePostgresBinaries,
  PG_BIN,
  runAsOwner,
  removeScratchDirectory,
  type ScratchPostgres,
  scratchDirectory,
  scratchNode,
  waitFor,
} from '../support/scratch-postgres.js';
import { specCheckingFetch } from '../support/spec-check.js';

const PGBACKREST = '/usr/bin/pgbackrest';
const configured = usingPostgres && havePostgresBinaries && existsSync(PGBACKREST);
const BUNDLE = 'dist/backup-restore/server/main.js';
const STANZA = 'clients';
const DATABASE = 'clients';

describe.runIf(configured)('a pgBackRest backup restored to a point in time', { timeout: 180_000 }, () => {
  let repoDir: string;
  let configFile: string;
  let primary: ScratchPostgres;
  let restored: ScratchPostgres | undefined;
  /** Left by the first test for the second: the service on the restored node, what it kept, a cursor from past T. */
  let restoredApi: ClientsApi;
  let kept: string[];
  let lostCursor: string;
  const servers: RunningServer[] = [];

  /** `pgbackrest --stanza=clients <args>` with this test's configuration, as the nodes' owner. */
  const pgbackrest = (...args: string[]) => runAsOwner(PGBACKREST, [`--config=${configFile}`, `--stanza=${STANZA}`, ...args]);

  const startService = async (node: ScratchPostgres) => {
    const server = await startServerProcess({ DATABASE_URL: node.url(DATABASE) }, ['node', BUNDLE]);
    track(server.child);
    servers.push(server);
    return server;
  };
  /** The nextCursor at the end of the feed, as a consumer that has read it all holds it. */
  const feedEnd = async (api: ClientsApi) => {
    let after: string | undefined;
    for (;;) {
      const { data } = await api.GET('/events', { params: { query: { limit: 100, ...(after && { after }) } } });
      after = data!.nextCursor;
      if (!data!.hasMore) return after;
    }
  };
  const apiFor = (server: RunningServer, token: MintedToken): ClientsApi =>
    createClientsApi({ baseUrl: server.url, token: token.token, retry: false, fetch: specCheckingFetch() });

  beforeAll(async () => {
    await promisify(execFile)(join(root, 'node_modules/.bin/tsx'), ['scripts/bundle-server.ts', BUNDLE], { cwd: root });
    mkdirSync(join(root, 'dist/backup-restore/generated'), { recursive: true });
    copyFileSync(join(root, 'generated/docs.html'), join(root, 'dist/backup-restore/generated/docs.html'));

    repoDir = scratchDirectory('clients-api-pgbackrest-');
    configFile = join(repoDir, 'pgbackrest.conf');
    // WAL is archived from the start; archive-push fails (and PostgreSQL keeps the segment and
    // retries) until the stanza exists.
    primary = await createScratchPostgres({
      conf: ['archive_mode = on', `archive_command = '${PGBACKREST} --config=${configFile} --stanza=${STANZA} archive-push %p'`],
    });
    writeFileSync(
      configFile,
      [
        '[global]',
        `repo1-path=${join(repoDir, 'repo')}`,
        'repo1-retention-full=2',
        `log-path=${join(repoDir, 'log')}`,
        `lock-path=${join(repoDir, 'lock')}`,
        'log-level-console=warn',
        'log-level-file=detail',
        'start-fast=y',
        'compress-type=lz4',
        '',
        `[${STANZA}]`,
        `pg1-path=${primary.dataDir}`,
        `pg1-port=${primary.port}`,
        `pg1-socket-path=${primary.socketDir}`,
        'pg1-user=postgres',
        '',
      ].join('\n'),
    );
    const { uid, gid } = statSync(repoDir);
    chownSync(configFile, uid, gid);
    await pgbackrest('stanza-create');
    // Archiving works end to end (a WAL switch reaches the repository), or this says why.
    await pgbackrest('check');
  }, 120_000);

  afterAll(async () => {
    for (const server of servers) await server.stop();
    await restored?.remove();
    await primary?.remove();
    if (repoDir) removeScratchDirectory(repoDir);
  });

  it('has every client acknowledged before T, as it was then, with its events and its Idempotency-Key, and nothing after T', async () => {
    await primary.query(`create database ${DATABASE}`);
    const setup = await openDatabase({ databaseUrl: primary.url(DATABASE) });
    await migrateOrThrow(setup.db);
    const token = await mintTokenForOrganisation(setup.db, { orgName: `restore-${randomUUID()}`, plan: 'studio' });
    await setup.close();
    await pgbackrest('--type=full', 'backup');
    // pgBackRest keeps a backup's stop time in whole seconds and restores to T only from a backup
    // that stopped before it: T must fall in a later second than the full backup's stop, however
    // fast the writes before T are (CI once took T in the same second).
    const [full] = (JSON.parse(await pgbackrest('--output=json', 'info')) as { backup: { timestamp: { stop: number } }[] }[])[0]!.backup;
    const stoppedAt = full!.timestamp.stop;
    expect(stoppedAt).toBeGreaterThan(0);
    while (Date.now() / 1000 < stoppedAt + 1.5) await new Promise((resolve) => setTimeout(resolve, 100));

    const service = await startService(primary);
    const api = apiFor(service, token);
    const create = async (name: string, key = randomUUID()) => {
      const { data, response } = await api.POST('/clients', { body: { name }, headers: { 'Idempotency-Key': key } });
      expect(response.status).toBe(201);
      return data!.data;
    };

    // Before T: ten clients (the first with a key kept to replay), one changed.
    const keyBefore = randomUUID();
    const before = [await create('Before 0', keyBefore)];
    for (let i = 1; i < 10; i++) before.push(await create(`Before ${i}`));
    const changed = await api.PATCH('/clients/{id}', { params: { path: { id: before[3]!.id } }, body: { notes: 'before T' } });
    expect(changed.response.status).toBe(200);
    before[3] = changed.data!.data;
    const [{ t }] = (await primary.query<{ t: string }>(
      `select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' as t`,
    )) as [{ t: string }];

    // After T: ten more, a change to a client of before, a deletion, and a new key.
    const keyAfter = randomUUID();
    const after = [await create('After 0', keyAfter)];
    for (let i = 1; i < 10; i++) after.push(await create(`After ${i}`));
    // Transaction ids the restored node will hand out again (below, the feed's cursor from here).
    for (let i = 0; i < 30; i++) await primary.query('select pg_current_xact_id()', [], DATABASE);
    expect(
      (await api.PATCH('/clients/{id}', { params: { path: { id: before[0]!.id } }, body: { notes: 'after T' } })).response.status,
    ).toBe(200);
    expect((await api.DELETE('/clients/{id}', { params: { path: { id: before[1]!.id } } })).response.status).toBe(200);
    // A consumer that read the feed to its end now holds a cursor past T.
    lostCursor = await feedEnd(api);
    // More WAL on top of the full backup: a differential backup, and the last segment archived.
    await pgbackrest('--type=diff', 'backup');
    await pgbackrest('check');
    const info = JSON.parse(await pgbackrest('--output=json', 'info')) as { backup: { type: string }[] }[];
    expect(info[0]!.backup.map((backup) => backup.type)).toEqual(['full', 'diff']);

    // A scratch node restored to T: pgBackRest picks the backup that ends before T (the full one)
    // and replays the archived WAL up to T. It archives nothing itself.
    const node = await scratchNode();
    restored = node;
    await pgbackrest(
      `--pg1-path=${node.dataDir}`,
      '--type=time',
      `--target=${t}`,
      '--target-action=promote',
      '--archive-mode=off',
      'restore',
    );
    node.configure([]);
    await node.start();
    await waitFor('the restored node to promote', async () => {
      const [row] = await node.query<{ recovering: boolean }>('select pg_is_in_recovery() as recovering');
      return row?.recovering === false;
    });

    restoredApi = apiFor(await startService(node), token);
    for (const client of before) {
      const { data, response } = await restoredApi.GET('/clients/{id}', { params: { path: { id: client.id } } });
      expect(response.status, client.name).toBe(200);
      expect(data!.data, client.name).toEqual(client);
    }
    for (const client of after) {
      const { response } = await restoredApi.GET('/clients/{id}', { params: { path: { id: client.id } } });
      expect(response.status, client.name).toBe(404);
    }
    const list = await restoredApi.GET('/clients', { params: { query: { limit: 100 } } });
    expect(list.data!.data.map((client) => client.name).sort()).toEqual(before.map((client) => client.name).sort());

    // The feed as it was at T: the creates and the one change before it, in order.
    const feed = await restoredApi.GET('/events', { params: { query: { limit: 100 } } });
    expect(feed.data!.data.map((event) => [event.type, event.data.object.id])).toEqual([
      ...before.slice(0, 10).map((client) => ['client.created', client.id]),
      ['client.updated', before[3]!.id],
    ]);

    // The key stored before T replays its first answer; the one stored after T is unknown there.
    const replay = await restoredApi.POST('/clients', { body: { name: 'Before 0' }, headers: { 'Idempotency-Key': keyBefore } });
    expect(replay.response.status).toBe(201);
    expect(replay.response.headers.get('Idempotent-Replayed')).toBe('true');
    expect(replay.data!.data.id).toBe(before[0]!.id);
    const fresh = await restoredApi.POST('/clients', { body: { name: 'After 0' }, headers: { 'Idempotency-Key': keyAfter } });
    expect(fresh.response.status).toBe(201);
    expect(fresh.response.headers.get('Idempotent-Replayed')).toBeNull();
    expect(fresh.data!.data.id).not.toBe(after[0]!.id);
    kept = [...before.slice(0, 10).map((client) => client.id), before[3]!.id, fresh.data!.data.id];
  });

  it('hands out transaction ids of past T again, so a feed cursor from past T misses new events until a new epoch of them', async () => {
    const node = restored!;
    const create = async (name: string) => {
      const { data, response } = await restoredApi.POST('/clients', { body: { name } });
      expect(response.status).toBe(201);
      return data!.data;
    };
    // A cursor given out after T points past the restored node's new events: its consumer misses
    // them. A new epoch of transaction ids (pg_resetwal -e, the node stopped cleanly) puts every
    // new event after every cursor of before the restore.
    const hidden = await create('Written After The Restore');
    expect((await restoredApi.GET('/events', { params: { query: { after: lostCursor } } })).data!.data).toEqual([]);
    const [{ epoch }] = (await node.query<{ epoch: string }>('select (pg_current_xact_id()::text::bigint >> 32)::text as epoch')) as [
      { epoch: string },
    ];
    await node.stop('fast');
    await runAsOwner(join(PG_BIN, 'pg_resetwal'), ['-e', String(BigInt(epoch) + 1n), node.dataDir]);
    await node.start();
    await waitFor('the service to reach the database again', async () => (await restoredApi.GET('/clients')).response.status === 200);
    const seen = await create('Written In The New Epoch');
    const afterLost = await restoredApi.GET('/events', { params: { query: { after: lostCursor } } });
    expect(afterLost.data!.data.map((event) => event.data.object.id)).toEqual([seen.id]);
    // And the whole feed is still in order: what was kept, then what came after the restore.
    const whole = await restoredApi.GET('/events', { params: { query: { limit: 100 } } });
    expect(whole.data!.data.map((event) => event.data.object.id)).toEqual([...kept, hidden.id, seen.id]);
  });
});
