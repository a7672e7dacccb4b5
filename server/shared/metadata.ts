/**
 * `metadata`, on clients and contacts alike, as Stripe has it: at most 50 keys (the spec checks
 * the keys and values sent; a merge can still go over), merged key by key on update.
 */
import type { components } from '../../generated/api.js';

export type Metadata = components['schemas']['Metadata'];
export type MetadataInput = components['schemas']['MetadataInput'];

/** The most keys a metadata object holds, after a merge too. */
export const MAX_METADATA_KEYS = 50;

/** The refusal of a merge past MAX_METADATA_KEYS, as `fields.metadata` says it. */
export const METADATA_TOO_MANY = `must leave at most ${MAX_METADATA_KEYS} keys once merged with the ones stored; remove some (set them to null) first`;

/**
 * `current` with `patch` merged into it: a value is trimmed, and a key whose value is null or blank
 * is removed (on create, simply left out). Undefined when the result has more keys than allowed.
 */
export function mergeMetadata(current: Metadata, patch: MetadataInput): Metadata | undefined {
  const merged: Metadata = { ...current };
  for (const [key, raw] of Object.entries(patch)) {
    const value = typeof raw === 'string' ? raw.trim() : null;
    if (value === null || value === '') delete merged[key];
    else merged[key] = value;
  }
  return Object.keys(merged).length > MAX_METADATA_KEYS ? undefined : merged;
}
