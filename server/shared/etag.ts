/**
 * Strong entity tags (RFC 9110 §8.8.3), the If-Match precondition (§13.1.1) for resources whose
 * representation is one JSON value, and If-None-Match (§13.1.2) for a conditional GET.
 */
import { createHash } from 'node:crypto';

/** A strong ETag of a representation: the same JSON gives the same tag, any change another. */
export function strongEtag(representation: unknown): string {
  // 132 bits of SHA-256: collisions are out of reach, and the header stays short.
  return `"${createHash('sha256').update(JSON.stringify(representation)).digest('base64url').slice(0, 22)}"`;
}

/**
 * A strong ETag of a body's bytes. `coding` tells apart representations of the same content in
 * different content codings (gzip, br), which RFC 9110 requires to have different strong tags.
 */
export function strongEtagOf(bytes: Buffer, coding?: string): string {
  const hash = createHash('sha256').update(bytes).digest('base64url').slice(0, 22);
  return coding ? `"${hash}-${coding}"` : `"${hash}"`;
}

const ENTITY_TAG = /(W\/)?"([^"]*)"/g;

/**
 * Whether a GET's `If-None-Match` names the current representation, so that the answer is 304:
 * `*`, or one of the listed tags equal to `current` by weak comparison (a `W/` prefix is ignored),
 * as §13.1.2 has it.
 */
export function ifNoneMatchMatches(header: string | undefined, current: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  for (const [, , opaque] of header.matchAll(ENTITY_TAG)) {
    if (`"${opaque}"` === current) return true;
  }
  return false;
}

/**
 * Whether an `If-Match` header lets a change go ahead on a resource whose current tag is
 * `current`. No header: yes. `*`: yes (the resource exists). Otherwise one of the listed tags must
 * equal `current` by strong comparison, so a weak tag never matches. The header's syntax has been
 * checked against the spec already.
 */
export function ifMatchPasses(header: string | undefined, current: string): boolean {
  if (header === undefined || header.trim() === '*') return true;
  for (const [, weak, opaque] of header.matchAll(ENTITY_TAG)) {
    if (!weak && `"${opaque}"` === current) return true;
  }
  return false;
}
