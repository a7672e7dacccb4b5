/**
 * Where the key that seals webhook signing secrets (server/webhook-delivery/secrets.ts) comes from. It is
 * never kept inside DATA_DIR, the embedded database's own folder, so that a copy of the data (a
 * backup, a tarball of the folder) is never a copy of the key.
 *
 * - WEBHOOK_SECRET_KEY (base64 of 32 bytes) when set, always first.
 * - Else WEBHOOK_SECRET_KEY_FILE, a file holding it, refused inside DATA_DIR. On PostgreSQL the
 *   file must exist and is never made (a process making its own would leave the others unable to
 *   open what it seals); on the embedded database it is made on first start.
 * - Else, on PostgreSQL: refused at start, saying how to make a key. Every server and worker on
 *   one database must be given the same one.
 * - Else, on the embedded database: `.secrets/webhook-secret.key` beside DATA_DIR (for the default
 *   `./data`, `./.secrets/webhook-secret.key`), made on first start, readable by its owner only;
 *   so `npm start` needs nothing set.
 *
 * A key an earlier version made inside DATA_DIR (`webhook-secret.key`, the old default) is moved,
 * once, to the embedded database's key file, and the move logged, so that the endpoints' secrets
 * sealed with it still open. On PostgreSQL, the refusal names it and says to use it.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, realpathSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';

/** What the key is looked for with (server/config.ts). */
export interface KeySettings {
  databaseUrl: string | undefined;
  dataDir: string;
  webhookSecretKey: string | undefined;
  webhookSecretKeyFile: string | undefined;
}

