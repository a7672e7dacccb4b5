/**
 * A tenant's writes never lock its organisation's row (2026_12_10_0001_tenant_writes_without_organisation_lock):
 * no foreign key of `clients`, `idempotency_keys` or `contacts` checks it, so a tenant's concurrent
 * writes make no MultiXacts on it and a plan change (which locks it `for update`) holds none of
 * them up. Deleting an organisation still takes its rows with it, by the migration's trigger.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ClientsApi } from '../../client/index.js';
import * as migration from '../../server/db/migrations/2026_12_10_0001_tenant_writes_without_organisation_lock.js';
import { usingPostgres, whileLocked } from '../support/database.js';
import { startTestServer, type TestServer } from '../support/server.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.close());

/** The organisation row's raw xmax: the last transaction (or MultiXact) that locked or updated it. */
async function organisationXmax(orgId: string): Promise<string> {
  const { rows } = await sql<{ xmax: string }>`select xmax::text as xmax from organisations where id = ${orgId}`.execute(
    server.database.db,
  );
  return rows[0]!.xmax;
}

/** One of each keyed write: a client created, updated and deleted, a contact created. */
async function writeEverything(api: ClientsApi): Promise<void> {
  const created = await api.POST('/clients', { body: { name: 'Acme' } });
  expect(created.response.status).toBe(201);
  const id = created.data!.data.id;
  const contact = await api.POST('/clients/{id}/contacts', { params: { path: { id } }, body: { name: 'Marge' } });
  expect(contact.response.status).toBe(201);
  const updated = await api.PATCH('/clients/{id}', { params: { path: { id } }, body: { notes: 'n' } });
  expect(updated.response.status).toBe(200);
  const other = await api.POST('/clients', { body: { name: 'Globex' } });
  expect((await api.DELETE('/clients/{id}', { params: { path: { id: other.data!.data.id } } })).response.status).toBe(200);
}

it("leaves the organisation's row as it was: no write of the tenant locks it", async () => {
  const { api, token } = await server.tenant({ plan: 'studio' });
  const before = await organisationXmax(token.orgId);
  await writeEverything(api);
  await Promise.all(Array.from({ length: 8 }, (_, i) => api.POST('/clients', { body: { name: `Burst ${i}` } })));
  // A foreign key's check would have left its transaction (or a MultiXact of several) there.
  expect(await organisationXmax(token.orgId)).toBe(before);
});

it.runIf(usingPostgres)("goes on while the organisation's row is locked for update, as a plan change locks it", async () => {
  const { api, token } = await server.tenant({ plan: 'studio' });
  const lock = `select id from organisations where id = '${token.orgId}' for update`;
  const outcome = await whileLocked(server.database.url!, lock, () =>
    Promise.race([
      writeEverything(api).then(() => 'written' as const),
      new Promise<'waited'>((resolve) => setTimeout(() => resolve('waited'), 5_000)),
    ]),
  );
  expect(outcome).toBe('written');
});

it("deleting an organisation deletes its clients, contacts and keys, and no other organisation's", async () => {
  const gone = await server.tenant({ plan: 'studio' });
  const kept = await server.tenant({ plan: 'studio' });
  await writeEverything(gone.api);
  await writeEverything(kept.api);
  const rowsOf = async (orgId: string) => {
    const count = async (table: 'clients' | 'contacts' | 'idempotency_keys') =>
      Number(
        (
          await server.database.db
            .selectFrom(table)
            .select((eb) => eb.fn.countAll<string>().as('n'))
            .where('org_id', '=', orgId)
            .executeTakeFirstOrThrow()
        ).n,
      );
    return { clients: await count('clients'), contacts: await count('contacts'), keys: await count('idempotency_keys') };
  };
  const keptBefore = await rowsOf(kept.token.orgId);
  expect(keptBefore).toEqual({ clients: 2, contacts: 1, keys: 4 });
  expect(await rowsOf(gone.token.orgId)).toEqual(keptBefore);

  await server.database.db.deleteFrom('organisations').where('id', '=', gone.token.orgId).execute();
  expect(await rowsOf(gone.token.orgId)).toEqual({ clients: 0, contacts: 0, keys: 0 });
  expect(await rowsOf(kept.token.orgId)).toEqual(keptBefore);
});

it("the migration's down puts the keys back and drops the trigger; up again takes them off", async () => {
  const db = server.database.db;
  const keysToOrganisations = async () =>
    (
      await sql<{ name: string }>`
        select conrelid::regclass::text as name from pg_constraint
        where contype = 'f' and confrelid = 'organisations'::regclass order by 1`.execute(db)
    ).rows.map((row) => row.name);
  const trigger = async () =>
    Number(
      (await sql<{ n: string }>`select count(*) as n from pg_trigger where tgname = 'organisations_delete_tenant_rows'`.execute(db))
        .rows[0]!.n,
    );
  expect(await keysToOrganisations()).toEqual(['api_tokens', 'webhook_endpoints']);
  expect(await trigger()).toBe(1);
  await migration.down(db as never);
  expect(await keysToOrganisations()).toEqual(['api_tokens', 'clients', 'contacts', 'idempotency_keys', 'webhook_endpoints']);
  expect(await trigger()).toBe(0);
  await migration.up(db as never);
  expect(await keysToOrganisations()).toEqual(['api_tokens', 'webhook_endpoints']);
  expect(await trigger()).toBe(1);
});
