/** What the webhook operations and the delivery worker share, made once at start-up. */
import { lookup } from 'node:dns/promises';
import { randomBytes } from 'node:crypto';
import { type KeyNotices, type KeySettings, loadWebhookKey } from './secret-key.js';
import { type SecretBox, secretBox } from './secrets.js';

export interface WebhookSettings {
  /** Seals and opens signing secrets (server/webhook-delivery/secrets.ts). */
  secrets: SecretBox;
  /** WEBHOOK_ALLOW_PRIVATE_NETWORKS: deliver to any address (development and tests only). */
  allowPrivateNetworks: boolean;
  /** A host name's addresses, as the system resolves them (tests stage DNS answers here). */
  resolve: (host: string) => Promise<string[]>;
  /**
   * WEBHOOK_TIMEOUT_MS: how long one attempt may take. The worker's attempts and a test sent by the
   * API process (POST /webhook-endpoints/{id}/test) keep the same limit.
   */
  timeoutMs: number;
}

/** WEBHOOK_TIMEOUT_MS's default. */
export const DEFAULT_WEBHOOK_TIMEOUT_MS = 10_000;

/** Every address the system resolver gives for `host`, IPv4 and IPv6. */
export async function systemResolve(host: string): Promise<string[]> {
  return (await lookup(host, { all: true, verbatim: true })).map((entry) => entry.address);
}

/** Settings for a process that keeps no secret across restarts (a key of its own): tests. */
export function ephemeralWebhookSettings(overrides: Partial<WebhookSettings> = {}): WebhookSettings {
  return {
    secrets: secretBox(randomBytes(32)),
    allowPrivateNetworks: false,
    resolve: systemResolve,
    timeoutMs: DEFAULT_WEBHOOK_TIMEOUT_MS,
    ...overrides,
  };
}

/**
 * The settings of a server or worker process: the key as server/webhook-delivery/secret-key.ts finds it
 * (throws, saying what to do, when there is none to be had: the caller exits 1); the system's
 * resolver. `npm start` and `npm run worker` make them the same way, so a secret sealed by one
 * opens in the other.
 */
export function webhookSettingsFromConfig(
  config: KeySettings & { webhookAllowPrivateNetworks: boolean; webhookTimeoutMs: number },
  notices: KeyNotices,
): WebhookSettings {
  return {
    secrets: secretBox(loadWebhookKey(config, notices)),
    allowPrivateNetworks: config.webhookAllowPrivateNetworks,
    resolve: systemResolve,
    timeoutMs: config.webhookTimeoutMs,
  };
}