/** Told what was done with a key that the operator should know. */
export interface KeyNotices {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

const MAKE_ONE = 'Make one with `openssl rand -base64 32`';
/** The file an earlier version kept the key in, inside the embedded database's folder. */
const LEGACY_NAME = 'webhook-secret.key';

/** The key from WEBHOOK_SECRET_KEY (base64 of 32 bytes). */
export function keyFromBase64(text: string): Buffer {
  const key = Buffer.from(text, 'base64');
  if (key.length !== 32) throw new Error(`WEBHOOK_SECRET_KEY must be the base64 of 32 random bytes. ${MAKE_ONE}.`);
  return key;
}

/**
 * The key kept in `path` (readable by its owner only, in a folder only its owner may enter), made
 * on first use unless `mustExist`. Several processes on one machine share it. A file its process
 * does not own is refused (the chmod fails): nobody else may plant a key.
 */
export function keyFromFile(path: string, { mustExist = false, onMade }: { mustExist?: boolean; onMade?: () => void } = {}): Buffer {
  if (!existsSync(path)) {
    if (mustExist) throw new Error(`WEBHOOK_SECRET_KEY_FILE names ${path}, which does not exist. ${MAKE_ONE} > ${path}.`);
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    try {
      writeFileSync(path, `${randomBytes(32).toString('base64')}\n`, { flag: 'wx', mode: 0o600 });
      onMade?.();
    } catch (error) {
      // Another process made it first: read theirs.
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
  chmodSync(path, 0o600);
  return keyFromBase64(readFileSync(path, 'utf8').trim());
}

/** `path` as the file system will reach it: symbolic links of what exists resolved. */
function realPath(path: string): string {
  const absolute = resolve(path);
  if (existsSync(absolute)) return realpathSync(absolute);
  const parent = dirname(absolute);
  return parent === absolute ? absolute : join(realPath(parent), basename(absolute));
}

/** True when `path` is `dir` or anything under it. */
function isInside(path: string, dir: string): boolean {
  const rel = relative(realPath(dir), realPath(path));
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/** The embedded database's default key file: `.secrets/webhook-secret.key` beside DATA_DIR. */
export function defaultKeyFile(dataDir: string): string {
  return join(dirname(resolve(dataDir)), '.secrets', 'webhook-secret.key');
}

/** Moves `from` to `to` (another file system too), readable by its owner only. */
function moveKey(from: string, to: string): void {
  mkdirSync(dirname(to), { recursive: true, mode: 0o700 });
  try {
    renameSync(from, to);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
    copyFileSync(from, to);
    unlinkSync(from);
  }
  chmodSync(to, 0o600);
}

/** An old key file inside the data directory (the earlier default), when there is one. */
function legacyKeyFile(dataDir: string): string | undefined {
  const path = join(dataDir, LEGACY_NAME);
  return existsSync(path) ? path : undefined;
}

/** The sealing key, or an Error whose message tells the operator what to do (the caller exits 1). */
export function loadWebhookKey(settings: KeySettings, notices: KeyNotices): Buffer {
  const { databaseUrl, dataDir, webhookSecretKey, webhookSecretKeyFile } = settings;
  const made = (file: string) => () =>
    notices.info({ file: resolve(file) }, 'made a new webhook secret key: back it up apart from the data');

  if (databaseUrl) {
    if (webhookSecretKey) return keyFromBase64(webhookSecretKey);
    if (!webhookSecretKeyFile) throw new Error(missingKeyOnPostgres(dataDir));
    refuseInside(webhookSecretKeyFile, dataDir, true);
    return keyFromFile(webhookSecretKeyFile, { mustExist: true });
  }
  // An embedded database in memory keeps nothing across restarts: neither does its key.
  if (dataDir.startsWith('memory://')) return webhookSecretKey ? keyFromBase64(webhookSecretKey) : randomBytes(32);

  const legacy = legacyKeyFile(dataDir);
  if (webhookSecretKey) {
    if (legacy)
      notices.warn(
        { file: resolve(legacy) },
        'a webhook secret key file an earlier version made is in the data directory, unused (WEBHOOK_SECRET_KEY is set): delete it, so that a copy of the data holds no key',
      );
    return keyFromBase64(webhookSecretKey);
  }
  const file = webhookSecretKeyFile ?? defaultKeyFile(dataDir);
  refuseInside(file, dataDir, webhookSecretKeyFile !== undefined);
  if (legacy) moveLegacyKey(legacy, file, dataDir, notices);
  return keyFromFile(file, { onMade: made(file) });
}

/** Throws unless the key file `file` is outside the data directory. */
function refuseInside(file: string, dataDir: string, explicit: boolean): void {
  if (!isInside(file, dataDir)) return;
  const named = explicit ? `WEBHOOK_SECRET_KEY_FILE (${file})` : `The webhook secret key's default file (${file}, beside DATA_DIR)`;
  throw new Error(
    `${named} is inside DATA_DIR (${dataDir}): a copy of the data would be a copy of the key. Keep the key outside the data directory and set WEBHOOK_SECRET_KEY_FILE to it.`,
  );
}

function missingKeyOnPostgres(dataDir: string): string {
  const old = legacyKeyFile(dataDir);
  return [
    'WEBHOOK_SECRET_KEY is not set. On PostgreSQL (DATABASE_URL) every server and worker must be given the same key, which seals the webhook endpoints’ signing secrets.',
    `${MAKE_ONE} and set WEBHOOK_SECRET_KEY to it in every process's environment (or WEBHOOK_SECRET_KEY_FILE to a file holding it); keep it apart from the database and its backups.`,
    ...(old
      ? [
          `An earlier version kept a key in ${old}: the secrets of endpoints registered until now are sealed with it, so use that one (WEBHOOK_SECRET_KEY="$(cat ${old})") and move the file out of ${dataDir}.`,
        ]
      : []),
  ].join('\n');
}

/**
 * The key an earlier version kept in the data directory goes to `file`, once: the endpoints'
 * secrets sealed with it keep opening. Refused when `file` already holds another key.
 */
function moveLegacyKey(legacy: string, file: string, dataDir: string, notices: KeyNotices): void {
  if (!existsSync(file)) {
    moveKey(legacy, file);
    notices.warn(
      { from: resolve(legacy), to: resolve(file) },
      'moved the webhook secret key out of the data directory, so that a copy of the data is no longer a copy of the key: back it up apart from the data (backups of the data made before hold the key)',
    );
  } else if (readFileSync(legacy, 'utf8').trim() === readFileSync(file, 'utf8').trim()) {
    unlinkSync(legacy);
    notices.warn({ removed: resolve(legacy), kept: resolve(file) }, 'removed a copy of the webhook secret key from the data directory');
  } else {
    throw new Error(
      `Two different webhook secret keys: ${legacy}, in the data directory (where an earlier version kept it), and ${file}. The endpoints' secrets in ${dataDir} are sealed with the first: move it out of the data directory and set WEBHOOK_SECRET_KEY_FILE to it (${file} may be the key of another data directory beside this one).`,
    );
  }
}
