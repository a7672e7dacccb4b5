// Calls the API does not allow: each line marked `error:` must fail to compile (the test reads
// the compiler's diagnostics and matches them to these lines).
import { ClientsApiError, createClientsApi, type ClientCreate, type ClientUpdate, verifyWebhook } from '@clients-api/client';
import { clientsApiHandlers, exampleBody, exampleResponse } from '@clients-api/client/msw';

const api = createClientsApi({ baseUrl: 'http://127.0.0.1:3000', token: 'hsk_test_x' });

export const typo: ClientCreate = { name: 'Globex', nmae: 'Globex' }; // error: nmae
export const cleared: ClientUpdate = { name: null }; // error: name cannot be cleared
await api.POST('/clients', { body: { name: 'Globex', defaultRate: true } }); // error: defaultRate
await api.GET('/clients', { params: { query: { deleted: 'all' } } }); // error: deleted
await api.GET('/clients/{id}', {}); // error: path id
export const id: number | undefined = (await api.GET('/clients/{id}', { params: { path: { id: 'x' } } })).data?.data.id; // error: id is a string

const event = verifyWebhook('{}', {}, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
if (event.type === 'client.created') console.log(event.data.previousAttributes); // error: only client.updated has previousAttributes
export const kind: 'client.created' | 'client.updated' = event.type; // error: not narrowed (and unknown types are possible)
export const misspelt = event.type === 'client.create'; // error: no such event type

// Mocks: an override's body is the operation's success body, exactly.
const client = exampleBody('getClient').data;
clientsApiHandlers({ getClient: { data: { ...client, nmae: 'Initech' } } }); // error: misspelt field in an override
clientsApiHandlers({ getClient: ({ reply }) => reply({ data: { ...client, nmae: 'Initech' } }) }); // error: misspelt field in a reply
clientsApiHandlers({ getClient: () => ({ data: client }) }); // error: a function answers a Response (reply), not a bare body
clientsApiHandlers({ getClinet: { data: client } }); // error: no such operationId
clientsApiHandlers({ getHealth: { status: 'down' } }); // error: the spec says ok
exampleResponse('getClient', 418); // error: a status the spec does not document

// Helpers: paginate takes the spec's cursor lists only, with their own parameters.
api.paginate('/clients/{id}', { params: { path: { id: 'x' } } }); // error: not a list
api.paginate('/healthz'); // error: not a list
api.paginate('/clients', { params: { query: { limt: 100 } } }); // error: no such query parameter
api.paginate('/webhook-endpoints/{id}/deliveries'); // error: its path id is required
for await (const item of api.paginate('/tokens')) console.log(item.nmae); // error: a token has no nmae
await api.GET('/clients', { timeoutMs: '5s' }); // error: milliseconds, a number

// throwOnError: the data alone; a boolean that is not known to be true or false is refused.
const strict = createClientsApi({ baseUrl: 'http://127.0.0.1:3000', token: 'hsk_test_x', throwOnError: true });
console.log((await strict.GET('/clients')).error); // error: no error on the data
export const unchecked: string = (await api.GET('/clients/{id}', { params: { path: { id: 'x' } } })).data.data.id; // error: data may be undefined without throwOnError
createClientsApi({ baseUrl: 'http://127.0.0.1:3000', token: 'hsk_test_x', throwOnError: Math.random() > 0.5 }); // error: throwOnError is true or false
try {
  await strict.GET('/clients');
} catch (error) {
  if (error instanceof ClientsApiError) {
    console.log(error.statusCode); // error: it is status
    const code: 'not_found' | 'rate_limited' = error.code; // error: code is the union of every code
    const plan: 'enterprise' | undefined = error.requiredPlan; // error: no such plan
    console.log(code, plan);
  }
}
