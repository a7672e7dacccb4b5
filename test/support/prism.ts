/**
 * Prism (`@stoplight/prism-cli proxy --errors`) as a judge that knows nothing of our code: it reads
 * only the bundled spec, checks each request before forwarding it to the real server and each
 * response on its way back. With `--errors` it refuses a request the spec does not allow (with its
 * own 422, 401, 404, 405…) and turns a response that breaks the spec into its own 500.
 *
 * `npm run test:prism` runs the contract suite through it. One Prism serves the whole run (it
 * takes seconds to start): it forwards to a router in vitest's main process, which sends each
 * request on to the test server named by the `x-judge-upstream` header. Each test server gets a
 * front (startPrismFront) that the tests talk to instead of the server:
 *
 * - a request goes through Prism, and Prism's answer is what the test sees;
 * - when Prism refuses a request itself, the front sends it straight to the server, so the test
 *   still sees the server's answer, and checks that the server refused it too (a request Prism
 *   refuses but the server carries out is a disagreement);
 * - a body Prism cannot carry unchanged goes straight to the server: Prism parses JSON into
 *   binary floats and writes it again, so `1e3` would reach the server as `1000`, and malformed
 *   JSON would not reach it at all; so does a URL with a malformed percent-encoding, on which
 *   Prism's process dies.
 *
 * Every violation fails the run: a response Prism rejects (its 500 `VIOLATIONS`), any
 * `sl-violations` header, any violation in Prism's log, and every disagreement. The exceptions
 * are Prism's own departures from the standards, each recognised narrowly and listed in the
 * run's report, never hidden (knownPrismDeviation): its Ajv divides in binary floating point, so
 * it refuses valid amounts sent as JSON numbers (19.99 "must be multiple of 0.0001"), and it
 * reads the authentication scheme case-sensitively (`bearer <token>` is refused).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse as parseLossless } from 'lossless-json';
import { closedSpec } from './closed-spec.js';
import { isDecimalMultipleOf } from './decimal-multiple.js';
import { stopProcess } from './processes.js';
import { mediaType } from './spec-check.js';

export const PRISM_URL_VARIABLE = 'CONTRACT_PRISM_URL';
const REPORT_DIR_VARIABLE = 'CONTRACT_PRISM_REPORT_DIR';
const UPSTREAM_HEADER = 'x-judge-upstream';
const PRISM_ERROR = 'https://stoplight.io/prism/errors#';
const root = resolve(import.meta.dirname, '../..');

/** Statuses the server answers before or while validating a request (the order of checks: docs/architecture.md). */
const SERVER_REFUSALS = new Set([400, 401, 403, 404, 405, 413, 415, 429]);

// Headers that describe one hop, not the request: never copied from one connection to the next.
const HOP_HEADERS = new Set(['host', 'connection', 'keep-alive', 'content-length', 'transfer-encoding', 'upgrade', 'expect']);

interface PrismIssue {
  location: string[];
  code: string;
  message: string;
}

interface PrismProblem {
  type: string;
  status: number;
  validation?: PrismIssue[];
}

export interface PrismProcess {
  url: string;
  log(): string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as AddressInfo;
  await new Promise((done) => server.close(done));
  return port;
}

/**
 * Starts `prism proxy <spec> <upstream> --errors` and waits until it listens. The spec is the
 * bundled one with its responses closed (closed-spec.ts): the spec lets responses grow, and Prism
 * is to report a field the server sends that the spec lacks.
 */
export async function startPrism(upstream: string): Promise<PrismProcess> {
  const port = await freePort();
  const specDir = mkdtempSync(join(tmpdir(), 'clients-api-prism-spec-'));
  const specFile = join(specDir, 'openapi.json');
  writeFileSync(specFile, JSON.stringify(closedSpec));
  const child: ChildProcess = spawn(
    join(root, 'node_modules/.bin/prism'),
    ['proxy', specFile, upstream, '--errors', '--host', '127.0.0.1', '--port', String(port), '--verboseLevel', 'warn'],
    { cwd: root, env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let log = '';
  const url = `http://127.0.0.1:${port}`;
  child.stdout!.on('data', (chunk) => (log += chunk));
  child.stderr!.on('data', (chunk) => (log += chunk));
  // Poke it on a path the spec does not have: Prism answers that itself, forwarding and judging nothing.
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`Prism exited with ${child.exitCode}:\n${log}`);
    if (
      await fetch(`${url}/__prism_ready`).then(
        (r) => r.status === 404,
        () => false,
      )
    )
      break;
    if (Date.now() > deadline) throw new Error(`Prism did not start:\n${log}`);
    await new Promise((wait) => setTimeout(wait, 200));
  }
  return {
    url,
    log: () => log,
    stop: async () => {
      await stopProcess(child);
      rmSync(specDir, { recursive: true, force: true });
    },
  };
}

