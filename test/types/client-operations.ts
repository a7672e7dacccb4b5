/**
 * Checked by `npm run typecheck`: the typed client knows every operation on clients, with its
 * parameters, body and answer; calls the spec does not allow do not compile.
 */
import type { ClientList, ClientResource, ClientsApi } from '../../client/index.js';

export async function everyOperation(api: ClientsApi, id: string): Promise<void> {
  const list = await api.GET('/clients', {
    params: { query: { limit: 10, cursor: 'abc', q: 'acme', updatedSince: '2026-01-01T00:00:00Z', deleted: 'include' } },
  });
  const page: ClientList | undefined = list.data;
  const one = await api.GET('/clients/{id}', { params: { path: { id } } });
  const read: ClientResource | undefined = one.data?.data;
  await api.PATCH('/clients/{id}', {
    params: { path: { id }, header: { 'If-Match': '"tag"', 'Idempotency-Key': '01JDQ3W4J6Y5Z8K2N7P9R1T3V5' } },
    body: { contactName: null, defaultRate: 120.5 },
  });
  await api.DELETE('/clients/{id}', { params: { path: { id }, header: { 'If-Match': '*' } } });
  await api.POST('/clients/{id}/restore', { params: { path: { id } } });
  void page;
  void read;

  // @ts-expect-error deleted takes exclude, include or only
  await api.GET('/clients', { params: { query: { deleted: 'all' } } });
  // @ts-expect-error name cannot be cleared
  await api.PATCH('/clients/{id}', { params: { path: { id } }, body: { name: null } });
  // @ts-expect-error money is a number or a decimal string
  await api.PATCH('/clients/{id}', { params: { path: { id } }, body: { defaultRate: true } });
  // @ts-expect-error restore takes no body
  await api.POST('/clients/{id}/restore', { params: { path: { id } }, body: { name: 'x' } });
}

/** The README's list loop, kept compiling. */
export async function readmeListLoop(api: ClientsApi): Promise<void> {
  let cursor: string | undefined;
  do {
    const page = await api.GET('/clients', { params: { query: { limit: 100, cursor } } });
    if (page.error) throw new Error(page.error.error.message);
    for (const client of page.data.data) console.log(client.id, client.name);
    cursor = page.data.nextCursor ?? undefined;
  } while (cursor);
}

/** The README's read-change-delete-restore example, kept compiling. */
export async function readmeChangeExample(api: ClientsApi, id: string): Promise<void> {
  const read = await api.GET('/clients/{id}', { params: { path: { id } } });
  const etag = read.response.headers.get('ETag')!;
  const { error } = await api.PATCH('/clients/{id}', {
    params: { path: { id }, header: { 'If-Match': etag } },
    body: { contactName: 'Hank Scorpio', notes: null }, // null clears a field
  });
  if (error?.error.code === 'precondition_failed') {
    // Someone changed it since the read: read again, merge, retry with the new ETag.
  }
  await api.DELETE('/clients/{id}', { params: { path: { id } } });
  await api.POST('/clients/{id}/restore', { params: { path: { id } } });
}
