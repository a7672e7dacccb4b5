// A program of a project elsewhere, using the installed package against a real server. It prints
// what it saw as one JSON line; the test checks it (and the server's state).
import {
  ClientsApiError,
  createClientsApi,
  type ApiErrorBody,
  type ErrorCode,
  type ClientCreate,
  type ClientList,
  type ClientResource,
  type ClientUpdate,
  type Fetch,
  verifyWebhook,
  WebhookVerificationError,
} from '@clients-api/client';
import { baseUrl, holdingUrl, studioToken, token } from './config.js';

const api = createClientsApi({ baseUrl, token, retry: false });

// Create, then the same request again with the same key: replayed, not created twice.
const globex: ClientCreate = { name: 'Globex Corporation', email: 'billing@globex.test', currency: 'eur', defaultRate: 120.5 };
const key = crypto.randomUUID();
const created = await api.POST('/clients', { params: { header: { 'Idempotency-Key': key } }, body: globex });
if (created.error) throw new Error(`create: ${created.error.error.code}`);
const client: ClientResource = created.data.data;
const repeated = await api.POST('/clients', { params: { header: { 'Idempotency-Key': key } }, body: globex });

// Read, with its ETag.
const read = await api.GET('/clients/{id}', { params: { path: { id: client.id } } });
const etag = read.response.headers.get('ETag') ?? '';

// List.
const listed = await api.GET('/clients', { params: { query: { limit: 10 } } });
const page: ClientList | undefined = listed.data;

// Update with the ETag; then again with the ETag now stale.
const change: ClientUpdate = { contactName: 'Hank Scorpio', email: null };
const updated = await api.PATCH('/clients/{id}', { params: { path: { id: client.id }, header: { 'If-Match': etag } }, body: change });
const stale = await api.PATCH('/clients/{id}', {
  params: { path: { id: client.id }, header: { 'If-Match': etag } },
  body: { notes: 'lost?' },
});

// A 400 naming the bad fields.
const invalid = await api.POST('/clients', { body: { name: 'Initech', email: 'not an e-mail', defaultRate: '1e3' } });
const failure: ApiErrorBody | undefined = invalid.error;

// The client's own retry: the first answer is lost on the way back (the server did create the
// client); the retry carries the same Idempotency-Key and gets the first answer replayed.
const keysSent: (string | null)[] = [];
let lost = false;
const losesFirstAnswer: Fetch = async (request) => {
  keysSent.push(request.headers.get('Idempotency-Key'));
  const response = await fetch(request);
  if (!lost) {
    lost = true;
    await response.body?.cancel();
    throw new TypeError('fetch failed: the connection was reset');
  }
  return response;
};
const retrying = createClientsApi({ baseUrl, token, fetch: losesFirstAnswer, retry: { baseDelayMs: 1, maxDelayMs: 10 } });
const retried = await retrying.POST('/clients', { body: { name: 'Initech' } });

// A webhook delivery (signed by the test just before this runs), verified; then the same with its body changed.
const delivery = JSON.parse(process.env.WEBHOOK_DELIVERY ?? '{}') as { secret: string; body: string; headers: Record<string, string> };
const event = verifyWebhook(new TextEncoder().encode(delivery.body), new Headers(delivery.headers), delivery.secret);
const deletedAt = event.type === 'client.deleted' ? event.data.object.deletedAt : undefined;
let tampered = 'accepted';
try {
  verifyWebhook(delivery.body.replace('Globex', 'Initech'), delivery.headers, [delivery.secret]);
} catch (error) {
  if (error instanceof WebhookVerificationError) tampered = `${error.name}: ${error.message}`;
}

// paginate: every client of an organisation that has 250 (made by the test), in pages of 100.
const pagesAsked: string[] = [];
const walking = createClientsApi({
  baseUrl,
  token: studioToken,
  retry: false,
  fetch: (request) => {
    pagesAsked.push(new URL(request.url).search);
    return fetch(request);
  },
});
const walked: string[] = [];
for await (const item of walking.paginate('/clients', { params: { query: { limit: 100 } } })) {
  const typed: ClientResource = item;
  walked.push(typed.id);
}

