/**
 * docs/webhooks.md's local walkthrough ("Try it locally"), run as written: its blocks fenced
 * `sh walkthrough` in order, in one bash at the repository's root, after writing the block fenced
 * `js walkthrough file=receiver.mjs` to that file. Only the environment is the test's own: free
 * ports for `PORT` and `RECEIVER_PORT` and a fresh `DATA_DIR`, so the run touches nothing of a
 * developer's server or data. The receiver must get the test delivery and the change's, and verify
 * both; the API must answer the test with a successful attempt and list both attempts.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const doc = readFileSync(join(ROOT, 'docs', 'webhooks.md'), 'utf8');

interface Block {
  language: string;
  file: string | undefined;
  code: string;
}

/** The walkthrough's blocks, in the document's order. */
const blocks: Block[] = [...doc.matchAll(/^```(\w+) walkthrough(?: file=(\S+))?\n([\s\S]*?)^```$/gm)].map((match) => ({
  language: match[1]!,
  file: match[2],
  code: match[3]!,
}));

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

let run: ChildProcess | undefined;
let dataDir: string | undefined;
let wroteReceiver = false;
afterAll(async () => {
  // The walkthrough leaves the server and the receiver running, in the script's process group.
  if (run?.pid) {
    try {
      process.kill(-run.pid, 'SIGTERM');
    } catch {}
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        process.kill(-run.pid, 0);
      } catch {
        break;
      }
      if (Date.now() > deadline) {
        process.kill(-run.pid, 'SIGKILL');
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  if (wroteReceiver) rmSync(join(ROOT, 'receiver.mjs'), { force: true });
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('docs/webhooks.md: the local walkthrough', () => {
  it('has its blocks: shell steps and the receiver file', () => {
    expect(blocks.filter((b) => b.language === 'sh').length).toBeGreaterThanOrEqual(4);
    expect(blocks.filter((b) => b.file).map((b) => b.file)).toEqual(['receiver.mjs']);
  });

  it('runs as written: the receiver gets the test delivery and the change, and verifies both', async () => {
    const receiverFile = join(ROOT, 'receiver.mjs');
    if (existsSync(receiverFile)) throw new Error(`${receiverFile} exists already: move it away to run the walkthrough`);
    writeFileSync(receiverFile, blocks.find((b) => b.file === 'receiver.mjs')!.code);
    wroteReceiver = true;
    dataDir = mkdtempSync(join(tmpdir(), 'walkthrough-'));
    const [port, receiverPort] = [await freePort(), await freePort()];
    const script = ['set -e', ...blocks.filter((b) => b.language === 'sh').map((b) => b.code)].join('\n');
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PORT: String(port),
      RECEIVER_PORT: String(receiverPort),
      DATA_DIR: join(dataDir, 'data'),
      LOG_LEVEL: 'warn',
    };
    for (const name of ['DATABASE_URL', 'METRICS_PORT', 'WEBHOOK_SECRET_KEY', 'WEBHOOK_SECRET_KEY_FILE', 'WEBHOOK_WORKER'])
      delete env[name];

    let output = '';
    run = spawn('bash', ['-c', script], { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    run.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    run.stderr!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    const code = await new Promise<number | null>((resolve) => run!.on('exit', resolve));
    expect(code, output).toBe(0);

    // The test's answer: the attempt, succeeded.
    const testAnswer = output.split('\n').find((line) => line.includes('"eventType":"webhook.test"') && line.startsWith('{"data":{"id"'));
    expect(testAnswer, output).toBeDefined();
    const attempt = JSON.parse(testAnswer!).data as { eventId: string; succeeded: boolean; statusCode: number };
    expect(attempt).toMatchObject({ succeeded: true, statusCode: 200 });
    // The receiver verified it, and the change's event.
    expect(output).toContain(`verified webhook.test ${attempt.eventId}`);
    expect(output, output).toMatch(/verified client\.created [0-9a-f-]{36}/);
    expect(output).not.toContain('refused:');
    // Both attempts listed under the endpoint's deliveries.
    const listed = output.split('\n').find((line) => line.startsWith('{"data":[') && line.includes('nextCursor'));
    expect(listed, output).toBeDefined();
    const types = (JSON.parse(listed!).data as { eventType: string; succeeded: boolean }[]).map((a) => [a.eventType, a.succeeded]);
    expect(types.sort()).toEqual([
      ['client.created', true],
      ['webhook.test', true],
    ]);
  }, 300_000);
});
