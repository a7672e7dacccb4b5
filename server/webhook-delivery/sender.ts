/**
 * One delivery attempt: POST an event to its endpoint, signed as the Standard Webhooks
 * specification says (by the `standardwebhooks` package, never by hand), and say what came of it.
 *
 * - node:http and node:https rather than fetch: they take a `lookup` function, so the address is
 *   judged at connect time, on the very addresses the socket connects to (a host that resolved to
 *   a public address at registration and to 127.0.0.1 now, DNS rebinding, is refused).
 * - Redirects are not followed: a 3xx is a failure with its status, and its Location is never
 *   requested (it could point anywhere, the private network included).
 * - One deadline for the whole attempt (connect, send, headers, the little of the body read).
 * - The worker passes its keep-alive agents (server/webhook-delivery/agents.ts): an attempt reuses
 *   an open connection to the same origin when there is one. A reused connection that the receiver
 *   had closed meanwhile (a reset before any answer) is tried once more on another, within the
 *   same deadline; without agents (a test delivery), each attempt has a connection of its own.
 * - At most a few KB of the answer are read, then dropped: a receiver cannot make us buffer.
 */
import http from 'node:http';
import https from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { injectTraceHeaders } from '../shared/tracing.js';
import { isPublicAddress } from './addresses.js';
import type { OriginAgents } from './agents.js';
import type { WebhookSettings } from './settings.js';

export interface OutgoingDelivery {
  /** The event's id: the `webhook-id`, the same on every attempt, for receivers to de-duplicate by. */
  eventId: string;
  /** The event as JSON, exactly the bytes that are signed and sent. */
  body: string;
  url: string;
  /** Signing secrets (`whsec_…`), the current one first; two during a rotation's 24 hours. */
  secrets: string[];
}

export interface AttemptOutcome {
  /** The receiver's HTTP status; null when no answer came. */
  statusCode: number | null;
  /** Why no answer came (`timeout`, `connection refused`, `address not allowed`...); null when one did. */
  error: string | null;
  /** A 2xx answer. */
  succeeded: boolean;
  /** From the start of the attempt to the answer's headers (or the failure). */
  durationMs: number;
}

export const USER_AGENT = 'clients-api-webhooks/1';
/** How much of an answer is read before it is dropped. */
const MAX_ANSWER_BYTES = 4096;

/** The three Standard Webhooks headers: every secret signs, space separated. */
export function signatureHeaders(delivery: OutgoingDelivery, at: Date): Record<string, string> {
  return {
    'webhook-id': delivery.eventId,
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': delivery.secrets.map((secret) => new Webhook(secret).sign(delivery.eventId, at, delivery.body)).join(' '),
  };
}

class RefusedAddress extends Error {
  constructor() {
    super('address not allowed');
  }
}

/**
 * A `lookup` for the request: resolves with `settings.resolve` and refuses unless every address
 * is public (one private answer among public ones is still refused: the socket may pick it).
 */
function checkedLookup(settings: WebhookSettings): LookupFunction {
  return (hostname, options, callback) => {
    settings.resolve(hostname).then(
      (found) => {
        const wanted = options.family === 4 || options.family === 6 ? found.filter((a) => isIP(a) === options.family) : found;
        if (wanted.length === 0) return callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }), '', 0);
        if (!settings.allowPrivateNetworks && !wanted.every(isPublicAddress)) return callback(new RefusedAddress(), '', 0);
        // Node asks for every address when it races IPv4 and IPv6 (autoSelectFamily), else one.
        if (options.all)
          return (callback as (e: null, a: { address: string; family: number }[]) => void)(
            null,
            wanted.map((address) => ({ address, family: isIP(address) })),
          );
        callback(null, wanted[0]!, isIP(wanted[0]!));
      },
      (error: Error) => callback(error as NodeJS.ErrnoException, '', 0),
    );
  };
}

/** What a failure is called on the attempt (the spec's words: `timeout`, `connection refused`...). */
function describeError(error: unknown): string {
  if (error instanceof RefusedAddress) return error.message;
  const code = (error as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ECONNRESET':
      return 'connection reset';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'host not found';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'host unreachable';
    default:
      if (code?.startsWith('ERR_TLS') || code?.includes('CERT')) return `tls error (${code})`;
      return code ? `connection failed (${code})` : 'connection failed';
  }
}

/** POSTs the delivery once, signed at `at`; never throws. */
export function sendDelivery(
  delivery: OutgoingDelivery,
  at: Date,
  options: { settings: WebhookSettings; timeoutMs: number; agents?: OriginAgents | undefined },
): Promise<AttemptOutcome> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  return new Promise((resolve) => {
    let settled = false;
    const finish = (outcome: Omit<AttemptOutcome, 'durationMs'>) => {
      if (settled) return;
      settled = true;
      resolve({ ...outcome, durationMs: elapsed() });
    };
    const fail = (error: string) => finish({ statusCode: null, error, succeeded: false });

    let url: URL;
    try {
      url = new URL(delivery.url);
    } catch {
      return resolve({ statusCode: null, error: 'invalid url', succeeded: false, durationMs: 0 });
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      return resolve({ statusCode: null, error: 'invalid url', succeeded: false, durationMs: 0 });
    // Node connects to an IP literal without calling `lookup`: judge it here.
    const literal = url.hostname.replace(/^\[(.*)\]$/, '$1');
    if (isIP(literal) && !options.settings.allowPrivateNetworks && !isPublicAddress(literal)) {
      return resolve({ statusCode: null, error: 'address not allowed', succeeded: false, durationMs: 0 });
    }

    const body = Buffer.from(delivery.body);
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'content-length': String(body.length),
      'user-agent': USER_AGENT,
      ...signatureHeaders(delivery, at),
    };
    // With tracing on, the delivery span's `traceparent` (the worker sends inside it): not signed,
    // like any header but the three of Standard Webhooks.
    injectTraceHeaders(headers);
    const target = url;
    const lookup = checkedLookup(options.settings);
    let request: http.ClientRequest | undefined;
    // The deadline also ends an answer whose body trickles on after its headers.
    const timer = setTimeout(() => {
      fail('timeout');
      request?.destroy();
    }, options.timeoutMs);
    const send = (retried: boolean) => {
      const agent = options.agents?.agentFor(target) ?? false;
      const sent = (target.protocol === 'https:' ? https : http).request(target, { method: 'POST', agent, lookup, headers });
      request = sent;
      let answered = false;
      sent.on('close', () => {
        if (request === sent) clearTimeout(timer);
      });
      sent.on('error', (error) => {
        // A kept-alive connection the receiver closed as we reused it: nothing reached it; once more.
        const code = (error as NodeJS.ErrnoException).code;
        if (!answered && !settled && !retried && sent.reusedSocket && (code === 'ECONNRESET' || code === 'EPIPE')) return send(true);
        fail(describeError(error));
      });
      sent.on('response', (response) => {
        answered = true;
        const statusCode = response.statusCode ?? 0;
        // The status is the answer; the body is read (a little) only so the receiver can finish writing it.
        finish({ statusCode, error: null, succeeded: statusCode >= 200 && statusCode < 300 });
        let read = 0;
        response.on('data', (chunk: Buffer) => {
          read += chunk.length;
          // More than we read: the connection goes, rather than back to the agent unread.
          if (read >= MAX_ANSWER_BYTES) sent.destroy();
        });
        response.on('error', () => sent.destroy());
      });
      sent.end(body);
    };
    send(false);
  });
}
