/** The opaque cursor of GET /clients: the position of the last row of a page (server/shared/keyset-cursor.ts). */
import { validationFailed } from '../shared/errors.js';
import { decodeKeyset, encodeKeyset, type KeysetPosition } from '../shared/keyset-cursor.js';
import { parameterMessage } from '../shared/spec-values.js';

const CURSOR_ERROR = parameterMessage('listClients', 'cursor');

export function encodeCursor(position: KeysetPosition): string {
  return encodeKeyset(position);
}

/** A cursor that this API did not give out is a 400 naming `cursor`, never a database error. */
export function decodeCursor(cursor: string): KeysetPosition {
  return decodeKeyset(cursor, () => validationFailed({ cursor: CURSOR_ERROR }));
}
