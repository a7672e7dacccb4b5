/** Runs the real entry points (CLI, server) as separate processes, as a user would. */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';

export const root = resolve(import.meta.dirname, '../..');
const tsx = resolve(root, 'node_modules/.bin/tsx');

/**
 * The WEBHOOK_SECRET_KEY every process started here on PostgreSQL is given unless its test says
 * otherwise: servers and workers on one database must share one, and on PostgreSQL a process
 * without it does not start.
 */
const TEST_WEBHOOK_SECRET_KEY = randomBytes(32).toString('base64');

/** `env` for a server or worker process: on PostgreSQL, with the test's webhook key unless `env` sets one. */
function processEnv(env: Record<string, string | undefined>): Record<string, string | undefined> {
  return { ...(env.DATABASE_URL ? { WEBHOOK_SECRET_KEY: TEST_WEBHOOK_SECRET_KEY } : {}), ...env };
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `script` (an entry point under server/) through tsx to its end. */
export function runEntry(script: string, args: string[], env: Record<string, string | undefined>): Promise<RunResult> {
  return new Promise((done, fail) => {
    const child = spawn(tsx, [script, ...args], { cwd: root, env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', fail);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

/** `npm run cli -- <args>`, run straight through tsx to skip npm's own start-up. */
export function runCli(args: string[], env: Record<string, string | undefined>): Promise<RunResult> {
  return runEntry('server/cli.ts', args, env);
}

/** SIGTERM, resolved once the process has exited (at once if it already has). */
export function stopProcess(child: ChildProcess): Promise<void> {
  return new Promise((stopped) => {
    if (child.exitCode !== null) return stopped();
    child.once('exit', () => stopped());
    child.kill('SIGTERM');
  });
}

export interface RunningServer {
  child: ChildProcess;
  url: string;
  stdout: () => string;
  stderr: () => string;
  stop(): Promise<void>;
}

/**
 * Starts server/main.ts on a free port and waits until it listens; `command` runs another entry
 * point instead (the built bundle: ['node', 'dist/server/main.js']). `options.cwd`: where it runs
 * (the repository by default); `options.detached`: in a process group of its own, as a service
 * manager starts it (signal the group with `process.kill(-child.pid, signal)`).
 */
export function startServerProcess(
  env: Record<string, string | undefined>,
  command: string[] = [tsx, 'server/main.ts'],
  options: { cwd?: string; detached?: boolean } = {},
): Promise<RunningServer> {
  return new Promise((done, fail) => {
    const child = spawn(command[0]!, command.slice(1), {
      cwd: options.cwd ?? root,
      detached: options.detached ?? false,
      env: { ...process.env, PORT: '0', LOG_LEVEL: 'info', ...processEnv(env) },
    });
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(new Error(`server did not start:\n${out}\n${err}`));
    }, 60_000);
    child.stderr.on('data', (d) => (err += d));
    child.stdout.on('data', (d) => {
      out += d;
      const listening = /"url":"(http:\/\/[^"]+)".*"msg":"listening"/.exec(out);
      if (listening) {
        clearTimeout(timer);
        done({
          child,
          url: listening[1]!,
          stdout: () => out,
          stderr: () => err,
          stop: () => stopProcess(child),
        });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`server exited with ${code}:\n${out}\n${err}`));
    });
  });
}
