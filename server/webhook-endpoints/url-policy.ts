/**
 * Which URLs a webhook endpoint may have (spec/schemas/WebhookUrl.yaml): an absolute http or https
 * URL, https in the live environment, without a user name or password, whose host has only public
 * addresses. The address rule is checked here, when an endpoint is registered or its URL changed,
 * and again by the worker each time a delivery connects (a name may resolve differently later:
 * DNS rebinding). WEBHOOK_ALLOW_PRIVATE_NETWORKS lifts the address rule, and then nothing is
 * resolved at all.
 */
import { isIP } from 'node:net';
import type { Env } from '../db/schema.js';
import { validationFailed } from '../shared/errors.js';
import { isPublicAddress } from '../webhook-delivery/addresses.js';
import type { WebhookSettings } from '../webhook-delivery/settings.js';

/** The texts a refusal names `url` with; the worker may record the same words for an attempt. */
export const URL_REFUSALS = {
  notHttp: 'must be an absolute http or https URL such as https://example.com/webhooks',
  httpInLive: 'must be https in the live environment',
  credentials: 'must not contain a user name or password',
  notPublic:
    'has a host with a private, loopback, link-local or otherwise non-public address; webhooks go to public addresses only ' +
    '(for a receiver on this machine in development, start the server with WEBHOOK_ALLOW_PRIVATE_NETWORKS=true)',
  unresolved: 'has a host name that does not resolve to any address (within 5 seconds)',
} as const;

/** How long a host name may take to resolve before it counts as not resolving. */
export const RESOLVE_TIMEOUT_MS = 5_000;

export type AddressPolicy = Pick<WebhookSettings, 'allowPrivateNetworks' | 'resolve'>;

/** Why `text` may not be an endpoint's URL in `env`, or undefined when it may. */
export async function webhookUrlRefusal(text: string, env: Env, policy: AddressPolicy): Promise<string | undefined> {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return URL_REFUSALS.notHttp;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return URL_REFUSALS.notHttp;
  if (env === 'live' && url.protocol !== 'https:') return URL_REFUSALS.httpInLive;
  if (url.username !== '' || url.password !== '') return URL_REFUSALS.credentials;
  if (policy.allowPrivateNetworks) return undefined;
  return hostRefusal(url.hostname, policy.resolve);
}

/**
 * Why a delivery may not go to `hostname` (as WHATWG URL gives it: IPv4 literals already in
 * dotted form, IPv6 literals in brackets), or undefined when every one of its addresses is public.
 */
export async function hostRefusal(hostname: string, resolve: AddressPolicy['resolve']): Promise<string | undefined> {
  const host = hostname.replace(/^\[(.*)\]$/, '$1');
  // A literal is judged as it is: resolving it would only hand it back.
  if (isIP(host) !== 0) return isPublicAddress(host) ? undefined : URL_REFUSALS.notPublic;
  const addresses = await resolveWithin(host, resolve, RESOLVE_TIMEOUT_MS);
  if (addresses.length === 0) return URL_REFUSALS.unresolved;
  // Any one non-public address refuses: a client connecting may pick any of them.
  return addresses.every(isPublicAddress) ? undefined : URL_REFUSALS.notPublic;
}

/** The host's addresses; none when it does not resolve, or not in time. */
async function resolveWithin(host: string, resolve: AddressPolicy['resolve'], ms: number): Promise<string[]> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<string[]>((settle) => {
    timer = setTimeout(() => settle([]), ms);
  });
  try {
    return await Promise.race([resolve(host), late]);
  } catch {
    return [];
  } finally {
    clearTimeout(timer);
  }
}

/** Throws 400 validation_failed naming `url` unless `text` may be an endpoint's URL in `env`. */
export async function assertWebhookUrl(text: string, env: Env, policy: AddressPolicy): Promise<void> {
  const refusal = await webhookUrlRefusal(text, env, policy);
  if (refusal) throw validationFailed({ url: refusal });
}
