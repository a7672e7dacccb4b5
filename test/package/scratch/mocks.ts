// A project elsewhere testing its code without the server: the installed package's MSW handlers
// answer every operation, called through the typed client. It prints what each call got as one
// JSON line; the test judges each answer against the spec.
import { createClientsApi } from '@clients-api/client';
import { clientsApiHandlers, exampleBody, exampleResponse } from '@clients-api/client/msw';
import { setupServer } from 'msw/node';

const server = setupServer(...clientsApiHandlers());
server.listen({ onUnhandledRequest: 'error' });
// The request each call sent, to report its method and path beside its answer.
let sent: Request | undefined;
const api = createClientsApi({
  baseUrl: 'https://clients-api.test',
  token: 'hsk_test_Xq3LmZ8pRt2K_9fJ2kLm4Np6Qr8St0Uv2Wx4Yz6Ab8Cd0',
  retry: false,
  fetch: (request) => {
    sent = request;
    return fetch(request);
  },
});

const id = exampleBody('getClient').data.id;
const endpointId = exampleBody('getWebhookEndpoint').data.id;
const tokenId = exampleBody('revokeToken').data.id;
const eventId = exampleBody('getEvent').data.id;
const { clientId: contactClientId, id: contactId } = exampleBody('getContact').data;
const contactPath = { path: { id: contactClientId, contactId } };
const path = { path: { id } };
const endpoint = { path: { id: endpointId } };

interface Answer {
  data?: unknown;
  error?: unknown;
  response: Response;
}

const calls: Record<string, () => Promise<Answer>> = {
  createClient: () => api.POST('/clients', { body: { name: 'Globex Corporation' } }),
  getClient: () => api.GET('/clients/{id}', { params: path }),
  listClients: () => api.GET('/clients', { params: { query: { limit: 2 } } }),
  updateClient: () => api.PATCH('/clients/{id}', { params: path, body: { contactName: 'Hank Scorpio' } }),
  deleteClient: () => api.DELETE('/clients/{id}', { params: path }),
  restoreClient: () => api.POST('/clients/{id}/restore', { params: path }),
  createContact: () => api.POST('/clients/{id}/contacts', { params: { path: { id: contactClientId } }, body: { name: 'Marge Simpson' } }),
  listContacts: () => api.GET('/clients/{id}/contacts', { params: { path: { id: contactClientId } } }),
  getContact: () => api.GET('/clients/{id}/contacts/{contactId}', { params: contactPath }),
  updateContact: () => api.PATCH('/clients/{id}/contacts/{contactId}', { params: contactPath, body: { role: 'Head of finance' } }),
  deleteContact: () => api.DELETE('/clients/{id}/contacts/{contactId}', { params: contactPath }),
  listTokens: () => api.GET('/tokens'),
  createToken: () => api.POST('/tokens', { body: { name: 'Nightly invoice sync', scopes: ['clients:read'] } }),
  revokeToken: () => api.DELETE('/tokens/{id}', { params: { path: { id: tokenId } } }),
  listEvents: () => api.GET('/events'),
  getEvent: () => api.GET('/events/{id}', { params: { path: { id: eventId } } }),
  listWebhookEndpoints: () => api.GET('/webhook-endpoints'),
  createWebhookEndpoint: () =>
    api.POST('/webhook-endpoints', { body: { url: 'https://crm.example.com/webhooks/clients', enabledEvents: ['*'] } }),
  getWebhookEndpoint: () => api.GET('/webhook-endpoints/{id}', { params: endpoint }),
  updateWebhookEndpoint: () => api.PATCH('/webhook-endpoints/{id}', { params: endpoint, body: { disabled: true } }),
  deleteWebhookEndpoint: () => api.DELETE('/webhook-endpoints/{id}', { params: endpoint }),
  rotateWebhookEndpointSecret: () => api.POST('/webhook-endpoints/{id}/rotate-secret', { params: endpoint }),
  listWebhookDeliveries: () => api.GET('/webhook-endpoints/{id}/deliveries', { params: endpoint }),
  testWebhookEndpoint: () => api.POST('/webhook-endpoints/{id}/test', { params: endpoint }),
  recoverWebhookEndpoint: () =>
    api.POST('/webhook-endpoints/{id}/recover', {
      params: endpoint,
      body: { since: '2026-12-01T09:00:00.000Z', until: '2026-12-01T12:30:00.000Z' },
    }),
  redeliverEvent: () => api.POST('/events/{id}/redeliver', { params: { path: { id: eventId } } }),
  getHealth: () => api.GET('/healthz'),
  getReadiness: () => api.GET('/readyz'),
  getDocs: () => api.GET('/docs', { parseAs: 'text' }),
  getOpenApiDocument: () => api.GET('/openapi.json'),
};

function seen(answer: Answer) {
  const { response } = answer;
  // No DOM.Iterable here: Headers is walked with forEach.
  const headers: Record<string, string> = {};
  response.headers.forEach((value, name) => {
    headers[name] = value;
  });
  return {
    method: sent?.method,
    path: sent ? new URL(sent.url).pathname : undefined,
    status: response.status,
    headers,
    body: answer.data ?? answer.error,
  };
}

const answers: Record<string, ReturnType<typeof seen>> = {};
for (const [operationId, call] of Object.entries(calls)) answers[operationId] = seen(await call());

// Overrides: a body of the operation's type, a reply that depends on the request, the spec's 404.
server.use(
  ...clientsApiHandlers({
    getClient: ({ params, reply }) =>
      params.id === 'missing' ? exampleResponse('getClient', 404) : reply({ data: { ...exampleBody('getClient').data, name: 'Initech' } }),
    listClients: { data: [], nextCursor: null },
  }),
);
const renamed = await api.GET('/clients/{id}', { params: path });
const missing = await api.GET('/clients/{id}', { params: { path: { id: 'missing' } } });
const empty = await api.GET('/clients');
server.close();

console.log(
  JSON.stringify({
    answers,
    overridden: {
      renamed: { status: renamed.response.status, name: renamed.data?.data.name },
      missing: { status: missing.response.status, code: missing.error?.error.code },
      empty: { status: empty.response.status, body: empty.data },
    },
  }),
);
