/**
 * What `npm run generate` derives for the client package (client/, `@clients-api/client`):
 *   client/generated/api.ts   the spec's types, shipped inside the package (a published package
 *                             cannot import ../generated/)
 *   client/package.json       its `version`, which follows the spec's info.version
 *   package-lock.json         the same version in the lock's entry for the workspace, so that
 *                             `npm ci` and the lock agree
 * Paths are relative to the repository's root.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const CLIENT_PACKAGE_JSON = 'client/package.json';
const CLIENT_TYPES = 'client/generated/api.ts';
const LOCK = 'package-lock.json';
/** The workspace's key in the lock's `packages`. */
const LOCK_ENTRY = 'client';

type Json = Record<string, unknown>;

const readJson = (root: string, path: string) => JSON.parse(readFileSync(join(root, path), 'utf8')) as Json;
const writeJson = (value: Json) => `${JSON.stringify(value, null, 2)}\n`;

/** The package's files as the spec makes them, from generated/'s types and the spec's info.version. */
export function clientPackageFiles(root: string, apiTypes: string, specVersion: string): Map<string, string> {
  const manifest = readJson(root, CLIENT_PACKAGE_JSON);
  const lock = readJson(root, LOCK);
  const lockEntry = (lock.packages as Record<string, Json> | undefined)?.[LOCK_ENTRY];
  if (!lockEntry) throw new Error(`${LOCK} has no entry for the workspace ${LOCK_ENTRY}/: run \`npm install\`.`);
  manifest.version = specVersion;
  lockEntry.version = specVersion;
  return new Map([
    [CLIENT_TYPES, apiTypes],
    [CLIENT_PACKAGE_JSON, writeJson(manifest)],
    [LOCK, writeJson(lock)],
  ]);
}
