/**
 * Which network addresses a webhook may be delivered to: public unicast ones only. IPv4: none of
 * the private, loopback, link-local, carrier-grade NAT, multicast, broadcast, reserved and
 * unspecified ranges. IPv6: only global unicast (2000::/3), outside the special ranges inside it
 * (documentation, Teredo, ORCHID, benchmarking...); everything else (IPv4-compatible ::/96,
 * discard, unique-local, link-local, multicast...) is refused. An IPv6 address that carries an
 * IPv4 address by a standard translation (IPv4-mapped, IPv4-translated, NAT64's well-known
 * 64:ff9b::/96, 6to4) is judged by that IPv4 address. Used when an endpoint is registered and
 * again when a delivery connects (against DNS rebinding), unless WEBHOOK_ALLOW_PRIVATE_NETWORKS
 * lifts the check.
 */
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

const GLOBAL_UNICAST = ipaddr.parseCIDR('2000::/3');
const NAT64_WELL_KNOWN = ipaddr.parseCIDR('64:ff9b::/96');

/** The IPv4 address in `bytes` (four of them), judged as such. */
const publicIPv4 = (bytes: number[]) => ipaddr.fromByteArray(bytes).range() === 'unicast';

/**
 * True when `address` (an IPv4 or IPv6 literal, in a standard form: dotted quad or RFC 4291) is a
 * public unicast address. Old shorthands such as `127.1` are no address here; WHATWG URL has
 * already turned them into dotted quads.
 */
export function isPublicAddress(address: string): boolean {
  if (isIP(address) === 0) return false;
  const parsed = ipaddr.parse(address);
  if (parsed.kind() === 'ipv4') return parsed.range() === 'unicast';
  const v6 = parsed as ipaddr.IPv6;
  const range = v6.range();
  const bytes = v6.toByteArray();
  switch (range) {
    case 'ipv4Mapped':
    case 'rfc6145':
      return publicIPv4(bytes.slice(12, 16));
    case 'rfc6052':
      // Only the well-known prefix, which ends where the IPv4 address starts; the local-use
      // 64:ff9b:1::/48 is an operator's own translator, never a public receiver's address.
      return v6.match(NAT64_WELL_KNOWN) && publicIPv4(bytes.slice(12, 16));
    case '6to4':
      return publicIPv4(bytes.slice(2, 6));
    default:
      // ipaddr.js calls `unicast` whatever is in none of its special ranges, ::7f00:1 (an
      // IPv4-compatible address, deprecated and routed nowhere public) included: hence 2000::/3.
      return range === 'unicast' && v6.match(GLOBAL_UNICAST);
  }
}
