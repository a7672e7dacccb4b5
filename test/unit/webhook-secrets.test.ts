/**
 * Webhook signing secrets: their form, sealed under a key the database does not hold, bound to
 * their endpoint. Where the key comes from: test/unit/webhook-secret-key.test.ts.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { keyFromBase64, keyFromFile } from '../../server/webhook-delivery/secret-key.js';
import { newSigningSecret, secretBox } from '../../server/webhook-delivery/secrets.js';

const dir = mkdtempSync(join(tmpdir(), 'webhook-secrets-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('makes secrets in the Standard Webhooks form, each new', () => {
  const secret = newSigningSecret();
  expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
  expect(Buffer.from(secret.slice(6), 'base64')).toHaveLength(32);
  expect(newSigningSecret()).not.toBe(secret);
});

it('seals so that the stored text reveals nothing, and opens only with the same key for the same endpoint', () => {
  const box = secretBox(randomBytes(32));
  const [secret, endpoint] = [newSigningSecret(), randomUUID()];
  const sealed = box.seal(secret, endpoint);
  expect(sealed).not.toContain(secret.slice(6, 20));
  expect(box.seal(secret, endpoint)).not.toBe(sealed); // a fresh nonce each time
  expect(box.open(sealed, endpoint)).toBe(secret);
  expect(() => box.open(sealed, randomUUID())).toThrow();
  expect(() => secretBox(randomBytes(32)).open(sealed, endpoint)).toThrow();
  const [v, iv, tag, text] = sealed.split('.');
  expect(() => box.open([v, iv, tag, `${text!.slice(0, -2)}AA`].join('.'), endpoint)).toThrow();
});

it('opens only with the whole 16-byte tag: a truncated one, which GCM would otherwise check as far as it goes, is refused', () => {
  const box = secretBox(randomBytes(32));
  const [secret, endpoint] = [newSigningSecret(), randomUUID()];
  const [v, iv, tag, text] = box.seal(secret, endpoint).split('.');
  const full = Buffer.from(tag!, 'base64url');
  expect(full).toHaveLength(16);
  for (const bytes of [4, 8, 12, 15]) {
    const truncated = [v, iv, full.subarray(0, bytes).toString('base64url'), text].join('.');
    expect(() => box.open(truncated, endpoint), `a ${bytes}-byte tag`).toThrow(/tag/);
  }
  const longer = [v, iv, Buffer.concat([full, Buffer.from([0])]).toString('base64url'), text].join('.');
  expect(() => box.open(longer, endpoint)).toThrow(/tag/);
  expect(box.open([v, iv, tag, text].join('.'), endpoint)).toBe(secret);
});

it('takes WEBHOOK_SECRET_KEY only as 32 bytes of base64', () => {
  expect(keyFromBase64(randomBytes(32).toString('base64'))).toHaveLength(32);
  expect(() => keyFromBase64(randomBytes(16).toString('base64'))).toThrow(/32 random bytes/);
  expect(() => secretBox(randomBytes(31))).toThrow(/32 bytes/);
});

it('keeps the key file readable by its owner only, made once and read back after', () => {
  const path = join(dir, 'nested', 'webhook-secret.key');
  const key = keyFromFile(path);
  expect(key).toHaveLength(32);
  expect(statSync(path).mode & 0o777).toBe(0o600);
  expect(keyFromFile(path).equals(key)).toBe(true);
  expect(Buffer.from(readFileSync(path, 'utf8').trim(), 'base64').equals(key)).toBe(true);
});
