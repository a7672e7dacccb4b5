/**
 * Which addresses a webhook may go to (server/webhook-delivery/addresses.ts): public unicast IPv4, and of
 * IPv6 only global unicast (2000::/3) outside its special ranges; an IPv6 address carrying an IPv4
 * address by a standard translation is judged by that address.
 */
import { describe, expect, it } from 'vitest';
import { isPublicAddress } from '../../server/webhook-delivery/addresses.js';

const PUBLIC: [string, string][] = [
  ['93.184.216.34', 'public IPv4'],
  ['8.8.8.8', 'public IPv4'],
  ['2606:2800:220:1:248:1893:25c8:1946', 'global unicast'],
  ['2a00:1450:4001:80e::200e', 'global unicast'],
  ['::ffff:93.184.216.34', 'IPv4-mapped, of a public IPv4 address'],
  ['::ffff:0:5db8:d822', 'IPv4-translated (RFC 6145), of 93.184.216.34'],
  ['64:ff9b::5db8:d822', 'NAT64 well-known prefix, of 93.184.216.34'],
  ['2002:5db8:d822::1', '6to4, of 93.184.216.34'],
];

const REFUSED: [string, string][] = [
  // IPv4
  ['127.0.0.1', 'loopback'],
  ['10.0.0.1', 'private'],
  ['172.16.5.4', 'private'],
  ['192.168.1.1', 'private'],
  ['169.254.169.254', 'link-local (cloud metadata)'],
  ['100.64.0.1', 'carrier-grade NAT'],
  ['0.0.0.0', 'unspecified'],
  ['255.255.255.255', 'broadcast'],
  ['224.0.0.1', 'multicast'],
  ['192.0.2.1', 'documentation'],
  ['198.18.0.1', 'benchmarking'],
  ['240.0.0.1', 'reserved'],
  // IPv4-compatible IPv6 (::/96, deprecated): outside 2000::/3 whatever it embeds
  ['::7f00:1', 'IPv4-compatible, of 127.0.0.1'],
  ['::a9fe:a9fe', 'IPv4-compatible, of 169.254.169.254'],
  ['::a00:1', 'IPv4-compatible, of 10.0.0.1'],
  ['::5db8:d822', 'IPv4-compatible, even of a public IPv4 address'],
  // IPv6 outside 2000::/3
  ['::', 'unspecified'],
  ['::1', 'loopback'],
  ['fe80::1', 'link-local'],
  ['fe80::1%eth0', 'link-local with a zone'],
  ['fec0::1', 'site-local (deprecated)'],
  ['fc00::1', 'unique-local'],
  ['fd12:3456:789a::1', 'unique-local'],
  ['ff02::1', 'multicast'],
  ['100::1', 'discard'],
  ['64:ff9b:1::5db8:d822', 'NAT64 local-use prefix'],
  ['4000::1', 'unassigned, outside 2000::/3'],
  ['5f00::1', 'segment routing'],
  // The embedded forms, of a private IPv4 address
  ['::ffff:127.0.0.1', 'IPv4-mapped, of loopback'],
  ['::ffff:169.254.169.254', 'IPv4-mapped, of link-local'],
  ['::ffff:0:a00:1', 'IPv4-translated, of 10.0.0.1'],
  ['64:ff9b::a00:1', 'NAT64, of 10.0.0.1'],
  ['64:ff9b::7f00:1', 'NAT64, of 127.0.0.1'],
  ['2002:a00:1::1', '6to4, of 10.0.0.1'],
  ['2002:7f00:1::1', '6to4, of 127.0.0.1'],
  // The special ranges inside 2000::/3
  ['2001::1', 'Teredo'],
  ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'Teredo'],
  ['2001:db8::1', 'documentation'],
  ['3fff::1', 'documentation (RFC 9637)'],
  ['2001:2::1', 'benchmarking'],
  ['2001:3::1', 'AMT'],
  ['2001:4:112::1', 'AS112'],
  ['2620:4f:8000::1', 'AS112'],
  ['2001:10::1', 'ORCHID (deprecated)'],
  ['2001:20::1', 'ORCHIDv2'],
  ['2001:30::1', 'drone remote ID'],
  ['2001:100::1', 'IETF protocol assignments (2001::/23)'],
  // Not an address at all
  ['', 'empty'],
  ['example.com', 'a name'],
  ['1.2.3', 'a shorthand, not a standard form'],
  ['0x7f.1', 'a shorthand, not a standard form'],
];

describe('isPublicAddress', () => {
  it.each(PUBLIC)('%s (%s) is public', (address) => {
    expect(isPublicAddress(address)).toBe(true);
  });
  it.each(REFUSED)('%s (%s) is not', (address) => {
    expect(isPublicAddress(address)).toBe(false);
  });
});
