/**
 * Completing a partial (CHECKSUM_PARTIAL, `csumBlank`) TCP/UDP checksum for a peer that
 * cannot take one: a frontend that wrote `feature-no-csum-offload = 1`, or an IPv6 frame
 * for one that did not write `feature-ipv6-csum-offload = 1` (Linux netback clears those
 * offloads on such a vif, so its stack fills checksums in first; drivers/net/xen-netback/
 * interface.c, torvalds/linux @ v6.1). The checksum field of a partial frame holds the
 * pseudo-header sum; the full checksum is the complement of the sum over the L4 segment
 * with that field as it is (RFC 1071).
 */
const ETH_HLEN = 14;
const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;

/** Where the L4 segment and its checksum field are, or undefined for frames we do not complete. */
function l4(
  buf: Uint8Array,
  off: number,
  len: number,
): { start: number; csum: number; ipv6: boolean } | undefined {
  if (len < ETH_HLEN + 20) return undefined;
  const type = (buf[off + 12]! << 8) | buf[off + 13]!;
  const ip = off + ETH_HLEN;
  let proto: number;
  let start: number;
  let ipv6 = false;
  if (type === ETHERTYPE_IPV4) {
    if (buf[ip]! >> 4 !== 4) return undefined;
    const ihl = (buf[ip]! & 0xf) * 4;
    if (ihl < 20 || ETH_HLEN + ihl > len) return undefined;
    if (((buf[ip + 6]! & 0x3f) | buf[ip + 7]!) !== 0) return undefined; // a fragment
    proto = buf[ip + 9]!;
    start = ip + ihl;
  } else if (type === ETHERTYPE_IPV6) {
    if (len < ETH_HLEN + 40 || buf[ip]! >> 4 !== 6) return undefined;
    proto = buf[ip + 6]!; // extension headers are not followed: such frames are not completed
    start = ip + 40;
    ipv6 = true;
  } else return undefined;
  const end = off + len;
  if (proto === IPPROTO_TCP && start + 20 <= end) return { start, csum: start + 16, ipv6 };
  if (proto === IPPROTO_UDP && start + 8 <= end) return { start, csum: start + 6, ipv6 };
  return undefined;
}

/** True when `buf[off, off + len)` is an IPv6 frame (for the ipv6-csum-offload decision). */
export function isIpv6(buf: Uint8Array, off: number, len: number): boolean {
  return len >= ETH_HLEN && ((buf[off + 12]! << 8) | buf[off + 13]!) === ETHERTYPE_IPV6;
}

/**
 * Fills in the checksum of a partial TCP/UDP frame in place. False when the frame is not
 * one we know how to complete (then the caller drops it rather than send a bad checksum).
 */
export function completeChecksum(buf: Uint8Array, off: number, len: number): boolean {
  const at = l4(buf, off, len);
  if (!at) return false;
  const end = off + len;
  let sum = 0;
  let i = at.start;
  for (; i + 1 < end; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if (i < end) sum += buf[i]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  let csum = ~sum & 0xffff;
  if (csum === 0 && at.csum - at.start === 6) csum = 0xffff; // UDP: 0 means no checksum
  buf[at.csum] = csum >> 8;
  buf[at.csum + 1] = csum & 0xff;
  return true;
}
