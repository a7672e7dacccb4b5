/**
 * Tracing as an operator turns it on (docs/tracing.md): the bundle `npm start` runs
 * (scripts/bundle-server.ts, the SDK outside it, loaded from node_modules only when tracing is
 * on), started with nothing but the standard variables, exports its spans over OTLP/HTTP to a
 * collector (a stub here, reading OTLP's JSON encoding), and its log lines carry the trace id.
 * Bundled into a folder of its own, so as not to race the other test that bundles.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openDatabase } from '../../server/db/database.js';
import type { DatabaseHandle } from '../../server/db/handle.js';
import { migrateOrThrow } from '../../server/db/migrate.js';
import { mintTokenForOrganisation } from '../../server/tokens/tokens.service.js';
import { createTestDatabase, type TestDatabase, usingPostgres } from '../support/database.js';
import { type RunningServer, root, startServerProcess } from '../support/processes.js';
import { waitFor } from '../support/webhook-worker-fixtures.js';

const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';

interface ExportedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes: { key: string; value: Record<string, unknown> }[];
}

let collector: Server;
const exports: { path: string; spans: ExportedSpan[]; service: unknown }[] = [];
let server: RunningServer | undefined;
let database: TestDatabase | undefined;
let dataDir: string | undefined;
let token: string;

beforeAll(async () => {
  await promisify(execFile)(join(root, 'node_modules/.bin/tsx'), ['scripts/bundle-server.ts', 'dist/tracing/main.js'], { cwd: root });
  mkdirSync(join(root, 'dist/generated'), { recursive: true });
  copyFileSync(join(root, 'generated/docs.html'), join(root, 'dist/generated/docs.html'));
  collector = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk));
    req.on('end', () => {
      const request = JSON.parse(body) as {
        resourceSpans: {
          resource: { attributes: { key: string; value: { stringValue?: string } }[] };
          scopeSpans: { spans: ExportedSpan[] }[];
        }[];
      };
      for (const resourceSpans of request.resourceSpans) {
        exports.push({
          path: req.url ?? '',
          service: resourceSpans.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue,
          spans: resourceSpans.scopeSpans.flatMap((scope) => scope.spans),
        });
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((listening) => collector.listen(0, '127.0.0.1', listening));
  const collectorUrl = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`;

  let handle: DatabaseHandle;
  let env: Record<string, string | undefined>;
  if (usingPostgres) {
    handle = database = await createTestDatabase();
    env = { DATABASE_URL: database.url! };
  } else {
    dataDir = mkdtempSync(join(tmpdir(), 'clients-api-tracing-'));
    env = { DATA_DIR: join(dataDir, 'data'), DATABASE_URL: '' };
    handle = await openDatabase({ dataDir: env.DATA_DIR });
    await migrateOrThrow(handle.db);
  }
  token = (await mintTokenForOrganisation(handle.db, { orgName: 'Traced', plan: 'studio' })).token;
  if (!usingPostgres) await handle.close();
  server = await startServerProcess(
    {
      ...env,
      NODE_ENV: undefined,
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_ENDPOINT: collectorUrl,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_SERVICE_NAME: 'clients-api-under-test',
      OTEL_BSP_SCHEDULE_DELAY: '100',
    },
    ['node', 'dist/tracing/main.js'],
  );
}, 180_000);

afterAll(async () => {
  await server?.stop();
  await new Promise((closed) => collector?.close(closed));
  await database?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  rmSync(join(root, 'dist/tracing'), { recursive: true, force: true });
});

it('the bundle, started with OTEL_TRACES_EXPORTER=otlp, exports its spans to the collector; its log lines carry the trace id', async () => {
  const response = await fetch(`${server!.url}/clients`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      'idempotency-key': crypto.randomUUID(),
      traceparent: `00-${TRACE_ID}-b7ad6b7169203331-01`,
    },
    body: JSON.stringify({ name: 'Exported' }),
  });
  expect(response.status).toBe(201);

  const request = await waitFor(
    () => exports.flatMap((e) => e.spans).find((span) => span.traceId === TRACE_ID && span.name === 'POST /clients'),
    'the server span at the collector',
    20_000,
  );
  expect(exports.every((e) => e.path === '/v1/traces')).toBe(true);
  expect(exports.find((e) => e.spans.includes(request))?.service).toBe('clients-api-under-test');
  expect(request.parentSpanId).toBe('b7ad6b7169203331');
  expect(request.attributes).toContainEqual({ key: 'openapi.operation_id', value: { stringValue: 'createClient' } });
  await waitFor(
    () => exports.flatMap((e) => e.spans).some((span) => span.traceId === TRACE_ID && span.name === 'insert_client_with_key'),
    'the statement span',
    20_000,
  );

  const logged = await waitFor(
    () =>
      server!
        .stdout()
        .split('\n')
        .filter((line) => line.includes('"request completed"'))
        .map((line) => JSON.parse(line) as { trace_id?: string; span_id?: string; req: { path: string } })
        .find((line) => line.req.path === '/clients'),
    'the request log line',
    10_000,
  );
  expect(logged).toMatchObject({ trace_id: TRACE_ID, span_id: request.spanId });
});
