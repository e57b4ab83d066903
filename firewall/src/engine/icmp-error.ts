/**
 * ICMP errors the firewall originates about the packet being handled: time exceeded,
 * fragmentation needed / packet too big, and the rejects of rules and of traffic to the
 * firewall. Rate-limited like Linux (ICMP_RATE) and never sent about an ICMP error, a later
 * fragment, or a group or unspecified source (RFC 1122 §3.2.2, RFC 4443 §2.4(e)).
 */
import { read32 } from '../wire/checksum.ts';
import {
  ICMP_DEST_UNREACH,
  ICMP_TIME_EXCEEDED,
  ICMP_UNREACH_ADMIN_PROHIBITED,
  ICMP_UNREACH_FRAG_NEEDED,
  icmpKnownNonError,
} from '../wire/icmpv4.ts';
import {
  ICMP6_DEST_UNREACH,
  ICMP6_PACKET_TOO_BIG,
  ICMP6_TIME_EXCEEDED,
  ICMP6_UNREACH_ADMIN_PROHIBITED,
} from '../wire/icmpv6.ts';
import { IPPROTO_ICMP } from '../wire/ipv4.ts';
import { type Iface, isUnspecified, V_DROPPED, type Verdict } from './iface.ts';
import type { Link } from './links.ts';
import { FRAG_LATER, type Packet } from './packet.ts';
import { R_TTL } from './reasons.ts';

/** Sends an ICMP error of the packet's family about p back on `link`, unless it must not. */
export function sendIcmpError(
  iface: Iface,
  p: Packet,
  link: Link,
  type: number,
  code: number,
  rest = 0,
): void {
  if (p.frag === FRAG_LATER || p.isIcmpError) return;
  // Linux __icmp_send: nothing about an ICMP type it does not know either ("assume any
  // unknown ICMP type is an error"); ICMPv6 is_ineligible() stops only at errors (< 128)
  if (p.family === 4 && p.proto === IPPROTO_ICMP && !icmpKnownNonError(p.icmpType)) return;
  const buf = p.buf;
  let limited: boolean;
  let dest: number;
  if (p.family === 4) {
    const srcTop = buf[p.src]!;
    if (srcTop >= 224 || srcTop === 0) return;
    limited = !(type === ICMP_DEST_UNREACH && code === ICMP_UNREACH_FRAG_NEEDED);
    dest = read32(buf, p.src);
  } else {
    if (buf[p.src] === 0xff || isUnspecified(buf, p.src)) return;
    limited = type !== ICMP6_PACKET_TOO_BIG;
    dest = read32(buf, p.src + 4) ^ read32(buf, p.src + 12);
  }
  if (!iface.icmpLimiter.allow(iface.now, dest, limited)) return;
  iface.icmpErrorsSent++;
  iface.emit(link, iface.writer.icmpError(link, p, type, code, rest));
}

/** The hop limit ran out: drop, and say so with time exceeded. */
export function timeExceeded(iface: Iface, p: Packet, link: Link): Verdict {
  iface.drop(p, link, R_TTL);
  sendIcmpError(iface, p, link, p.family === 4 ? ICMP_TIME_EXCEEDED : ICMP6_TIME_EXCEEDED, 0);
  return V_DROPPED;
}

/** Too big for the next link's MTU: fragmentation needed (only with DF set) or packet too big. */
export function sendTooBig(iface: Iface, p: Packet, link: Link, mtu: number): void {
  if (p.family === 4) sendIcmpError(iface, p, link, ICMP_DEST_UNREACH, ICMP_UNREACH_FRAG_NEEDED, mtu);
  else sendIcmpError(iface, p, link, ICMP6_PACKET_TOO_BIG, 0, mtu);
}

/**
 * A drop by the client's rules (`reason`): counted, then answered with admin-prohibited
 * (Linux `reject with icmp(x) admin-prohibited`) unless the engine drops silently.
 */
export function rejectByRule(iface: Iface, p: Packet, link: Link, reason: number): Verdict {
  iface.drop(p, link, reason);
  if (!iface.reject) return V_DROPPED;
  if (p.family === 4) sendIcmpError(iface, p, link, ICMP_DEST_UNREACH, ICMP_UNREACH_ADMIN_PROHIBITED);
  else sendIcmpError(iface, p, link, ICMP6_DEST_UNREACH, ICMP6_UNREACH_ADMIN_PROHIBITED);
  return V_DROPPED;
}
