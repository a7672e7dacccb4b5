/** The one place where an api_tokens row (snake_case) becomes the API's Token (camelCase). */
import type { components } from '../../generated/api.js';
import type { ListedTokenRow } from './tokens.queries.js';

export type Token = components['schemas']['Token'];
import type { Scope } from '../shared/spec-values.js';

const iso = (date: Date | null) => (date ? date.toISOString() : null);

export function toToken(row: ListedTokenRow): Token {
  return {
    id: row.id,
    name: row.name,
    prefix: row.prefix,
    env: row.env,
    scopes: row.scopes as Scope[],
    createdAt: row.created_at.toISOString(),
    lastUsedAt: iso(row.last_used_at),
    expiresAt: iso(row.expires_at),
    revokedAt: iso(row.revoked_at),
  };
}
