/**
 * Where the key that seals webhook secrets comes from (server/webhook-delivery/secret-key.ts): never from
 * inside DATA_DIR; on PostgreSQL only from WEBHOOK_SECRET_KEY (or an existing key file), refused
 * otherwise with a message that says how to make one; on the embedded database from
 * `.secrets/webhook-secret.key` beside DATA_DIR, made on first start, owner-only; and a key an
 * earlier version made inside DATA_DIR is moved there, so the secrets it sealed still open.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { defaultKeyFile, type KeySettings, loadWebhookKey } from '../../server/webhook-delivery/secret-key.js';
import { secretBox } from '../../server/webhook-delivery/secrets.js';

const root = mkdtempSync(join(tmpdir(), 'webhook-secret-key-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A fresh folder holding a data directory `data` (not made: the database makes it). */
let base: string;
let dataDir: string;
beforeEach(() => {
  base = mkdtempSync(join(root, 'install-'));
  dataDir = join(base, 'data');
});

const notices: { level: 'info' | 'warn'; fields: object; message: string }[] = [];
const notify = {
  info: (fields: object, message: string) => notices.push({ level: 'info', fields, message }),
  warn: (fields: object, message: string) => notices.push({ level: 'warn', fields, message }),
};
beforeEach(() => {
  notices.length = 0;
});

const embedded = (extra: Partial<KeySettings> = {}): KeySettings => ({
  databaseUrl: undefined,
  dataDir,
  webhookSecretKey: undefined,
  webhookSecretKeyFile: undefined,
  ...extra,
});
const postgres = (extra: Partial<KeySettings> = {}): KeySettings => embedded({ databaseUrl: 'postgres://db.internal/clients', ...extra });
const base64Key = () => randomBytes(32).toString('base64');
/** Writes a key file as an earlier version made it: inside the data directory. */
function legacyKey(): string {
  mkdirSync(dataDir, { recursive: true });
  const key = base64Key();
  writeFileSync(join(dataDir, 'webhook-secret.key'), `${key}\n`, { mode: 0o600 });
  return key;
}

describe('on PostgreSQL (DATABASE_URL)', () => {
  it('refuses to go without WEBHOOK_SECRET_KEY, saying how to make one, and makes no file', () => {
    expect(() => loadWebhookKey(postgres(), notify)).toThrow(/WEBHOOK_SECRET_KEY is not set[\s\S]*openssl rand -base64 32/);
    expect(existsSync(join(base, '.secrets'))).toBe(false);
    expect(existsSync(dataDir)).toBe(false);
  });

  it('names the key an earlier version made in the data directory, and says to use it', () => {
    legacyKey();
    expect(() => loadWebhookKey(postgres(), notify)).toThrow(
      /earlier version kept a key in .*data\/webhook-secret\.key[\s\S]*WEBHOOK_SECRET_KEY="\$\(cat /,
    );
  });

  it('takes WEBHOOK_SECRET_KEY', () => {
    const key = base64Key();
    expect(loadWebhookKey(postgres({ webhookSecretKey: key }), notify).toString('base64')).toBe(key);
    expect(() => loadWebhookKey(postgres({ webhookSecretKey: randomBytes(16).toString('base64') }), notify)).toThrow(/32 random bytes/);
  });

  it('takes an existing WEBHOOK_SECRET_KEY_FILE outside DATA_DIR, and never makes one', () => {
    const file = join(base, 'mounted', 'webhook.key');
    expect(() => loadWebhookKey(postgres({ webhookSecretKeyFile: file }), notify)).toThrow(/does not exist/);
    expect(existsSync(file)).toBe(false);
    const key = base64Key();
    mkdirSync(join(base, 'mounted'));
    writeFileSync(file, key, { mode: 0o600 });
    expect(loadWebhookKey(postgres({ webhookSecretKeyFile: file }), notify).toString('base64')).toBe(key);
    legacyKey();
    expect(() => loadWebhookKey(postgres({ webhookSecretKeyFile: join(dataDir, 'webhook-secret.key') }), notify)).toThrow(
      /inside DATA_DIR/,
    );
  });
});

