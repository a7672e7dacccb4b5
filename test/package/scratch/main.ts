// A program of a project elsewhere, using the installed package against a real server. It prints
// what it saw as one JSON line; the test checks it (and the server's state).
import {
  createClientsApi,
  type ApiErrorBody,
  type ClientCreate,
  type ClientList,
  type ClientResource,
  type ClientUpdate,
  type Fetch,
  verifyWebhook,
  WebhookVerificationError,
} from '@clients-api/client';
import { baseUrl, token } from './config.js';

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
  }),
);
