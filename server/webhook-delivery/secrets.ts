/**
 * Webhook signing secrets: made here, stored encrypted, read back only to sign a delivery.
 *
 * A secret is `whsec_` and the base64 of 32 random bytes (the Standard Webhooks form, which the
 * `standardwebhooks` package signs with). It is stored as AES-256-GCM ciphertext under a key the
 * database does not hold (WEBHOOK_SECRET_KEY, or a key file outside the data: see
 * server/webhook-delivery/secret-key.ts), with the endpoint's id as associated data, so a ciphertext copied onto
 * another endpoint's row does not decrypt. The database alone reveals no secret; the key alone
 * reveals none either.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

const VERSION = 'v1';
/**
 * GCM's full tag. Fixed when opening: left to the tag given, a decipher would accept a tag cut to
 * 4 bytes, which a forger can guess (NIST SP 800-38D, appendix C).
 */
const TAG_BYTES = 16;

/** A new signing secret, shown once to whoever registered or rotated the endpoint. */
export function newSigningSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

export interface SecretBox {
  /** `endpointId` binds the ciphertext to its row. */
  seal(secret: string, endpointId: string): string;
  /** Throws when the ciphertext was not sealed with this key for this endpoint. */
  open(sealed: string, endpointId: string): string;
}

/** A box for a 32-byte key. */
export function secretBox(key: Buffer): SecretBox {
  if (key.length !== 32) throw new Error('The webhook secret key must be 32 bytes (base64 in WEBHOOK_SECRET_KEY).');
  return {
    seal(secret, endpointId) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
      cipher.setAAD(Buffer.from(endpointId));
      const ciphertext = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()]);
      return [VERSION, iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), ciphertext.toString('base64url')].join('.');
    },
    open(sealed, endpointId) {
      const [version, iv, tag, ciphertext] = sealed.split('.');
      if (version !== VERSION || !iv || !tag || ciphertext === undefined) throw new Error('Not a sealed webhook secret.');
      const authTag = Buffer.from(tag, 'base64url');
      if (authTag.length !== TAG_BYTES) throw new Error('Not a sealed webhook secret: its tag is not 16 bytes.');
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'), { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(endpointId));
      decipher.setAuthTag(authTag);
      return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString('utf8');
    },
  };
}

/** An endpoint's sealed secrets, as its row (or a claimed delivery) carries them. */
export interface SealedSecrets {
  endpointId: string;
  secret: string;
  previousSecret: string | null;
  previousSecretExpiresAt: Date | null;
}

/**
 * The secrets that sign at `at`, opened: the current one, and the previous one until it expires.
 * The worker's attempts and a test delivery sign alike. Throws when a secret does not open (the key changed).
 */
export function signingSecrets(box: SecretBox, sealed: SealedSecrets, at: Date): string[] {
  const secrets = [box.open(sealed.secret, sealed.endpointId)];
  if (sealed.previousSecret && sealed.previousSecretExpiresAt && new Date(sealed.previousSecretExpiresAt) > at) {
    secrets.push(box.open(sealed.previousSecret, sealed.endpointId));
  }
  return secrets;
}
