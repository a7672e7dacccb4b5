/**
 * Which network addresses a webhook may be delivered to: public unicast ones only. Private,
 * loopback, link-local, unique-local, carrier-grade NAT, multicast, reserved and unspecified
 * addresses are refused, and so is an IPv6 address that embeds one of them (IPv4-mapped, 6to4,
 * Teredo, NAT64). Used when an endpoint is registered and again when a delivery connects (against
 * DNS rebinding), unless WEBHOOK_ALLOW_PRIVATE_NETWORKS lifts the check.
 */
import ipaddr from 'ipaddr.js';

/** True when `address` (an IPv4 or IPv6 literal) is a public unicast address. */
export function isPublicAddress(address: string): boolean {
  if (!ipaddr.isValid(address)) return false;
  let parsed = ipaddr.parse(address);
  if (parsed.kind() === 'ipv6') {
    const v6 = parsed as ipaddr.IPv6;
    if (v6.isIPv4MappedAddress()) parsed = v6.toIPv4Address();
    else {
      const range = v6.range();
      // Ranges that carry an IPv4 address inside: judge that one.
      if (range === '6to4') return isPublicAddress(ipaddr.fromByteArray(v6.toByteArray().slice(2, 6)).toString());
      if (range === 'teredo') return false;
      if (range === 'rfc6052' || range === 'rfc6145')
        return isPublicAddress(ipaddr.fromByteArray(v6.toByteArray().slice(12, 16)).toString());
      return range === 'unicast';
    }
  }
  return parsed.range() === 'unicast';
}