// timeoutMs and signal against a server that holds requests (the test's; it counts the attempts).
async function timed(call: () => Promise<unknown>) {
  const started = Date.now();
  try {
    const answer = await call();
    return { elapsedMs: Date.now() - started, outcome: 'answered', answer };
  } catch (error) {
    const elapsedMs = Date.now() - started;
    if (error instanceof ClientsApiError) {
      const code: ErrorCode | 'unexpected_response' = error.code;
      const retryAfter: number | null = error.retryAfter;
      const requestId: string | null = error.requestId;
      return { elapsedMs, outcome: error.name, status: error.status, code, retryAfter, requestId, message: error.message };
    }
    return { elapsedMs, outcome: error instanceof Error ? error.name : String(error) };
  }
}
const fastRetries = { baseDelayMs: 10, maxDelayMs: 10 };
// Never answered: aborted at the timeout, one attempt.
const held = await timed(() =>
  createClientsApi({ baseUrl: `${holdingUrl}/hold`, token, retry: fastRetries }).GET('/clients', { timeoutMs: 800 }),
);
// 503 with Retry-After: 1, then never answered: the client's own timeoutMs bounds both attempts and the wait.
const flaky = await timed(() =>
  createClientsApi({ baseUrl: `${holdingUrl}/flaky`, token, retry: fastRetries, timeoutMs: 1_800 }).GET('/clients'),
);
// Always 503 with Retry-After: 5: waiting would outlast the timeout, so no retry; thrown as a ClientsApiError.
const busy = await timed(() =>
  createClientsApi({ baseUrl: `${holdingUrl}/busy`, token, retry: fastRetries, throwOnError: true }).GET('/clients', { timeoutMs: 2_000 }),
);
// Cancelled by its signal: at once, and not retried.
const controller = new AbortController();
setTimeout(() => controller.abort(), 300);
const cancelled = await timed(() =>
  createClientsApi({ baseUrl: `${holdingUrl}/cancel`, token, retry: fastRetries }).GET('/clients', {
    signal: controller.signal,
    timeoutMs: 5_000,
  }),
);

// throwOnError against the real server: the data alone, or a ClientsApiError with typed fields.
const strict = createClientsApi({ baseUrl, token, retry: false, throwOnError: true });
const readStrictly: ClientResource = (await strict.GET('/clients/{id}', { params: { path: { id: client.id } } })).data;
const etagStrictly = (await strict.GET('/clients/{id}', { params: { path: { id: client.id } }, throwOnError: false })).response.headers.get(
  'ETag',
);
let thrown: Record<string, unknown> = { thrown: false };
try {
  await strict.POST('/clients', { body: { name: 'Initech', email: 'not an e-mail', defaultRate: '1e3' } });
} catch (error) {
  if (error instanceof ClientsApiError) {
    const fields: Readonly<Record<string, string>> | undefined = error.fields;
    const body: ApiErrorBody | undefined = error.body;
    thrown = {
      isError: error instanceof Error,
      name: error.name,
      status: error.status,
      code: error.code,
      message: error.message,
      fields,
      requestId: error.requestId,
      retryAfter: error.retryAfter,
      sameAsBody: body?.error.message === error.message,
    };
  }
}
let missing: Record<string, unknown> = { thrown: false };
try {
  await strict.GET('/clients/{id}', { params: { path: { id: crypto.randomUUID() } } });
} catch (error) {
  if (error instanceof ClientsApiError) missing = { status: error.status, code: error.code };
}

console.log(
  JSON.stringify({
    created: { status: created.response.status, id: client.id, currency: client.currency, defaultRate: client.defaultRate },
    repeated: {
      status: repeated.response.status,
      replayed: repeated.response.headers.get('Idempotent-Replayed'),
      id: repeated.data?.data.id,
    },
    read: { status: read.response.status, name: read.data?.data.name, etag },
    listed: { status: listed.response.status, ids: page?.data.map((c) => c.id), nextCursor: page?.nextCursor },
    updated: {
      status: updated.response.status,
      contactName: updated.data?.data.contactName,
      email: updated.data?.data.email,
      etag: updated.response.headers.get('ETag'),
    },
    stale: { status: stale.response.status, code: stale.error?.error.code },
    invalid: { status: invalid.response.status, code: failure?.error.code, fields: failure?.error.fields },
    retried: {
      status: retried.response.status,
      replayed: retried.response.headers.get('Idempotent-Replayed'),
      id: retried.data?.data.id,
      keysSent,
    },
    webhook: { type: String(event.type), id: event.id, deletedAt, tampered },
    paginated: { ids: walked, pagesAsked },
    timeouts: { held, flaky, busy, cancelled },
    throwOnError: { read: readStrictly.name, etag: etagStrictly, thrown, missing },
  }),
);
