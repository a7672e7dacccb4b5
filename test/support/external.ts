/**
 * External daemons the topology tests run (PgBouncer, HAProxy): each on a free port, with a
 * generated configuration in its own temporary directory, in the foreground as a child process,
 * stopped (and its directory removed) by `stop()`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stopProcess } from './processes.js';

/** Every child a test started here, killed if the test process exits without stopping it. */
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
});

/** Kill `child` with the test process if it is still running then. */
export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export const PGBOUNCER = '/usr/sbin/pgbouncer';
export const HAPROXY = '/usr/sbin/haproxy';
export const havePgbouncer = existsSync(PGBOUNCER);
export const haveHaproxy = existsSync(HAPROXY);

/** A port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((found, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => found(port));
    });
  });
}

/** Resolves once something accepts connections on the port; fails after `timeoutMs`. */
export async function waitForPort(port: number, child: ChildProcess, output: () => string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode}:\n${output()}`);
    const open = await new Promise<boolean>((answered) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        answered(true);
      });
      socket.once('error', () => answered(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nothing listened on ${port} within ${timeoutMs} ms:\n${output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface Daemon {
  port: number;
  child: ChildProcess;
  output: () => string;
  stop(): Promise<void>;
}

export async function startDaemon(
  command: string,
  args: (dir: string) => string[],
  files: (dir: string, port: number) => Record<string, string>,
): Promise<Daemon> {
  const dir = mkdtempSync(join(tmpdir(), 'clients-api-daemon-'));
  // PgBouncer drops to the postgres user: it must read its files.
  chmodSync(dir, 0o755);
  const port = await freePort();
  for (const [name, text] of Object.entries(files(dir, port))) {
    writeFileSync(join(dir, name), text);
    chmodSync(join(dir, name), 0o644);
  }
  const child = track(spawn(command, args(dir), { stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.on('data', (d) => (out += d));
  const stop = async () => {
    await stopProcess(child);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForPort(port, child, () => out);
  } catch (error) {
    await stop();
    throw error;
  }
  return { port, child, output: () => out, stop };
}

/**
 * PgBouncer (Debian's 1.18) in front of the PostgreSQL of `databaseUrl`, in `mode`; `poolSize`
 * server connections per database and user. Returns the daemon; connect to 127.0.0.1:port.
 */
export function startPgbouncer(databaseUrl: string, options: { mode: 'transaction' | 'session'; poolSize: number }): Promise<Daemon> {
  const target = new URL(databaseUrl);
  return startDaemon(
    PGBOUNCER,
    (dir) => (process.getuid?.() === 0 ? ['-u', 'postgres', join(dir, 'pgbouncer.ini')] : [join(dir, 'pgbouncer.ini')]),
    (dir, port) => ({
      'pgbouncer.ini': [
        '[databases]',
        `* = host=${target.hostname} port=${target.port || 5432} user=${decodeURIComponent(target.username) || 'postgres'}`,
        '[pgbouncer]',
        'listen_addr = 127.0.0.1',
        `listen_port = ${port}`,
        "unix_socket_dir = ''",
        'auth_type = trust',
        `auth_file = ${join(dir, 'users.txt')}`,
        `pool_mode = ${options.mode}`,
        `default_pool_size = ${options.poolSize}`,
        'max_client_conn = 500',
        'ignore_startup_parameters = extra_float_digits',
        '',
      ].join('\n'),
      'users.txt': '"postgres" ""\n',
    }),
  );
}

/** `url` with its host and port replaced: the same database through PgBouncer. */
export function throughPort(url: string, port: number): string {
  const through = new URL(url);
  through.hostname = '127.0.0.1';
  through.port = String(port);
  return through.toString();
}

/**
 * HAProxy (Debian's 2.6) in front of `backends` (ports on 127.0.0.1), round robin, each checked
 * with `GET /readyz` every 200 ms (one failure, a 503 or a refused connection, takes it out; one
 * success puts it back; a check may take 5 s, as a loaded database can make it slow); a request
 * whose connection fails is sent to another backend. Its stats are at `statsPort` (`/stats;csv`).
 */
export async function startHaproxy(backends: number[]): Promise<Daemon & { statsPort: number; upBackends(): Promise<string[]> }> {
  const statsPort = await freePort();
  const daemon = await startDaemon(
    HAPROXY,
    (dir) => ['-f', join(dir, 'haproxy.cfg'), '-db'],
    (_dir, port) => ({
      'haproxy.cfg': [
        'global',
        '  maxconn 2000',
        'defaults',
        '  mode http',
        '  timeout connect 2s',
        '  timeout client 30s',
        '  timeout server 30s',
        '  timeout http-keep-alive 5s',
        // A check may wait behind the load for the database; a draining server answers at once.
        '  timeout check 5s',
        '  retries 3',
        '  option redispatch 1',
        // One server connection per request: no reuse of a connection a draining server is closing.
        '  option http-server-close',
        '  retry-on conn-failure empty-response',
        'listen api',
        `  bind 127.0.0.1:${port}`,
        '  balance roundrobin',
        '  option httpchk GET /readyz',
        '  http-check expect status 200',
        '  default-server inter 200ms fall 1 rise 1',
        ...backends.map((backend, i) => `  server s${i} 127.0.0.1:${backend} check`),
        'listen stats',
        `  bind 127.0.0.1:${statsPort}`,
        '  stats enable',
        '  stats uri /stats',
        '',
      ].join('\n'),
    }),
  );
  return {
    ...daemon,
    statsPort,
    upBackends: async () => {
      const csv = await (await fetch(`http://127.0.0.1:${statsPort}/stats;csv`)).text();
      return csv
        .split('\n')
        .map((line) => line.split(','))
        .filter((fields) => fields[0] === 'api' && /^s\d+$/.test(fields[1] ?? '') && fields[17] === 'UP')
        .map((fields) => fields[1]!);
    },
  };
}
