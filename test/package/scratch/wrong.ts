// Calls the API does not allow: each line marked `error:` must fail to compile (the test reads
// the compiler's diagnostics and matches them to these lines).
import { createClientsApi, type ClientCreate, type ClientUpdate, verifyWebhook } from '@clients-api/client';
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
