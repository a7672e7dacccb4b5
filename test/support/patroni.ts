/**
 * A highly available PostgreSQL 15 cluster for the failover suite (test/topology/failover.test.ts),
 * built as docs/high-availability.md describes it: one etcd (the v3 API, Patroni's `etcd3:`), N
 * nodes each under its own Patroni (synchronous replication, pg_rewind, ANALYZE after a promotion
 * by ops/patroni/on-role-change.sh), and HAProxy in front, sending connections to the node whose
 * Patroni REST API answers `GET /primary` 200. Every process on free ports, every file in one
 * temporary directory, removed by `stop()` (or when the test process exits).
 *
 * PostgreSQL refuses to run as root: when the tests run as root, Patroni (and so PostgreSQL) runs
 * as the `postgres` user, with its directories that user's (test/support/scratch-postgres.ts).
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { type Daemon, freePort, HAPROXY, startDaemon, track, waitForPort } from './external.js';
import { root, stopProcess } from './processes.js';
import { PG_BIN, removeScratchDirectory, scratchDirectory, waitFor } from './scratch-postgres.js';

const PATRONI = '/usr/bin/patroni';
const PATRONICTL = '/usr/bin/patronictl';
const ETCD = '/usr/bin/etcd';
export const haveHaStack = [PATRONI, PATRONICTL, ETCD, HAPROXY, join(PG_BIN, 'initdb')].every((file) => existsSync(file));

/** The script each node runs when it becomes the primary (docs/high-availability.md). */
export const ON_ROLE_CHANGE = join(root, 'ops/patroni/on-role-change.sh');

/**
 * Patroni's timing (its `bootstrap.dcs` section). The leader key lives `ttl` seconds unless the
 * leader renews it (every `loopWait` seconds); a lost leader's key expires at most `ttl` seconds
 * after its last renewal, and a replica sees that at its next loop, at most `loopWait` later, and
 * promotes. `retryTimeout`: how long a failing etcd or PostgreSQL call is retried before the
 * leader demotes itself (Patroni wants ttl >= loop_wait + 2 * retry_timeout).
 */
export interface PatroniTiming {
  ttl: number;
  loopWait: number;
  retryTimeout: number;
}

/** ttl 10 / loop_wait 2 / retry_timeout 3: a promotion 9 to 11 s after the leader is lost (checked here). */
export const FAST_FAILOVER: PatroniTiming = { ttl: 10, loopWait: 2, retryTimeout: 3 };

/** HAProxy's check of each node's `GET /primary`: every CHECK_INTERVAL_MS, down after 2 failures, up after 1 success. */
const CHECK_INTERVAL_MS = 500;

/**
 * The longest a primary can be missing after its node is lost outright: its leader key expires
 * (ttl), a replica sees it at its next loop (loop_wait), promotes (about a second), and HAProxy
 * sees the new primary at its next check.
 */
export function failoverBoundMs({ ttl, loopWait }: PatroniTiming): number {
  return (ttl + loopWait + 1) * 1000 + CHECK_INTERVAL_MS;
}

const asRoot = process.getuid?.() === 0;
const owner = asRoot ? { uid: id('-u'), gid: id('-g') } : undefined;
function id(flag: string): number {
  return Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
}

export interface PatroniNode {
  name: string;
  pgPort: number;
  restPort: number;
  dataDir: string;
  /** `postgres://postgres@127.0.0.1:<pgPort>/<database>`: this node itself, not through HAProxy. */
  url(database?: string): string;
  readonly running: boolean;
  /** Patroni's output (and PostgreSQL's, which Patroni passes on). */
  output(): string;
  /** Starts its Patroni (again): a stopped node rejoins as a replica, rewound if it must be. */
  start(): Promise<void>;
  /**
   * The node lost outright: its Patroni, its postmaster and every PostgreSQL process under it
   * stopped at once (SIGSTOP, so that none can notice the others going), then SIGKILLed.
   * PostgreSQL's backends are sessions of their own: killing the postmaster alone leaves them.
   * Resolves with the moment the SIGKILLs were sent (ms since the epoch).
   */
  kill(): Promise<number>;
}

