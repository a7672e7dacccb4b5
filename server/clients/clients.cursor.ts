/** The opaque cursor of GET /clients: the position of the last row of a page (server/shared/keyset-cursor.ts). */
import { validationFailed } from '../shared/errors.js';
import { decodeKeyset, encodeKeyset } from '../shared/keyset-cursor.js';
import { parameterMessage } from '../shared/spec-values.js';
import type { ListPosition } from './clients.queries.js';

const CURSOR_ERROR = parameterMessage('listClients', 'cursor');

export function encodeCursor(position: ListPosition): string {
  return encodeKeyset({ at: position.createdAt, id: position.id });
}

/** A cursor that this API did not give out is a 400 naming `cursor`, never a database error. */
export function decodeCursor(cursor: string): ListPosition {
  const { at, id } = decodeKeyset(cursor, () => validationFailed({ cursor: CURSOR_ERROR }));
  return { createdAt: at, id };
}