describe('on the embedded database', () => {
  it('makes the key in .secrets beside DATA_DIR, owner-only, once; nothing inside DATA_DIR', () => {
    const key = loadWebhookKey(embedded(), notify);
    const file = join(base, '.secrets', 'webhook-secret.key');
    expect(defaultKeyFile(dataDir)).toBe(file);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(base, '.secrets')).mode & 0o777).toBe(0o700);
    expect(Buffer.from(readFileSync(file, 'utf8').trim(), 'base64').equals(key)).toBe(true);
    expect(existsSync(dataDir)).toBe(false);
    expect(notices).toEqual([{ level: 'info', fields: { file }, message: expect.stringMatching(/made a new webhook secret key/) }]);
    // The next start reads the same key, and says nothing.
    expect(loadWebhookKey(embedded(), notify).equals(key)).toBe(true);
    expect(notices).toHaveLength(1);
  });

  it('for the default ./data, the key is ./.secrets/webhook-secret.key', () => {
    expect(defaultKeyFile('./data')).toBe(join(process.cwd(), '.secrets', 'webhook-secret.key'));
  });

  it('refuses a WEBHOOK_SECRET_KEY_FILE inside DATA_DIR, however it is written', () => {
    mkdirSync(join(dataDir, 'nested'), { recursive: true });
    symlinkSync(dataDir, join(base, 'alias'));
    for (const file of [
      join(dataDir, 'webhook.key'),
      join(dataDir, 'nested', 'webhook.key'),
      join(base, 'elsewhere', '..', 'data', 'webhook.key'),
      join(base, 'alias', 'webhook.key'),
    ]) {
      expect(() => loadWebhookKey(embedded({ webhookSecretKeyFile: file }), notify), file).toThrow(/inside DATA_DIR/);
      expect(existsSync(file), file).toBe(false);
    }
  });

  it('refuses the default too when DATA_DIR is a root, where beside it is inside it', () => {
    expect(() => loadWebhookKey(embedded({ dataDir: '/' }), notify)).toThrow(/inside DATA_DIR/);
  });

  it('makes an explicit WEBHOOK_SECRET_KEY_FILE outside DATA_DIR on first start', () => {
    const file = join(base, 'keys', 'clients.key');
    const key = loadWebhookKey(embedded({ webhookSecretKeyFile: file }), notify);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(loadWebhookKey(embedded({ webhookSecretKeyFile: file }), notify).equals(key)).toBe(true);
  });

  it('moves the key an earlier version made inside DATA_DIR out of it, once: what it sealed still opens', () => {
    const old = legacyKey();
    const endpoint = randomUUID();
    const sealed = secretBox(Buffer.from(old, 'base64')).seal('whsec_before', endpoint);

    const key = loadWebhookKey(embedded(), notify);
    const file = join(base, '.secrets', 'webhook-secret.key');
    expect(key.toString('base64')).toBe(old);
    expect(secretBox(key).open(sealed, endpoint)).toBe('whsec_before');
    expect(existsSync(join(dataDir, 'webhook-secret.key'))).toBe(false);
    expect(readFileSync(file, 'utf8').trim()).toBe(old);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(notices).toEqual([
      {
        level: 'warn',
        fields: { from: join(dataDir, 'webhook-secret.key'), to: file },
        message: expect.stringMatching(/moved the webhook secret key/),
      },
    ]);
    // Once: the next start finds it in its new place.
    expect(loadWebhookKey(embedded(), notify).toString('base64')).toBe(old);
    expect(notices).toHaveLength(1);
  });

  it('moves it to an explicit WEBHOOK_SECRET_KEY_FILE just the same', () => {
    const old = legacyKey();
    const file = join(base, 'keys', 'clients.key');
    expect(loadWebhookKey(embedded({ webhookSecretKeyFile: file }), notify).toString('base64')).toBe(old);
    expect(existsSync(join(dataDir, 'webhook-secret.key'))).toBe(false);
  });

  it('removes the old copy when the new place holds the same key, and refuses when it holds another', () => {
    const old = legacyKey();
    mkdirSync(join(base, '.secrets'), { mode: 0o700 });
    writeFileSync(join(base, '.secrets', 'webhook-secret.key'), `${old}\n`, { mode: 0o600 });
    expect(loadWebhookKey(embedded(), notify).toString('base64')).toBe(old);
    expect(existsSync(join(dataDir, 'webhook-secret.key'))).toBe(false);

    legacyKey();
    expect(() => loadWebhookKey(embedded(), notify)).toThrow(/Two different webhook secret keys/);
    expect(existsSync(join(dataDir, 'webhook-secret.key'))).toBe(true);
  });

  it('with WEBHOOK_SECRET_KEY set, uses it, and warns of an old key file left in the data directory', () => {
    legacyKey();
    const key = base64Key();
    expect(loadWebhookKey(embedded({ webhookSecretKey: key }), notify).toString('base64')).toBe(key);
    expect(notices.map((n) => n.level)).toEqual(['warn']);
    expect(existsSync(join(base, '.secrets'))).toBe(false);
  });

  it('in memory (memory://), keeps the key in memory too', () => {
    const key = loadWebhookKey(embedded({ dataDir: 'memory://' }), notify);
    expect(key).toHaveLength(32);
    expect(loadWebhookKey(embedded({ dataDir: 'memory://' }), notify).equals(key)).toBe(false);
  });
});