export interface PatroniCluster {
  nodes: PatroniNode[];
  timing: PatroniTiming;
  /** Where HAProxy listens: connections go to the primary. */
  haproxyPort: number;
  /** `postgres://postgres@127.0.0.1:<haproxyPort>/<database>`. */
  url(database?: string): string;
  /** The node Patroni calls leader now (asked of any running node's REST API), if any. */
  leader(): Promise<PatroniNode | undefined>;
  /** Until a leader other than `not` runs as a primary that takes writes; returns it. */
  waitForLeader(options?: { not?: PatroniNode; timeoutMs?: number }): Promise<PatroniNode>;
  /** Until the leader streams to `count` replicas, one of them synchronous (and Patroni says which). */
  waitForReplicas(count: number, timeoutMs?: number): Promise<void>;
  /** `patronictl switchover --force`: a planned change of primary; resolves once the command returns. */
  switchover(): Promise<string>;
  /** HAProxy's log and every node's output, for a failure's message. */
  output(): string;
  stop(): Promise<void>;
}

interface Member {
  name: string;
  role: string;
  state: string;
}

async function getJson<T>(url: string): Promise<T | undefined> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
    return (await response.json()) as T;
  } catch {
    return undefined;
  }
}

/** One statement over a connection of its own, or undefined when the node cannot answer it. */
async function queryNode<R extends pg.QueryResultRow>(url: string, text: string): Promise<R[] | undefined> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
  client.on('error', () => {});
  try {
    await client.connect();
    return (await client.query<R>(text)).rows;
  } catch {
    return undefined;
  } finally {
    await client.end().catch(() => {});
  }
}

function ownedDirectory(path: string): string {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  if (owner) chownSync(path, owner.uid, owner.gid);
  return path;
}

function ownedFile(path: string, text: string, mode = 0o600): void {
  writeFileSync(path, text, { mode });
  if (owner) chownSync(path, owner.uid, owner.gid);
}

/** A child whose output is kept (the last 256 KB) for failure messages. */
function spawnKept(command: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd: string; asOwner?: boolean }) {
  const child = track(
    spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(options.asOwner && owner),
    }),
  );
  let out = '';
  const keep = (data: Buffer) => {
    out += data;
    if (out.length > 512 * 1024) out = out.slice(-256 * 1024);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return { child, output: () => out };
}

async function startEtcd(dir: string): Promise<Daemon> {
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const peer = `http://127.0.0.1:${peerPort}`;
  const { child, output } = spawnKept(
    ETCD,
    [
      '--name=etcd0',
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=http://127.0.0.1:${clientPort}`,
      `--advertise-client-urls=http://127.0.0.1:${clientPort}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=etcd0=${peer}`,
      '--initial-cluster-state=new',
      '--log-level=warn',
    ],
    { cwd: dir },
  );
  await waitForPort(clientPort, child, output);
  return { port: clientPort, child, output, stop: () => stopProcess(child) };
}

/** Patroni's configuration of one node (YAML; JSON is YAML). */
function patroniConfig(options: {
  scope: string;
  name: string;
  dir: string;
  pgPort: number;
  restPort: number;
  etcdPort: number;
  timing: PatroniTiming;
}): string {
  const { scope, name, dir, pgPort, restPort, etcdPort, timing } = options;
  return JSON.stringify(
    {
      scope,
      namespace: '/clients-api/',
      name,
      log: { level: 'INFO' },
      restapi: { listen: `127.0.0.1:${restPort}`, connect_address: `127.0.0.1:${restPort}` },
      etcd3: { hosts: `127.0.0.1:${etcdPort}`, protocol: 'http' },
      bootstrap: {
        dcs: {
          ttl: timing.ttl,
          loop_wait: timing.loopWait,
          retry_timeout: timing.retryTimeout,
          maximum_lag_on_failover: 1024 * 1024,
          // A commit is acknowledged once it is on a second node; only that node may be promoted.
          synchronous_mode: true,
          // With the last replica gone, the primary goes on alone rather than stop taking writes.
          synchronous_mode_strict: false,
          postgresql: {
            use_pg_rewind: true,
            use_slots: true,
            remove_data_directory_on_rewind_failure: true,
            remove_data_directory_on_diverged_timelines: true,
            parameters: {
              wal_log_hints: 'on',
              wal_keep_size: '256MB',
              max_connections: 100,
              max_wal_senders: 10,
              max_replication_slots: 10,
              hot_standby: 'on',
              shared_buffers: '32MB',
              // The nodes share one machine: a lost node is lost processes, never lost page cache.
              fsync: 'off',
            },
          },
        },
        initdb: [{ encoding: 'UTF8' }, 'data-checksums'],
      },
      postgresql: {
        listen: `127.0.0.1:${pgPort}`,
        connect_address: `127.0.0.1:${pgPort}`,
        data_dir: join(dir, 'data'),
        bin_dir: PG_BIN,
        // Its own, not the postgres user's ~/.pgpass, which Patroni would overwrite.
        pgpass: join(dir, 'pgpass'),
        authentication: {
          superuser: { username: 'postgres' },
          replication: { username: 'postgres' },
          rewind: { username: 'postgres' },
        },
        pg_hba: ['local all all trust', 'host all all 127.0.0.1/32 trust', 'host replication all 127.0.0.1/32 trust'],
        parameters: { unix_socket_directories: dir },
        callbacks: { on_role_change: ON_ROLE_CHANGE },
      },
      tags: { nofailover: false, noloadbalance: false, clonefrom: false, nosync: false },
    },
    null,
    2,
  );
}