/** Lines of Prism's log that report a violation (`--verboseLevel warn` keeps only those and errors). */
export function violationsInLog(log: string): string[] {
  return log.split('\n').filter((line) => /Violation:|#VIOLATIONS/.test(line));
}

async function readRequest(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function copyHeaders(from: IncomingMessage['headers']): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(from)) {
    if (value === undefined || HOP_HEADERS.has(name)) continue;
    for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
  }
  return headers;
}

function relay(target: string, req: IncomingMessage, body: Buffer, headers: Headers): Promise<Response> {
  const hasBody = body.length > 0 || req.headers['content-length'] !== undefined;
  return fetch(`${target}${req.url}`, { method: req.method, headers, body: hasBody ? body : undefined, redirect: 'manual' });
}

async function answer(res: ServerResponse, response: Response, body?: Buffer): Promise<void> {
  const bytes = body ?? Buffer.from(await response.arrayBuffer());
  response.headers.forEach((value, name) => {
    if (!HOP_HEADERS.has(name) && name !== 'content-encoding') res.setHeader(name, value);
  });
  res.writeHead(response.status).end(bytes);
}

/** Can Prism carry this body to the server unchanged? It reads JSON into floats and writes it again. */
function prismCarriesUnchanged(contentType: string | undefined, body: Buffer): boolean {
  if (body.length === 0 || !mediaType(contentType ?? null).includes('json')) return true;
  let changed = false;
  try {
    parseLossless(body.toString('utf8'), null, (text: string) => {
      if (String(Number(text)) !== text) changed = true;
      return text;
    });
    JSON.parse(body.toString('utf8'));
  } catch {
    return false;
  }
  return !changed;
}

/**
 * Can Prism take this URL? A malformed percent-encoding (`/clients/%E0%A4%A`) throws an uncaught
 * URIError in its validator and ends its process, and with it every later request of the run.
 */
function prismSurvivesUrl(url: string): boolean {
  try {
    decodeURIComponent(url);
    return true;
  } catch {
    return false;
  }
}

function valueAt(body: unknown, path: string[]): unknown {
  return path.reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], body);
}

/**
 * Where Prism itself departs from the standards, each checked narrowly and reported by name, never
 * counted as a pass: the reason, or undefined when the refusal is not one of these.
 */
export function knownPrismDeviation(problem: PrismProblem, body: unknown, authorization: string | undefined): string | undefined {
  if (isFloatMultipleOfArtefact(problem.validation ?? [], body)) {
    return 'its Ajv divides in binary floating point, so it refuses an exact multiple of multipleOf (JSON Schema: multipleOf is exact)';
  }
  const scheme = authorization?.split(' ')[0];
  if (problem.status === 401 && scheme !== 'Bearer' && scheme?.toLowerCase() === 'bearer') {
    return 'it reads the authentication scheme case-sensitively (RFC 9110 §11.1: "bearer" is "Bearer")';
  }
  return undefined;
}

/** A refusal whose every cause is a `multipleOf` that exact decimal arithmetic satisfies. */
export function isFloatMultipleOfArtefact(issues: PrismIssue[], body: unknown): boolean {
  const multipleOf = issues.filter((issue) => issue.code === 'multipleOf');
  if (multipleOf.length === 0) return false;
  const places = new Set(multipleOf.map((issue) => issue.location.join('.')));
  if (!issues.every((issue) => places.has(issue.location.join('.')))) return false;
  return multipleOf.every((issue) => {
    const value = valueAt(body, issue.location.slice(1));
    const divisor = Number(/multiple of (\S+)/.exec(issue.message)?.[1]);
    return typeof value === 'number' && isDecimalMultipleOf(value, divisor);
  });
}

type Finding = { kind: 'violation' | 'prism-deviation' | 'refused-by-both' | 'passed' | 'bypassed'; detail?: string };

function report(finding: Finding): void {
  const dir = process.env[REPORT_DIR_VARIABLE];
  if (dir) appendFileSync(join(dir, `${process.pid}.jsonl`), `${JSON.stringify(finding)}\n`);
}

