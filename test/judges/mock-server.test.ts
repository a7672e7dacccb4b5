/**
 * `npm run mock`: Prism's mock mode serves the spec's examples over HTTP, for clients in any
 * language. The script itself is started here on a free port (MOCK_PORT), and each operation of
 * the spec, called with its first request example and a token, must answer its first 2xx status
 * with that answer's first example. Prism checks that a token is present (not that it is valid).
 *
 * Prism sends every header a response documents, optional ones included: `/docs` and
 * `/openapi.json` come with `Content-Encoding: br` over a body it did not compress (docs/contract.md
 * says so). Answers are read with node:http, which decodes nothing, rather than fetch, which would
 * fail to decompress them.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { operationList } from '../../generated/operations.js';
import { deref, doc } from '../support/spec-check.js';
import { root } from '../support/processes.js';

type Node = Record<string, any>;

const TOKEN = 'hsk_test_Xq3LmZ8pRt2K_9fJ2kLm4Np6Qr8St0Uv2Wx4Yz6Ab8Cd0';
const ID = '497f6eca-6276-4993-bfeb-53cbbbba6f08';

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as { port: number };
  await new Promise((done) => server.close(done));
  return port;
}

/** The first named example of a media type object, its `$ref` followed. */
function firstExample(media: Node | undefined): unknown {
  const first = Object.values((media?.examples ?? {}) as Node)[0];
  return first === undefined ? undefined : deref(first).node.value;
}

/** One request, its answer's body as text, undecoded whatever its Content-Encoding. */
function send(method: string, path: string, headers: Record<string, string>, body?: string): Promise<{ status: number; text: string }> {
  return new Promise((done, fail) => {
    const sent = request(`${url}${path}`, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => done({ status: res.statusCode!, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', fail);
    });
    sent.on('error', fail);
    sent.end(body);
  });
}

let child: ChildProcess;
let url: string;
let log = '';

beforeAll(async () => {
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  // Its own process group: npm, the shell and Prism stop together.
  child = spawn('npm', ['run', '-s', 'mock'], {
    cwd: root,
    detached: true,
    env: { ...process.env, MOCK_PORT: String(port), NO_COLOR: '1', FORCE_COLOR: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (chunk) => (log += chunk));
  child.stderr!.on('data', (chunk) => (log += chunk));
  const deadline = Date.now() + 60_000;
  while (!/Prism is listening/.test(log)) {
    if (child.exitCode !== null) throw new Error(`npm run mock exited with ${child.exitCode}:\n${log}`);
    if (Date.now() > deadline) throw new Error(`npm run mock did not start:\n${log}`);
    await new Promise((wait) => setTimeout(wait, 200));
  }
}, 90_000);

afterAll(async () => {
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((done) => child.once('exit', done));
  process.kill(-child.pid!, 'SIGTERM');
  await exited;
});

describe('npm run mock', () => {
  it.each(operationList.map((op) => [op.operationId, op] as const))('%s answers its first example', async (_id, op) => {
    const operation = doc.paths[op.path][op.method] as Node;
    const success = String(op.statuses.find((status) => status >= 200 && status < 300));
    const { node: response } = deref(operation.responses[success]);
    const [contentType, media] = Object.entries((response.content ?? {}) as Node)[0]!;
    const requestMedia = operation.requestBody ? deref(operation.requestBody).node.content['application/json'] : undefined;
    const headers: Record<string, string> = { Accept: contentType };
    if (op.authenticated) headers.Authorization = `Bearer ${TOKEN}`;
    if (requestMedia) headers['Content-Type'] = 'application/json';

    const { status, text } = await send(
      op.method.toUpperCase(),
      op.path.replace('{id}', ID),
      headers,
      requestMedia ? JSON.stringify(firstExample(requestMedia)) : undefined,
    );
    expect(status, text).toBe(Number(success));
    expect(contentType === 'application/json' ? JSON.parse(text) : text).toEqual(firstExample(media));
  });

  it('refuses an operation that needs a token when none is sent, with the spec’s 401', async () => {
    const { status, text } = await send('GET', `/clients/${ID}`, {});
    expect(status, text).toBe(401);
  });
});
