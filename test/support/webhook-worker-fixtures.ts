/**
 * For the webhook worker's tests: a real receiver (a node:http server on 127.0.0.1), and rows put
 * straight into the database the way the rest of the service writes them (an events row per
 * change, in its own transaction, as server/events/ does; an endpoint with a sealed secret and its
 * place in the feed at its creating transaction, as the endpoint operations do).
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Kysely, sql } from 'kysely';
import { Webhook } from 'standardwebhooks';
import { vi } from 'vitest';
import type { Database, Env } from '../../server/db/schema.js';
import { newSigningSecret } from '../../server/webhook-delivery/secrets.js';
import type { WebhookSettings } from '../../server/webhook-delivery/settings.js';

export interface ReceivedRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string;
}

/** What the receiver answers a request with (after `delayMs`, if given); `hang` never answers. */
export type Answer = { status: number; headers?: Record<string, string>; delayMs?: number } | 'hang';

export interface Receiver {
  url: string;
  port: number;
  requests: ReceivedRequest[];
  /** How the next requests are answered (200 by default). */
  answer: (request: ReceivedRequest, index: number) => Answer;
  /** Called as each request arrives, before it is answered. */
  onRequest?: (request: ReceivedRequest) => void;
  /**
   * Requests open at once (arrived, their connection not yet closed: answered, or given up by the
   * worker), now and at most, in all and per path.
   */
  open: { now: number; max: number; byPath: Map<string, { now: number; max: number }> };
  /** TCP connections accepted so far (keep-alive shows as far fewer than requests). */
  connections: number;
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const receiver: Receiver = {
    url: '',
    port: 0,
    requests: [],
    answer: () => ({ status: 200 }),
    open: { now: 0, max: 0, byPath: new Map() },
    connections: 0,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = http.createServer((req, res) => {
    const { open } = receiver;
    const path = open.byPath.get(req.url ?? '') ?? { now: 0, max: 0 };
    open.byPath.set(req.url ?? '', path);
    open.max = Math.max(open.max, ++open.now);
    path.max = Math.max(path.max, ++path.now);
    res.on('close', () => {
      open.now--;
      path.now--;
    });
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const request: ReceivedRequest = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)])),
        body: Buffer.concat(chunks).toString('utf8'),
      };
      const index = receiver.requests.push(request) - 1;
      receiver.onRequest?.(request);
      const answer = receiver.answer(request, index);
      if (answer === 'hang') return;
      const send = () => res.writeHead(answer.status, answer.headers).end('ok');
      if (answer.delayMs) setTimeout(send, answer.delayMs);
      else send();
    });
  });
  server.on('connection', () => receiver.connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.port = (server.address() as AddressInfo).port;
  receiver.url = `http://127.0.0.1:${receiver.port}/hooks`;
  return receiver;
}

export interface TestEndpoint {
  id: string;
  /** The current signing secret, in clear (`whsec_…`). */
  secret: string;
  previousSecret?: string;
}

/** A webhook endpoint row, as POST /webhook-endpoints (and rotate-secret, with `previous`) writes it. */
export async function insertEndpoint(
  db: Kysely<Database>,
  settings: WebhookSettings,
  endpoint: {
    orgId: string;
    env?: Env;
    url: string;
    enabledEvents?: string[];
    now?: Date;
    previous?: { expiresAt: Date };
  },
): Promise<TestEndpoint> {
  const id = randomUUID();
  const secret = newSigningSecret();
  const previousSecret = endpoint.previous ? newSigningSecret() : undefined;
  const now = endpoint.now ?? new Date();
  await db
    .insertInto('webhook_endpoints')
    .values({
      org_id: endpoint.orgId,
      env: endpoint.env ?? 'test',
      id,
      url: endpoint.url,
      description: null,
      enabled_events: endpoint.enabledEvents ?? ['*'],
      disabled_reason: null,
      failing_since: null,
      secret: settings.secrets.seal(secret, id),
      previous_secret: previousSecret ? settings.secrets.seal(previousSecret, id) : null,
      previous_secret_expires_at: endpoint.previous?.expiresAt ?? null,
      feed_txid: sql<string>`pg_current_xact_id()`,
      created_at: now,
      updated_at: now,
    })
    .execute();
  return { id, secret, ...(previousSecret && { previousSecret }) };
}

let eventCounter = 0;

/** One change's event, in its own transaction, as server/events/ writes it with the change. */
export async function insertEvent(
  db: Kysely<Database>,
  event: { orgId: string; env?: Env; type?: string; name?: string; createdAt?: Date },
): Promise<string> {
  const id = randomUUID();
  const createdAt = event.createdAt ?? new Date();
  const object = {
    id: randomUUID(),
    orgId: event.orgId,
    name: event.name ?? `Client ${++eventCounter}`,
    createdAt: createdAt.toISOString(),
    updatedAt: createdAt.toISOString(),
    deletedAt: null,
  };
  await db.transaction().execute((trx) =>
    trx
      .insertInto('events')
      .values({
        org_id: event.orgId,
        env: event.env ?? 'test',
        id,
        type: event.type ?? 'client.created',
        created_at: createdAt,
        data: JSON.stringify({ object }),
      })
      .execute(),
  );
  return id;
}

/** Polls `check` until it returns something truthy, or fails after `timeoutMs`. */
export async function waitFor<T>(check: () => T | Promise<T>, what: string, timeoutMs = 20_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/**
 * Until every event of `orgId` is below the feed's horizon, so that the next tick's fan-out takes
 * them all. On PostgreSQL a transaction of a parallel test (a migration of its own database, say)
 * holds the horizon for as long as it runs, and a tick meanwhile fans out nothing: a test that
 * counts what each tick sends waits here first.
 */
export async function feedPastEvents(db: Kysely<Database>, orgId: string): Promise<void> {
  await waitFor(
    async () => {
      const { rows } = await sql<{ past: boolean }>`
        select coalesce(max(txid) < pg_snapshot_xmin(pg_current_snapshot()), true) as past from events where org_id = ${orgId}`.execute(db);
      return rows[0]!.past;
    },
    'the feed past every event',
    30_000,
  );
}

/** A clock the test moves. */
export function movableClock(start = new Date()) {
  let now = start.getTime();
  return {
    now: () => new Date(now),
    advance: (ms: number) => {
      now += ms;
    },
    set: (at: Date) => {
      now = at.getTime();
    },
  };
}

/** Verifies a delivery with standardwebhooks itself, its clock set to the signature's time (tests move time). */
export function verifyAtItsTime(secret: string, request: ReceivedRequest): unknown {
  vi.useFakeTimers({ toFake: ['Date'] });
  try {
    vi.setSystemTime(Number(request.headers['webhook-timestamp']) * 1000);
    return new Webhook(secret).verify(request.body, request.headers);
  } finally {
    vi.useRealTimers();
  }
}