/** The HAProxy of docs/high-availability.md: TCP, each node checked with `GET /primary` on its Patroni. */
function startPrimaryHaproxy(nodes: PatroniNode[]): Promise<Daemon> {
  return startDaemon(
    HAPROXY,
    (dir) => ['-f', join(dir, 'haproxy.cfg'), '-db'],
    (_dir, port) => ({
      'haproxy.cfg': [
        'global',
        '  maxconn 1000',
        'defaults',
        '  mode tcp',
        '  timeout connect 1s',
        '  timeout client 30m',
        '  timeout server 30m',
        '  timeout check 1s',
        'listen postgres',
        `  bind 127.0.0.1:${port}`,
        '  option httpchk GET /primary',
        '  http-check expect status 200',
        // A node that stops being the primary loses its sessions at once, not when they next fail.
        `  default-server inter ${CHECK_INTERVAL_MS}ms fall 2 rise 1 on-marked-down shutdown-sessions`,
        ...nodes.map((node) => `  server ${node.name} 127.0.0.1:${node.pgPort} check port ${node.restPort}`),
        '',
      ].join('\n'),
    }),
  );
}

export async function startPatroniCluster(options: { nodes?: number; timing?: PatroniTiming } = {}): Promise<PatroniCluster> {
  const count = options.nodes ?? 3;
  const timing = options.timing ?? FAST_FAILOVER;
  const dir = scratchDirectory('clients-api-patroni-');
  const scope = `clients-${process.pid}`;
  const stops: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const step of stops.splice(0).reverse()) await step().catch(() => {});
    removeScratchDirectory(dir);
  };
  try {
    const etcd = await startEtcd(dir);
    stops.push(etcd.stop);
    const nodes: (PatroniNode & { stop(): Promise<void> })[] = [];
    for (let i = 0; i < count; i++) {
      const name = `pg${i}`;
      const nodeDir = ownedDirectory(join(dir, name));
      const [pgPort, restPort] = [await freePort(), await freePort()];
      const config = join(nodeDir, 'patroni.yml');
      ownedFile(config, patroniConfig({ scope, name, dir: nodeDir, pgPort, restPort, etcdPort: etcd.port, timing }));
      let process_: ReturnType<typeof spawnKept> | undefined;
      let previous = '';
      const env = {
        ...process.env,
        HOME: nodeDir,
        // For the on_role_change script: this node's PostgreSQL.
        PGHOST: nodeDir,
        PGPORT: String(pgPort),
        PGUSER: 'postgres',
        PG_BIN,
      };
      const node = {
        name,
        pgPort,
        restPort,
        dataDir: join(nodeDir, 'data'),
        url: (database = 'postgres') => `postgres://postgres@127.0.0.1:${pgPort}/${database}`,
        get running() {
          return process_ !== undefined && process_.child.exitCode === null && process_.child.signalCode === null;
        },
        output: () => previous + (process_?.output() ?? ''),
        async start() {
          if (process_) previous += process_.output();
          process_ = spawnKept(PATRONI, [config], { cwd: nodeDir, env, asOwner: true });
          await waitForPort(restPort, process_.child, node.output, 30_000);
        },
        async kill() {
          const pids = [process_?.child.pid];
          const pidFile = join(node.dataDir, 'postmaster.pid');
          const postmaster = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').split('\n')[0]) : undefined;
          if (postmaster) {
            pids.push(postmaster);
            const children = await promisify(execFile)('ps', ['-o', 'pid=', '--ppid', String(postmaster)]).catch(() => ({ stdout: '' }));
            pids.push(...children.stdout.split('\n').filter(Boolean).map(Number));
          }
          const alive = pids.filter((pid): pid is number => typeof pid === 'number' && pid > 0);
          const signal = (name: NodeJS.Signals) => {
            for (const pid of alive) {
              try {
                process.kill(pid, name);
              } catch {
                // Already gone.
              }
            }
          };
          signal('SIGSTOP');
          const killedAt = Date.now();
          signal('SIGKILL');
          const child = process_?.child;
          if (child && child.exitCode === null && child.signalCode === null) await new Promise((exited) => child.once('exit', exited));
          return killedAt;
        },
        async stop() {
          // Patroni stops its PostgreSQL (fast) on SIGTERM.
          if (node.running) await stopProcess(process_!.child);
          // A PostgreSQL left by a killed Patroni.
          const pidFile = join(node.dataDir, 'postmaster.pid');
          if (existsSync(pidFile)) {
            try {
              process.kill(Number(readFileSync(pidFile, 'utf8').split('\n')[0]), 'SIGQUIT');
            } catch {
              // Not running.
            }
          }
        },
      };
      nodes.push(node);
      stops.push(() => node.stop());
    }

    const clusterMembers = async (): Promise<Member[]> => {
      for (const node of nodes) {
        if (!node.running) continue;
        const cluster = await getJson<{ members?: Member[] }>(`http://127.0.0.1:${node.restPort}/cluster`);
        if (cluster?.members) return cluster.members;
      }
      return [];
    };
    const leader = async () => {
      const name = (await clusterMembers()).find((member) => member.role === 'leader')?.name;
      return nodes.find((node) => node.name === name);
    };
    const output = () =>
      [`--- haproxy\n${haproxy?.output() ?? ''}`, ...nodes.map((node) => `--- ${node.name}\n${node.output().slice(-6000)}`)].join('\n');
    let haproxy: Daemon | undefined;

    const waitForLeader = async ({ not, timeoutMs = 60_000 }: { not?: PatroniNode; timeoutMs?: number } = {}) => {
      let found: PatroniNode | undefined;
      try {
        await waitFor(
          'a leader that takes writes',
          async () => {
            found = await leader();
            if (!found || found === not) return false;
            const rows = await queryNode<{ recovering: boolean }>(found.url(), 'select pg_is_in_recovery() as recovering');
            return rows?.[0]?.recovering === false;
          },
          timeoutMs,
          100,
        );
      } catch (error) {
        throw new Error(`${(error as Error).message}\n${output()}`);
      }
      return found!;
    };

    // The first node bootstraps the cluster; the others join as replicas (pg_basebackup).
    await nodes[0]!.start();
    await waitForLeader();
    for (const node of nodes.slice(1)) await node.start();
    haproxy = await startPrimaryHaproxy(nodes);
    stops.push(haproxy.stop);

    const cluster: PatroniCluster = {
      nodes,
      timing,
      haproxyPort: haproxy.port,
      url: (database = 'postgres') => `postgres://postgres@127.0.0.1:${haproxy!.port}/${database}`,
      leader,
      waitForLeader,
      async waitForReplicas(replicas, timeoutMs = 90_000) {
        try {
          await waitFor(
            `${replicas} streaming replicas, one synchronous`,
            async () => {
              const primary = await leader();
              if (!primary) return false;
              const rows = await queryNode<{ streaming: number; sync: number }>(
                primary.url(),
                `select count(*)::int as streaming, count(*) filter (where sync_state = 'sync')::int as sync
                   from pg_stat_replication where state = 'streaming'`,
              );
              if (rows?.[0]?.streaming !== replicas || rows[0].sync !== 1) return false;
              // And Patroni has recorded which one is synchronous (the only one it may promote).
              return (await clusterMembers()).some((member) => member.role === 'sync_standby');
            },
            timeoutMs,
            200,
          );
        } catch (error) {
          throw new Error(`${(error as Error).message}\n${output()}`);
        }
      },
      async switchover() {
        const config = join(dir, nodes.find((node) => node.running)!.name, 'patroni.yml');
        const { stdout, stderr } = await promisify(execFile)(PATRONICTL, ['-c', config, 'switchover', '--force', scope], {
          cwd: dir,
        });
        return stdout + stderr;
      },
      output,
      stop,
    };
    return cluster;
  } catch (error) {
    await stop();
    throw error;
  }
}
