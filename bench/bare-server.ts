/**
 * The baseline the benchmark compares with: bare node:http + a pg pool, doing the same SQL as the
 * real server's hot paths with nothing around it (no auth, no validation, no idempotency, no logs).
 * Its create inserts into the server's own `clients` table, so it pays for that table's indexes as
 * the real create does: since issue 25's first lever neither pays for a trigram index (`q` is
 * served by `client_search`, kept off the request path by the search indexer).
 * DATABASE_URL, PORT; ORG_ID is the organisation its rows belong to.
 */
import pg from 'pg';
import { serveBaseline } from './baseline-http.js';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: Number(process.env.POOL_SIZE ?? 10) });
const orgId = process.env.ORG_ID!;
const columns =
  'id, org_id, name, contact_name, email, phone, website, currency, notes, billing_address, billing_line1, billing_line2, billing_city, billing_region, billing_postal_code, billing_country, tax_number, default_rate, default_payment_terms, default_tax_rate, require_po_number, billing_email, created_at, updated_at, deleted_at';

serveBaseline(pool, async (req, body) => {
  const url = req.url ?? '/';
  if (req.method === 'POST' && url === '/clients') {
    const { name } = JSON.parse(body.toString('utf8')) as { name: string };
    const { rows } = await pool.query(`insert into clients (org_id, env, name) values ($1, 'test', $2) returning ${columns}`, [
      orgId,
      name,
    ]);
    return [201, { data: rows[0] }];
  }
  const byId = /^\/clients\/([0-9a-f-]{36})$/.exec(url);
  if (req.method === 'GET' && byId) {
    const { rows } = await pool.query(`select ${columns} from clients where id = $1 and org_id = $2 and env = 'test'`, [byId[1], orgId]);
    return rows[0] ? [200, { data: rows[0] }] : [404, {}];
  }
  if (req.method === 'GET' && url.startsWith('/clients')) {
    const { rows } = await pool.query(
      `select ${columns} from clients where org_id = $1 and env = 'test' and deleted_at is null order by created_at desc, id desc limit 26`,
      [orgId],
    );
    return [200, { data: rows.slice(0, 25), nextCursor: rows.length > 25 ? 'x' : null }];
  }
  return [404, {}];
});
