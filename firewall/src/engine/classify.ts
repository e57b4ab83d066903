/**
 * The first stage of the packet path: a frame from a link is checked (Ethernet, IP header,
 * anti-spoofing in both directions, QSB-056 on the uplink) and sent on to the stage that
 * handles it: ARP and neighbour discovery, traffic to the firewall, forwarding.
 */
import { read16, read32 } from '../wire/checksum.ts';
import {
  ETH_DST,
  ETH_HEADER_LEN,
  ETH_TYPE,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  macEquals,
} from '../wire/ethernet.ts';
import { ND_NEIGHBOR_SOLICIT, ND_REDIRECT, ND_ROUTER_ADVERT, ND_ROUTER_SOLICIT } from '../wire/icmpv6.ts';
import { IP4_DST, IP4_SRC, IP4_TTL } from '../wire/ipv4.ts';
import { IP6_DST, IP6_SRC } from '../wire/ipv6.ts';
import type { FrameMeta } from './config.ts';
import { forwardFromClient, forwardFromUplink } from './forward.ts';
import { timeExceeded } from './icmp-error.ts';
import { bytesEqual, type Iface, isLinkLocalOrUnspecified, type Verdict } from './iface.ts';
import type { ClientLink } from './links.ts';
import { toFirewall4, toFirewall6 } from './local.ts';
import { clientArp, neighborDiscovery, uplinkArp } from './neighbor.ts';
import type { Packet } from './packet.ts';
import {
  R_BAD_CHECKSUM,
  R_IPV6_DISABLED,
  R_MALFORMED,
  R_ND_IGNORED,
  R_NOT_FOR_US,
  R_SPOOFED,
  R_SPOOFED_UPLINK,
  R_UNSUPPORTED_ETHERTYPE,
} from './reasons.ts';

/**
 * Starts the packet on a frame from `link`: its Ethernet header must be whole and, the link
 * being point-to-point, addressed to our MAC there (`ownMac`, passed apart so that this hot
 * site reads no field of either class of link) or to a group. The EtherType, or the
 * complement (~) of the reason to drop the frame: the caller drops, so that this stays
 * small enough to be inlined into both callers. Read directly rather than through a view
 * object: an A/B of the established path measured the view at several per cent of the whole.
 */
function etherTypeOf(p: Packet, ownMac: Uint8Array, buf: Uint8Array, off: number, len: number): number {
  p.start(buf, off);
  if (len < ETH_HEADER_LEN || off + len > buf.length) return ~R_MALFORMED;
  if ((buf[off + ETH_DST]! & 1) === 0 && !macEquals(buf, off + ETH_DST, ownMac)) return ~R_NOT_FOR_US;
  return read16(buf, off + ETH_TYPE);
}

/**
 * A frame from client c. The usual IPv4 packet (valid, from the client's address, routed
 * onward with TTL to spare and an intact transport checksum) goes straight to forwarding;
 * everything else is sorted out in clientIp4Unusual.
 *
 * Both families are handled here, not in functions of their own (and fromUplink likewise):
 * V8 never inlines a function of more than 460 bytes of bytecode, so this one is always
 * compiled on its own, with the IPv4 checks inlined into it, in every run. Mid-sized
 * stages (clientIp4, uplinkIp4) were inlined or not depending on which function V8 happened
 * to optimize first (a function already optimized with its callees inlined counts as their
 * sum), and the established bench varied by up to 25 % from one process to the next.
 */
export function fromClient(
  iface: Iface,
  c: ClientLink,
  buf: Uint8Array,
  off: number,
  len: number,
  meta: FrameMeta,
): Verdict {
  const p = iface.packet;
  const type = etherTypeOf(p, c.ownMac, buf, off, len);
  if (type < 0) return iface.drop(p, c, ~type);
  const l3 = off + ETH_HEADER_LEN;
  const l3len = len - ETH_HEADER_LEN;
  if (type === ETHERTYPE_IPV4) {
    const v = p.ip4;
    let reason = R_MALFORMED;
    if (v.check(buf, l3, l3len) === undefined) {
      if (!v.headerChecksumOk()) reason = R_BAD_CHECKSUM;
      else if (read32(buf, l3 + IP4_SRC) !== c.ip4) reason = R_SPOOFED;
      else if (p.parse4()) {
        const dst = read32(buf, l3 + IP4_DST);
        if (
          dst !== c.gateway4 &&
          dst !== iface.gw4 &&
          dst !== iface.uplink.ip4 &&
          routable4(dst) &&
          buf[l3 + IP4_TTL]! > 1 &&
          p.checksumOk(meta)
        )
          return forwardFromClient(iface, p, c, meta);
        return clientIp4Unusual(iface, p, c, dst, meta);
      }
    }
    return iface.drop(p, c, reason);
  }
  if (type === ETHERTYPE_IPV6) {
    const up6 = iface.uplink.ip6;
    if (!up6 || !c.ip6) return iface.drop(p, c, R_IPV6_DISABLED);
    if (p.ip6.check(buf, l3, l3len)) return iface.drop(p, c, R_MALFORMED);
    if (!p.parse6()) return iface.drop(p, c, R_MALFORMED);
    const icmp = p.proto === p.icmpProto;
    const dst = l3 + IP6_DST;
    const src = l3 + IP6_SRC;
    const dstIsUs =
      bytesEqual(buf, dst, iface.gwLinkLocal, 16) ||
      (iface.gw6 !== undefined && bytesEqual(buf, dst, iface.gw6, 16)) ||
      bytesEqual(buf, dst, up6, 16);
    const multicast = buf[dst] === 0xff;
    // neighbour discovery may come from link-local or unspecified sources; nothing else may
    if (icmp && (multicast || dstIsUs) && p.icmpType >= ND_ROUTER_SOLICIT && p.icmpType <= ND_REDIRECT) {
      if (!bytesEqual(buf, src, c.ip6, 16) && !isLinkLocalOrUnspecified(buf, src))
        return iface.drop(p, c, R_SPOOFED);
      if (p.icmpType === ND_NEIGHBOR_SOLICIT)
        return neighborDiscovery(iface, p, c, [iface.gw6, iface.gwLinkLocal], true);
      return iface.drop(p, c, R_ND_IGNORED);
    }
    if (!bytesEqual(buf, src, c.ip6, 16)) return iface.drop(p, c, R_SPOOFED);
    if (multicast) return iface.drop(p, c, R_NOT_FOR_US);
    if (dstIsUs) return toFirewall6(iface, p, c, meta);
    if (isLinkLocalOrUnspecified(buf, dst)) return iface.drop(p, c, R_NOT_FOR_US);
    if (p.hopLimit <= 1) return timeExceeded(iface, p, c);
    if (!p.checksumOk(meta)) return iface.drop(p, c, R_BAD_CHECKSUM);
    return forwardFromClient(iface, p, c, meta);
  }
  if (type === ETHERTYPE_ARP) return clientArp(iface, p, c, l3, l3len);
  return iface.drop(p, c, R_UNSUPPORTED_ETHERTYPE);
}