async function judge(req: IncomingMessage, res: ServerResponse, prismUrl: string, appUrl: string): Promise<Finding> {
  const body = await readRequest(req);
  const headers = copyHeaders(req.headers);
  const direct = async () => {
    const response = await relay(appUrl, req, body, headers);
    await answer(res, response);
    return response;
  };
  const what = `${req.method} ${req.url}`;
  if (!prismCarriesUnchanged(req.headers['content-type'], body) || !prismSurvivesUrl(req.url ?? '/')) {
    await direct();
    return { kind: 'bypassed', detail: what };
  }
  const viaPrism = new Headers(headers);
  viaPrism.set(UPSTREAM_HEADER, new URL(appUrl).port);
  const response = await relay(prismUrl, req, body, viaPrism);
  const bytes = Buffer.from(await response.arrayBuffer());
  const problem =
    mediaType(response.headers.get('content-type')) === 'application/problem+json'
      ? (JSON.parse(bytes.toString()) as PrismProblem)
      : undefined;
  if (!problem?.type?.startsWith(PRISM_ERROR)) {
    await answer(res, response, bytes);
    const flagged = response.headers.get('sl-violations');
    return flagged ? { kind: 'violation', detail: `${what} (${response.status}): ${flagged}` } : { kind: 'passed' };
  }
  if (problem.type.endsWith('#VIOLATIONS')) {
    await answer(res, response, bytes);
    return { kind: 'violation', detail: `${what}: the response breaks the spec: ${JSON.stringify(problem.validation)}` };
  }
  // Prism refused the request itself: the test gets the server's own answer, which must be a refusal too.
  const server = await direct();
  if (SERVER_REFUSALS.has(server.status)) return { kind: 'refused-by-both' };
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    parsed = undefined;
  }
  const detail = `${what} ${body.toString('utf8').slice(0, 300)} → Prism ${problem.status} ${JSON.stringify(problem.validation ?? [])}, server ${server.status}`;
  const deviation = knownPrismDeviation(problem, parsed, req.headers.authorization);
  return deviation
    ? { kind: 'prism-deviation', detail: `${deviation}: ${detail}` }
    : { kind: 'violation', detail: `Prism refused a request the server carried out: ${detail}` };
}

/** A front for one test server: the tests talk to it, it talks to Prism (see the top of this file). */
export async function startPrismFront(appUrl: string, prismUrl: string): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    judge(req, res, prismUrl, appUrl).then(report, (error: unknown) => {
      report({ kind: 'violation', detail: `the Prism front failed on ${req.method} ${req.url}: ${String(error)}` });
      if (!res.headersSent) res.writeHead(502).end();
    });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise((done) => server.close(() => done()));
    },
  };
}

export interface PrismVerdict {
  /** Each fails the run. */
  violations: string[];
  /** Valid requests Prism refused where Prism departs from a standard: listed, not failed. */
  deviations: string[];
}

/** Prism and its router, for a whole run (from test/support/global-setup.ts). */
export async function startPrismJudge(): Promise<{ url: string; stop(): Promise<PrismVerdict> }> {
  const reportDir = mkdtempSync(join(tmpdir(), 'clients-api-prism-'));
  process.env[REPORT_DIR_VARIABLE] = reportDir;
  const router = createServer(async (req, res) => {
    try {
      const port = Number(req.headers[UPSTREAM_HEADER]);
      const headers = copyHeaders(req.headers);
      headers.delete(UPSTREAM_HEADER);
      await answer(res, await relay(`http://127.0.0.1:${port}`, req, await readRequest(req), headers));
    } catch {
      if (!res.headersSent) res.writeHead(502).end();
    }
  });
  await new Promise<void>((done) => router.listen(0, '127.0.0.1', done));
  const prism = await startPrism(`http://127.0.0.1:${(router.address() as AddressInfo).port}`);
  return {
    url: prism.url,
    stop: async () => {
      await prism.stop();
      router.closeAllConnections();
      await new Promise((done) => router.close(done));
      const findings = readdirSync(reportDir).flatMap((name) =>
        readFileSync(join(reportDir, name), 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((line) => JSON.parse(line) as Finding),
      );
      rmSync(reportDir, { recursive: true, force: true });
      delete process.env[REPORT_DIR_VARIABLE];
      const count = (kind: Finding['kind']) => findings.filter((f) => f.kind === kind);
      const logged = violationsInLog(prism.log());
      const violations = [...count('violation').map((f) => f.detail!), ...logged.map((line) => `Prism's log: ${line}`)];
      console.log(
        `\nPrism judge: ${findings.length} requests; ${count('passed').length} passed through Prism, ` +
          `${count('refused-by-both').length} refused by Prism and by the server, ` +
          `${count('bypassed').length} sent straight to the server (a body Prism would rewrite, or a URL it cannot decode), ` +
          `${count('prism-deviation').length} refused by Prism where Prism departs from a standard (listed below), ` +
          `${violations.length} violation(s).`,
      );
      for (const f of count('prism-deviation')) console.log(`  Prism refused a valid request, because ${f.detail}`);
      if (findings.length === 0) violations.push('No request went through Prism: is CONTRACT_PROXY=prism reaching startTestServer?');
      return { violations: violations.map((v) => `Prism: ${v}`), deviations: count('prism-deviation').map((f) => f.detail!) };
    },
  };
}
