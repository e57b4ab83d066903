/**
 * Traffic to the firewall itself from a client, as qubes-ipv4.nft / qubes-ipv6.nft's input
 * chains treat it: pings (and IPv4 timestamp requests) are answered, DHCP (UDP 68) is dropped silently, other ICMPv6 is
 * accepted with no listener, everything else is rejected (host-prohibited for IPv4,
 * admin-prohibited for IPv6).
 */
import { checksum } from '../wire/checksum.ts';
import {
  ICMP_DEST_UNREACH,
  ICMP_ECHO_REQUEST,
  ICMP_TIMESTAMP,
  ICMP_TS_RECEIVE,
  ICMP_UNREACH_HOST_PROHIBITED,
} from '../wire/icmpv4.ts';
import { ICMP6_DEST_UNREACH, ICMP6_ECHO_REQUEST, ICMP6_UNREACH_ADMIN_PROHIBITED } from '../wire/icmpv6.ts';
import { IPPROTO_ICMP, IPPROTO_UDP } from '../wire/ipv4.ts';
import type { FrameMeta } from './config.ts';
import { sendIcmpError } from './icmp-error.ts';
import { type Iface, V_DROPPED, V_LOCAL, type Verdict } from './iface.ts';
import type { ClientLink } from './links.ts';
import { FRAG_NONE, type Packet } from './packet.ts';
import { R_TO_FIREWALL } from './reasons.ts';

const MS_PER_DAY = 86_400_000;

/** DHCP client port: `iifgroup 2 udp dport 68 drop` (no reject). */
const DHCP_CLIENT_PORT = 68;

/** An IPv4 packet from client c to one of our addresses. */
export function toFirewall4(iface: Iface, p: Packet, c: ClientLink): Verdict {
  if (p.proto === IPPROTO_ICMP) {
    // qubes-ipv4.nft input: `iifgroup 2 icmp accept`
    const intact = p.frag === FRAG_NONE && checksum(p.buf, p.l4, p.l4Len) === 0;
    if (p.icmpType === ICMP_ECHO_REQUEST && intact) {
      iface.emit(c, iface.writer.echoReply(c, p));
      return V_LOCAL;
    }
    // the kernel answers timestamp requests too (net/ipv4/icmp.c icmp_timestamp: at least
    // the originate timestamp after the header), with ms since midnight UT
    if (p.icmpType === ICMP_TIMESTAMP && intact && p.l4Len >= ICMP_TS_RECEIVE) {
      const ms = Math.floor(iface.wallClockMs()) % MS_PER_DAY;
      iface.emit(c, iface.writer.timestampReply(c, p, (ms + MS_PER_DAY) % MS_PER_DAY));
      return V_LOCAL;
    }
    return iface.drop(p, c, R_TO_FIREWALL);
  }
  iface.drop(p, c, R_TO_FIREWALL);
  if (!(p.proto === IPPROTO_UDP && p.dport === DHCP_CLIENT_PORT))
    sendIcmpError(iface, p, c, ICMP_DEST_UNREACH, ICMP_UNREACH_HOST_PROHIBITED);
  return V_DROPPED;
}

/** An IPv6 packet (not neighbour discovery) from client c to one of our addresses. */
export function toFirewall6(iface: Iface, p: Packet, c: ClientLink, meta: FrameMeta): Verdict {
  if (p.proto === p.icmpProto) {
    if (p.icmpType === ICMP6_ECHO_REQUEST && p.frag === FRAG_NONE && p.checksumOk(meta)) {
      iface.emit(c, iface.writer.echoReply(c, p));
      return V_LOCAL;
    }
    // qubes-ipv6.nft `_icmpv6`: other ICMPv6 is accepted (and has no listener here)
    return iface.drop(p, c, R_TO_FIREWALL);
  }
  iface.drop(p, c, R_TO_FIREWALL);
  sendIcmpError(iface, p, c, ICMP6_DEST_UNREACH, ICMP6_UNREACH_ADMIN_PROHIBITED);
  return V_DROPPED;
}