/** The rest of fromClient's IPv4 case, in its order: to the firewall, not routed, TTL spent, bad checksum. */
function clientIp4Unusual(iface: Iface, p: Packet, c: ClientLink, dst: number, meta: FrameMeta): Verdict {
  if (dst === c.gateway4 || dst === iface.gw4 || dst === iface.uplink.ip4) return toFirewall4(iface, p, c);
  if (!routable4(dst)) return iface.drop(p, c, R_NOT_FOR_US);
  if (p.buf[p.ip + IP4_TTL]! <= 1) return timeExceeded(iface, p, c);
  if (!p.checksumOk(meta)) return iface.drop(p, c, R_BAD_CHECKSUM);
  return forwardFromClient(iface, p, c, meta);
}

/** Multicast, limited broadcast, 0/8 and loopback are never routed. */
function routable4(dst: number): boolean {
  const top = dst >>> 24;
  return top < 224 && top !== 0 && top !== 127;
}

/** A frame from the uplink (one function for both families, as fromClient is). */
export function fromUplink(
  iface: Iface,
  buf: Uint8Array,
  off: number,
  len: number,
  meta: FrameMeta,
): Verdict {
  const up = iface.uplink;
  const p = iface.packet;
  const type = etherTypeOf(p, up.ownMac, buf, off, len);
  if (type < 0) return iface.drop(p, up, ~type);
  const l3 = off + ETH_HEADER_LEN;
  const l3len = len - ETH_HEADER_LEN;
  if (type === ETHERTYPE_IPV4) {
    const v = p.ip4;
    if (v.check(buf, l3, l3len)) return iface.drop(p, up, R_MALFORMED);
    if (!v.headerChecksumOk()) return iface.drop(p, up, R_BAD_CHECKSUM);
    // QSB-056: nothing from upstream may claim a client's or our own address
    if (iface.internal4.has(read32(buf, l3 + IP4_SRC) | 0)) return iface.drop(p, up, R_SPOOFED_UPLINK);
    if (read32(buf, l3 + IP4_DST) !== up.ip4) return iface.drop(p, up, R_NOT_FOR_US);
    if (!p.parse4()) return iface.drop(p, up, R_MALFORMED);
    return forwardFromUplink(iface, p, meta);
  }
  if (type === ETHERTYPE_IPV6) {
    const up6 = up.ip6;
    if (!up6) return iface.drop(p, up, R_IPV6_DISABLED);
    if (p.ip6.check(buf, l3, l3len)) return iface.drop(p, up, R_MALFORMED);
    if (!p.parse6()) return iface.drop(p, up, R_MALFORMED);
    const src = l3 + IP6_SRC;
    if (
      bytesEqual(buf, src, up6, 16) ||
      iface.isClient6(buf, src) ||
      (iface.gw6 && bytesEqual(buf, src, iface.gw6, 16))
    )
      return iface.drop(p, up, R_SPOOFED_UPLINK);
    if (p.proto === p.icmpProto && p.icmpType >= ND_ROUTER_SOLICIT && p.icmpType <= ND_REDIRECT) {
      if (p.icmpType === ND_ROUTER_ADVERT || p.icmpType === ND_REDIRECT)
        return iface.drop(p, up, R_ND_IGNORED);
      return neighborDiscovery(iface, p, up, [up6], false);
    }
    if (!bytesEqual(buf, l3 + IP6_DST, up6, 16)) return iface.drop(p, up, R_NOT_FOR_US);
    return forwardFromUplink(iface, p, meta);
  }
  if (type === ETHERTYPE_ARP) return uplinkArp(iface, p, l3, l3len);
  return iface.drop(p, up, R_UNSUPPORTED_ETHERTYPE);
}
