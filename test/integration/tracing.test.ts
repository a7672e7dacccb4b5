/**
 * Tracing (server/telemetry.ts, server/shared/tracing.ts; docs/tracing.md) through the real app and
 * the real webhook worker, on the test database (PGlite, or PostgreSQL with TEST_DATABASE_URL),
 * with an in-memory exporter started in-process (`startTracing({ exporter })`, the test seam).
 *
 * Off first: an SDK registered in the process by someone else gets no span from the server, the
 * event keeps no trace context and the receiver gets no `traceparent`. Then on: a keyed create
 * carrying a caller's `traceparent` is one trace from the request to the receiver.
 */
import { Writable } from 'node:stream';
import { context, propagation, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ClientsApi } from '../../client/index.js';
import { traceLogFields } from '../../server/shared/tracing.js';
import { startTracing, type Tracing, tracingSettingsFromEnv } from '../../server/telemetry.js';
import { ephemeralWebhookSettings } from '../../server/webhook-delivery/settings.js';
import { startWebhookWorker, type WebhookWorker } from '../../server/webhook-delivery/worker.js';
import { usingPostgres } from '../support/database.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { type Receiver, startReceiver, verifyAtItsTime, waitFor } from '../support/webhook-worker-fixtures.js';

const settings = ephemeralWebhookSettings({ allowPrivateNetworks: true });
const silent = pino({ level: 'silent' });
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN_ID = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE_ID}-${CALLER_SPAN_ID}-01`;

let receiver: Receiver | undefined;
let worker: WebhookWorker | undefined;
afterEach(async () => {
  await receiver?.close();
  await worker?.stop();
  receiver = undefined;
  worker = undefined;
});

async function register(api: ClientsApi, url: string) {
  const { data, error } = await api.POST('/webhook-endpoints', { body: { url, enabledEvents: ['client.created'] } });
  if (!data) throw new Error(`endpoint not registered: ${JSON.stringify(error)}`);
  return { id: data.data.id, secret: data.secret! };
}

/** A keyed create sent with the caller's `traceparent`, as a traced caller would send it. */
async function keyedCreate(server: TestServer, token: string, name: string) {
  const response = await fetch(`${server.serverUrl}/clients`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      'idempotency-key': crypto.randomUUID(),
      traceparent: TRACEPARENT,
    },
    body: JSON.stringify({ name }),
  });
  expect(response.status).toBe(201);
  return ((await response.json()) as { data: { id: string } }).data.id;
}

async function traceContextOf(server: TestServer, clientId: string) {
  const row = await server.database.db
    .selectFrom('events')
    .select('trace_context')
    .where(({ eb, ref }) => eb(eb.fn('json_extract_path_text', [ref('data'), eb.val('object'), eb.val('id')]), '=', clientId))
    .executeTakeFirstOrThrow();
  return row.trace_context;
}

describe('tracing off', () => {
  // Someone else's SDK in the process: the server must still make nothing.
  const exporter = new InMemorySpanExporter();
  const foreign = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const seen: unknown[] = [];
  let server: TestServer;

  beforeAll(async () => {
    foreign.register();
    server = await startTestServer({
      logger: silent,
      webhooks: settings,
      handlers: {
        getHealth: async () => {
          seen.push(trace.getActiveSpan());
          return { status: 200 as const, body: { status: 'ok' as const } };
        },
      },
    });
  });
  afterAll(async () => {
    await server?.close();
    await foreign.shutdown();
    trace.disable();
    context.disable();
    propagation.disable();
  });

  it('makes no span, keeps no trace context, sends no traceparent, even with an SDK registered in the process', async () => {
    receiver = await startReceiver();
    const { api, token } = await server.tenant({ plan: 'studio' });
    await register(api, receiver.url);
    worker = startWebhookWorker({ db: server.database.db, settings, logger: silent, pollIntervalMs: 20, timeoutMs: 5000 });
    const id = await keyedCreate(server, token.token, 'Untraced');
    expect((await fetch(`${server.serverUrl}/healthz`, { headers: { traceparent: TRACEPARENT } })).status).toBe(200);
    await waitFor(() => receiver!.requests.length >= 1, 'the delivery', 30_000);

    expect(seen).toEqual([undefined]);
    expect(await traceContextOf(server, id)).toBeNull();
    expect(receiver.requests[0]!.headers.traceparent).toBeUndefined();
    expect(exporter.getFinishedSpans()).toEqual([]);
  });
});

describe('tracing on (an in-memory exporter)', () => {
  const exporter = new InMemorySpanExporter();
  const lines: Record<string, unknown>[] = [];
  let tracing: Tracing;
  let server: TestServer;

  beforeAll(async () => {
    // Before the database is opened: its statements are traced from the start, as in server/main.ts.
    tracing = await startTracing({ exporter });
    const logger = pino(
      { level: 'info', mixin: traceLogFields },
      new Writable({
        write(chunk, _encoding, done) {
          lines.push(JSON.parse(String(chunk)));
          done();
        },
      }),
    );
    server = await startTestServer({
      logger,
      webhooks: settings,
      // A fault, for the 5xx's span.
      handlers: {
        getHealth: async () => {
          throw new Error('the health check broke');
        },
      },
    });
  });
  afterAll(async () => {
    await server?.close();
    await tracing?.shutdown();
  });

  const spansOf = (traceId: string) => exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId);
  const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;
  /** The spans below `root` (children, their children...). */
  function descendants(spans: ReadableSpan[], root: ReadableSpan): ReadableSpan[] {
    const below = spans.filter((span) => parentOf(span) === root.spanContext().spanId);
    return below.flatMap((child) => [child, ...descendants(spans, child)]);
  }

  it('a keyed create: its server span, its statements, and the delivery span in the same trace, linked to it', async () => {
    receiver = await startReceiver();
    const orgName = `tracing-${Date.now()}`;
    const admin = await server.mint({ orgName, plan: 'studio' });
    const endpoint = await register(server.client(admin.token), receiver.url);
    // A second token of the organisation, never looked up yet: its check goes to the database.
    const creator = await server.mint({ orgName, plan: 'studio' });
    worker = startWebhookWorker({ db: server.database.db, settings, logger: silent, pollIntervalMs: 20, timeoutMs: 5000 });
    exporter.reset();

    const id = await keyedCreate(server, creator.token, 'Globex Corporation');
    await waitFor(() => receiver!.requests.length >= 1, 'the delivery', 30_000);
    await waitFor(() => spansOf(TRACE_ID).some((span) => span.name === 'webhook.deliver'), 'the delivery span', 10_000);
    const spans = spansOf(TRACE_ID);

    // The server span: the caller's trace continued, named by the spec's route.
    const servers = spans.filter((span) => span.kind === SpanKind.SERVER);
    expect(servers).toHaveLength(1);
    const request = servers[0]!;
    expect(request.name).toBe('POST /clients');
    expect(parentOf(request)).toBe(CALLER_SPAN_ID);
    expect(request.attributes).toMatchObject({
      'http.route': '/clients',
      'openapi.operation_id': 'createClient',
      'http.request.method': 'POST',
      'http.response.status_code': 201,
      'url.path': '/clients',
    });
    expect(request.status.code).toBe(SpanStatusCode.UNSET);

    // Below it: the one-statement write with its key, the statement itself, the token's lookup.
    const below = descendants(spans, request);
    const keyed = below.find((span) => span.name === 'idempotency.keyed_statement');
    expect(keyed?.attributes['idempotency.outcome']).toBe('written');
    expect(parentOf(keyed!)).toBe(request.spanContext().spanId);
    const statement = below.find((span) => span.name === 'insert_client_with_key');
    expect(parentOf(statement!)).toBe(keyed!.spanContext().spanId);
    expect(statement!.kind).toBe(SpanKind.CLIENT);
    expect(statement!.attributes['db.system.name']).toBe('postgresql');
    const text = String(statement!.attributes['db.query.text']);
    expect(text).toContain('insert into "clients"');
    expect(text).toMatch(/\$1\b/);
    expect(text).not.toContain('Globex'); // placeholders, never values
    const lookup = below.find((span) => span.name === 'auth.token_lookup');
    expect(lookup).toBeDefined();
    expect(descendants(spans, lookup!).map((span) => span.attributes['db.collection.name'])).toContain('api_tokens');
    // Counters in PostgreSQL are storage, and a span; in memory (PGlite) they are neither.
    expect(below.some((span) => span.name === 'rate_limit.count')).toBe(usingPostgres);

    // The event keeps the request's context, written in the same statement.
    expect(await traceContextOf(server, id)).toBe(`00-${TRACE_ID}-${request.spanContext().spanId}-01`);

    // The delivery: a child of the request's span in the same trace, and linked to it.
    const delivery = spans.find((span) => span.name === 'webhook.deliver')!;
    expect(delivery.kind).toBe(SpanKind.CLIENT);
    expect(parentOf(delivery)).toBe(request.spanContext().spanId);
    expect(delivery.links.map((link) => link.context.spanId)).toEqual([request.spanContext().spanId]);
    expect(delivery.links[0]!.context.traceId).toBe(TRACE_ID);
    expect(delivery.attributes).toMatchObject({
      'http.request.method': 'POST',
      'http.response.status_code': 200,
      'webhook.event.type': 'client.created',
      'webhook.endpoint.id': endpoint.id,
      'webhook.attempt': 1,
      'url.full': receiver.url.replace(/\/?$/, receiver.url.endsWith('/') ? '/' : ''),
    });
    // Recording the attempt: statements under the delivery span.
    expect(descendants(spans, delivery).map((span) => span.name)).toEqual(
      expect.arrayContaining(['BEGIN', 'INSERT webhook_attempts', 'COMMIT']),
    );

    // The receiver: a verified delivery whose traceparent is the delivery span's, in the request's trace.
    const received = receiver.requests[0]!;
    expect((verifyAtItsTime(endpoint.secret, received) as { type: string }).type).toBe('client.created');
    expect(received.headers.traceparent).toBe(`00-${TRACE_ID}-${delivery.spanContext().spanId}-01`);

    // The request's log line carries its trace.
    const logged = lines.find((line) => line.msg === 'request completed' && (line.req as { path: string }).path === '/clients');
    expect(logged).toMatchObject({ trace_id: TRACE_ID, span_id: request.spanContext().spanId });

    // Nothing else starts a trace: the worker's polling and claims make no root span.
    const roots = exporter.getFinishedSpans().filter((span) => !span.parentSpanContext);
    expect(roots.every((span) => span.kind === SpanKind.SERVER)).toBe(true);
  });

  it('a create on a plan with a limit: the key claimed and stored in its transaction, BEGIN and COMMIT', async () => {
    const { token } = await server.tenant({ plan: 'pro' });
    exporter.reset();
    await keyedCreate(server, token.token, 'Initech');
    const spans = spansOf(TRACE_ID);
    const request = spans.find((span) => span.kind === SpanKind.SERVER)!;
    const names = descendants(spans, request).map((span) => span.name);
    expect(names).toEqual(expect.arrayContaining(['idempotency.claim', 'idempotency.store', 'BEGIN', 'COMMIT']));
  });

  it('a read by id: the route is the spec’s template, the query string’s values appear nowhere', async () => {
    const { api, token } = await server.tenant({ plan: 'studio' });
    const created = await api.POST('/clients', { body: { name: 'Umbrella' } });
    const id = created.data!.data.id;
    exporter.reset();
    const read = await fetch(`${server.serverUrl}/clients/${id}`, { headers: { authorization: `Bearer ${token.token}` } });
    expect(read.status).toBe(200);
    const listed = await fetch(`${server.serverUrl}/clients?q=hank%40secret.test&limit=5`, {
      headers: { authorization: `Bearer ${token.token}` },
    });
    expect(listed.status).toBe(200);
    const servers = exporter.getFinishedSpans().filter((span) => span.kind === SpanKind.SERVER);
    expect(servers.map((span) => [span.name, span.attributes['http.route'], span.attributes['openapi.operation_id']])).toEqual([
      ['GET /clients/{id}', '/clients/{id}', 'getClient'],
      ['GET /clients', '/clients', 'listClients'],
    ]);
    expect(servers[0]!.attributes['url.path']).toBe(`/clients/${id}`);
    expect(servers[1]!.attributes['url.path']).toBe('/clients');
    const everything = JSON.stringify(exporter.getFinishedSpans().map((span) => [span.name, span.attributes]));
    expect(everything).not.toContain('secret.test');
  });

  it('a 5xx marks the server span failed; a 4xx does not', async () => {
    const { token } = await server.tenant({ plan: 'studio' });
    exporter.reset();
    const missing = await fetch(`${server.serverUrl}/clients/00000000-0000-4000-8000-000000000000`, {
      headers: { authorization: `Bearer ${token.token}` },
    });
    expect(missing.status).toBe(404);
    expect((await fetch(`${server.serverUrl}/healthz`)).status).toBe(500);
    const [notFound, failed] = exporter.getFinishedSpans().filter((s) => s.kind === SpanKind.SERVER);
    expect(notFound!.status.code).toBe(SpanStatusCode.UNSET);
    expect(notFound!.attributes['http.response.status_code']).toBe(404);
    expect(failed!.name).toBe('GET /healthz');
    expect(failed!.status.code).toBe(SpanStatusCode.ERROR);
    expect(failed!.attributes).toMatchObject({ 'http.response.status_code': 500, 'error.type': '500' });
  });
});

describe('which OTEL_* variables turn tracing on', () => {
  it('reads the standard variables', () => {
    expect(tracingSettingsFromEnv({})).toBeUndefined();
    expect(tracingSettingsFromEnv({ OTEL_TRACES_EXPORTER: 'none' })).toBeUndefined();
    expect(tracingSettingsFromEnv({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_SDK_DISABLED: 'true' })).toBeUndefined();
    expect(tracingSettingsFromEnv({ OTEL_TRACES_EXPORTER: 'otlp' })).toEqual({ exporters: ['otlp'], protocol: 'http/protobuf' });
    expect(tracingSettingsFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toEqual({
      exporters: ['otlp'],
      protocol: 'http/protobuf',
    });
    expect(tracingSettingsFromEnv({ OTEL_TRACES_EXPORTER: 'otlp, console', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' })).toEqual({
      exporters: ['otlp', 'console'],
      protocol: 'http/json',
    });
    expect(() => tracingSettingsFromEnv({ OTEL_TRACES_EXPORTER: 'zipkin' })).toThrow(/zipkin is not an exporter/);
    expect(() => tracingSettingsFromEnv({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })).toThrow(/grpc/);
  });
});
