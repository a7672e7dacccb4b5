/**
 * Scratch PostgreSQL 15 nodes for tests that need a server of their own (a streaming replica, a
 * restore from a backup), never the shared one at 5432: each node has a temporary directory (its
 * data directory, its unix socket directory, its log), a free port on 127.0.0.1, trust auth, and
 * is removed whole by `remove()`, or when the test process exits without removing it.
 *
 * PostgreSQL refuses to run as root: when the tests run as root (CI, this machine) every binary
 * runs as the `postgres` user (`runuser -u postgres --`) and the directories are that user's.
 */
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from './external.js';

export const PG_BIN = '/usr/lib/postgresql/15/bin';
export const havePostgresBinaries = existsSync(join(PG_BIN, 'initdb'));

const asRoot = process.getuid?.() === 0;
/** The owner of every node's files: `postgres` when we are root, else whoever runs the tests. */
const owner = asRoot ? postgresIds() : undefined;

function postgresIds(): { uid: number; gid: number } {
  const [uid, gid] = ['-u', '-g'].map((flag) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim()));
  return { uid: uid!, gid: gid! };
}

/** `command args…` as the owner of the nodes' files, when that is not us. */
export function asOwner(command: string, args: string[]): [string, string[]] {
  return asRoot ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args];
}

/** Runs a command as the nodes' owner; a failure carries its output. */
export async function runAsOwner(command: string, args: string[], options: { cwd?: string } = {}): Promise<string> {
  const [file, argv] = asOwner(command, args);
  try {
    const { stdout } = await promisify(execFile)(file, argv, { cwd: options.cwd ?? tmpdir(), maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${command} ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

/** A temporary directory the nodes' owner may write in; removed with the test process at the latest. */
export function scratchDirectory(prefix = 'clients-api-pg-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (owner) chownSync(dir, owner.uid, owner.gid);
  chmodSync(dir, 0o700);
  directories.add(dir);
  return dir;
}

export function removeScratchDirectory(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  directories.delete(dir);
}

/** Lines every node gets before the caller's own (later lines of postgresql.conf win). */
const BASE_CONF = [
  "listen_addresses = '127.0.0.1'",
  'wal_level = replica',
  'max_wal_senders = 10',
  'hot_standby = on',
  // A scratch node holds nothing a crash could lose that a test would miss.
  'fsync = off',
  'full_page_writes = off',
  "shared_buffers = '32MB'",
  'max_connections = 50',
];

export interface ScratchPostgres {
  port: number;
  /** The node's own directory: `data/`, `socket/`, `postgres.log` (and whatever a test puts there). */
  dir: string;
  dataDir: string;
  socketDir: string;
  /** `postgres://postgres@127.0.0.1:<port>/<database>`. */
  url(database?: string): string;
  start(): Promise<void>;
  /** `pg_ctl stop`: `fast` (the default) ends sessions and checkpoints; `immediate` is a crash. */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  readonly running: boolean;
  /** One statement on `database` (default `postgres`) over a connection of its own. */
  query<R extends pg.QueryResultRow = Record<string, unknown>>(text: string, values?: unknown[], database?: string): Promise<R[]>;
  /** A hot standby streaming from this node (pg_basebackup -R), started. */
  replica(options?: { conf?: string[] }): Promise<ScratchPostgres>;
  /** Ends recovery (pg_ctl promote -w): a standby becomes a primary. */
  promote(): Promise<void>;
  /** The last lines of the server's log, for a failure's message. */
  log(lines?: number): string;
  /** Stops it (immediately) if it runs, and deletes its directory. */
  remove(): Promise<void>;
}

export interface ScratchOptions {
  /** postgresql.conf lines after the defaults (`archive_mode = on`, …). */
  conf?: string[];
}

/** A new primary: initdb into a scratch directory, configured and started. */
export async function createScratchPostgres(options: ScratchOptions = {}): Promise<ScratchPostgres> {
  const node = await scratchNode();
  try {
    await runAsOwner(join(PG_BIN, 'initdb'), ['-D', node.dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
    node.configure(options.conf ?? []);
    await node.start();
    return node;
  } catch (error) {
    await node.remove();
    throw error;
  }
}

/**
 * A node whose data directory the caller fills (a restore from a backup, a base backup): its
 * directories and port exist; `configure` then `start` it.
 */
export async function scratchNode(): Promise<ScratchPostgres & { configure(conf: string[]): void }> {
  const dir = scratchDirectory();
  const dataDir = join(dir, 'data');
  const socketDir = join(dir, 'socket');
  const logFile = join(dir, 'postgres.log');
  for (const sub of [dataDir, socketDir]) {
    mkdirSync(sub, { mode: 0o700 });
    if (owner) chownSync(sub, owner.uid, owner.gid);
  }
  const port = await freePort();
  let running = false;
  const pgCtl = (args: string[]) => runAsOwner(join(PG_BIN, 'pg_ctl'), ['-D', dataDir, ...args]);

  const node = {
    port,
    dir,
    dataDir,
    socketDir,
    url: (database = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${database}`,
    get running() {
      return running;
    },
    configure(conf: string[]) {
      const file = join(dataDir, 'postgresql.conf');
      const own = [`port = ${port}`, `unix_socket_directories = '${socketDir}'`];
      writeFileSync(file, `${readFileSync(file, 'utf8')}\n# scratch-postgres\n${[...BASE_CONF, ...own, ...conf].join('\n')}\n`);
    },
    async start() {
      await pgCtl(['-w', '-t', '60', '-l', logFile, 'start']);
      running = true;
      live.add(node);
    },
    async stop(mode: 'fast' | 'immediate' = 'fast') {
      if (!running) return;
      await pgCtl(['-w', '-t', '60', '-m', mode, 'stop']);
      running = false;
      live.delete(node);
    },
    async query<R extends pg.QueryResultRow>(text: string, values: unknown[] = [], database = 'postgres') {
      const client = new pg.Client({ connectionString: node.url(database) });
      await client.connect();
      try {
        return (await client.query<R>(text, values)).rows;
      } finally {
        await client.end();
      }
    },
    async replica(options: { conf?: string[] } = {}) {
      const standby = await scratchNode();
      try {
        await runAsOwner(join(PG_BIN, 'pg_basebackup'), [
          ...['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres'],
          ...['-D', standby.dataDir, '-R', '-X', 'stream', '-c', 'fast', '--no-sync'],
        ]);
        standby.configure(options.conf ?? []);
        await standby.start();
        return standby;
      } catch (error) {
        await standby.remove();
        throw error;
      }
    },
    async promote() {
      await pgCtl(['-w', '-t', '60', 'promote']);
    },
    log(lines = 30) {
      return existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-lines).join('\n') : '';
    },
    async remove() {
      await node.stop('immediate').catch(() => {});
      removeScratchDirectory(dir);
    },
  };
  return node;
}

/** Nodes running and directories not yet removed: what the exit handler cleans up. */
const live = new Set<Pick<ScratchPostgres, 'dataDir'>>();
const directories = new Set<string>();
process.once('exit', () => {
  for (const node of live) {
    try {
      const [file, argv] = asOwner(join(PG_BIN, 'pg_ctl'), ['-D', node.dataDir, '-w', '-m', 'immediate', 'stop']);
      execFileSync(file, argv, { stdio: 'ignore' });
    } catch {
      // Already stopped.
    }
  }
  for (const dir of directories) rmSync(dir, { recursive: true, force: true });
});

/** Resolves once `check` is true, polling every `everyMs`; fails with `what` after `timeoutMs`. */
export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 20_000, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Until `standby` has replayed everything `primary` had written when this was called. */
export async function caughtUp(primary: ScratchPostgres, standby: ScratchPostgres): Promise<void> {
  const [{ lsn }] = (await primary.query<{ lsn: string }>('select pg_current_wal_flush_lsn()::text as lsn')) as [{ lsn: string }];
  await waitFor(`${standby.url()} to replay ${lsn}`, async () => {
    const [row] = await standby.query<{ done: boolean }>('select pg_last_wal_replay_lsn() >= $1::pg_lsn as done', [lsn]);
    return row?.done === true;
  });
}
