/**
 * Frames the firewall writes itself: ICMP errors, echo replies, ARP replies, neighbour
 * advertisements and the resolver's DNS packets. All write into a caller-owned buffer.
 */
import { ARP_OP_REPLY, emitArp } from '../wire/arp.ts';
import { checksum, copyBytes, finish, pseudoSum4, pseudoSum6, sumWords, write16 } from '../wire/checksum.ts';
import {
  ETH_HEADER_LEN,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  writeEthernetHeader,
} from '../wire/ethernet.ts';
import {
  emitNeighbor,
  ND_NA_FLAG_OVERRIDE,
  ND_NA_FLAG_ROUTER,
  ND_NA_FLAG_SOLICITED,
} from '../wire/icmpv6.ts';
import { fillIpv4Checksum, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP } from '../wire/ipv4.ts';
import { IP6_HEADER_LEN } from '../wire/ipv6.ts';

/** RFC 1812 §4.3.2.3: an ICMPv4 error carries as much of the datagram as fits in 576 bytes. */
export const ICMP4_MAX_ERROR = 576;
/** RFC 4443 §2.4(c): an ICMPv6 error must not exceed the minimum IPv6 MTU. */
export const ICMP6_MAX_ERROR = 1280;

let ident = 1;

function ipv4Header(
  out: Uint8Array,
  o: number,
  src: Uint8Array,
  srcOff: number,
  dst: Uint8Array,
  dstOff: number,
  proto: number,
  payloadLen: number,
): void {
  out[o] = 0x45;
  out[o + 1] = 0;
  write16(out, o + 2, 20 + payloadLen);
  write16(out, o + 4, ident);
  ident = (ident + 1) & 0xffff;
  write16(out, o + 6, 0x4000);
  out[o + 8] = 64;
  out[o + 9] = proto;
  copyBytes(out, o + 12, src, srcOff, 4);
  copyBytes(out, o + 16, dst, dstOff, 4);
  fillIpv4Checksum(out, o, 20);
}

function ipv6Header(
  out: Uint8Array,
  o: number,
  src: Uint8Array,
  srcOff: number,
  dst: Uint8Array,
  dstOff: number,
  proto: number,
  payloadLen: number,
  hopLimit: number,
): void {
  out[o] = 0x60;
  out[o + 1] = 0;
  out[o + 2] = 0;
  out[o + 3] = 0;
  write16(out, o + 4, payloadLen);
  out[o + 6] = proto;
  out[o + 7] = hopLimit;
  copyBytes(out, o + 8, src, srcOff, 16);
  copyBytes(out, o + 24, dst, dstOff, 16);
}

/**
 * An ICMPv4 error about the IPv4 packet at inBuf[ipOff, ipOff+ipLen), sent from `src` to the
 * packet's source. `rest` fills bytes 4..8 (next-hop MTU for fragmentation needed).
 */
export function buildIcmp4Error(
  out: Uint8Array,
  dstMac: Uint8Array,
  srcMac: Uint8Array,
  src: Uint8Array,
  inBuf: Uint8Array,
  ipOff: number,
  ipLen: number,
  type: number,
  code: number,
  rest: number,
): number {
  const quote = Math.min(ipLen, ICMP4_MAX_ERROR - 20 - 8);
  const ip = ETH_HEADER_LEN;
  const icmp = ip + 20;
  writeEthernetHeader(out, 0, dstMac, srcMac, ETHERTYPE_IPV4);
  ipv4Header(out, ip, src, 0, inBuf, ipOff + 12, IPPROTO_ICMP, 8 + quote);
  out[icmp] = type;
  out[icmp + 1] = code;
  write16(out, icmp + 2, 0);
  write16(out, icmp + 4, rest >>> 16);
  write16(out, icmp + 6, rest & 0xffff);
  copyBytes(out, icmp + 8, inBuf, ipOff, quote);
  write16(out, icmp + 2, checksum(out, icmp, 8 + quote));
  return icmp + 8 + quote;
}

/** An ICMPv6 error about the IPv6 packet at inBuf[ipOff, ipOff+ipLen). */
export function buildIcmp6Error(
  out: Uint8Array,
  dstMac: Uint8Array,
  srcMac: Uint8Array,
  src: Uint8Array,
  inBuf: Uint8Array,
  ipOff: number,
  ipLen: number,
  type: number,
  code: number,
  rest: number,
): number {
  const quote = Math.min(ipLen, ICMP6_MAX_ERROR - IP6_HEADER_LEN - 8);
  const ip = ETH_HEADER_LEN;
  const icmp = ip + IP6_HEADER_LEN;
  writeEthernetHeader(out, 0, dstMac, srcMac, ETHERTYPE_IPV6);
  ipv6Header(out, ip, src, 0, inBuf, ipOff + 8, IPPROTO_ICMPV6, 8 + quote, 64);
  out[icmp] = type;
  out[icmp + 1] = code;
  write16(out, icmp + 2, 0);
  write16(out, icmp + 4, rest >>> 16);
  write16(out, icmp + 6, rest & 0xffff);
  copyBytes(out, icmp + 8, inBuf, ipOff, quote);
  fillL4Checksum6(out, ip, icmp, IPPROTO_ICMPV6, 8 + quote, icmp + 2);
  return icmp + 8 + quote;
}

export function fillL4Checksum4(
  out: Uint8Array,
  ip: number,
  l4: number,
  proto: number,
  len: number,
  at: number,
): void {
  write16(out, at, 0);
  let v = finish(sumWords(out, l4, len, pseudoSum4(out, ip, proto, len)));
  if (v === 0 && proto === IPPROTO_UDP) v = 0xffff;
  write16(out, at, v);
}

export function fillL4Checksum6(
  out: Uint8Array,
  ip: number,
  l4: number,
  proto: number,
  len: number,
  at: number,
): void {
  write16(out, at, 0);
  let v = finish(sumWords(out, l4, len, pseudoSum6(out, ip, proto, len)));
  if (v === 0 && proto === IPPROTO_UDP) v = 0xffff;
  write16(out, at, v);
}

/**
 * An echo reply to the echo request (ICMPv4 or ICMPv6) in inBuf: same id, sequence and
 * data, addresses swapped, `src` as our address.
 */
export function buildEchoReply(
  out: Uint8Array,
  family: 4 | 6,
  dstMac: Uint8Array,
  srcMac: Uint8Array,
  src: Uint8Array,
  srcOff: number,
  inBuf: Uint8Array,
  ipOff: number,
  l4Off: number,
  l4Len: number,
): number {
  const ip = ETH_HEADER_LEN;
  if (family === 4) {
    writeEthernetHeader(out, 0, dstMac, srcMac, ETHERTYPE_IPV4);
    ipv4Header(out, ip, src, srcOff, inBuf, ipOff + 12, IPPROTO_ICMP, l4Len);
    const icmp = ip + 20;
    copyBytes(out, icmp, inBuf, l4Off, l4Len);
    out[icmp] = 0;
    write16(out, icmp + 2, 0);
    write16(out, icmp + 2, checksum(out, icmp, l4Len));
    return icmp + l4Len;
  }
  writeEthernetHeader(out, 0, dstMac, srcMac, ETHERTYPE_IPV6);
  ipv6Header(out, ip, src, srcOff, inBuf, ipOff + 8, IPPROTO_ICMPV6, l4Len, 64);
  const icmp = ip + IP6_HEADER_LEN;
  copyBytes(out, icmp, inBuf, l4Off, l4Len);
  out[icmp] = 129;
  fillL4Checksum6(out, ip, icmp, IPPROTO_ICMPV6, l4Len, icmp + 2);
  return icmp + l4Len;
}

/**
 * An ARP reply saying the address at ip[ipOff..+4] is at `mac`, to the requester of the ARP
 * request at inBuf[arpOff] (written byte by byte: clients may send requests at any rate).
 */
export function buildArpReply(
  out: Uint8Array,
  mac: Uint8Array,
  ip: Uint8Array,
  ipOff: number,
  inBuf: Uint8Array,
  arpOff: number,
): number {
  const a = ETH_HEADER_LEN;
  copyBytes(out, 0, inBuf, arpOff + 8, 6); // to the requester's MAC
  copyBytes(out, 6, mac, 0, 6);
  write16(out, 12, ETHERTYPE_ARP);
  write16(out, a, 1); // Ethernet
  write16(out, a + 2, 0x0800); // IPv4
  out[a + 4] = 6;
  out[a + 5] = 4;
  write16(out, a + 6, ARP_OP_REPLY);
  copyBytes(out, a + 8, mac, 0, 6);
  copyBytes(out, a + 14, ip, ipOff, 4);
  copyBytes(out, a + 18, inBuf, arpOff + 8, 6);
  copyBytes(out, a + 24, inBuf, arpOff + 14, 4);
  return ETH_HEADER_LEN + 28;
}

/** An ARP request for `targetIp` (to learn the uplink gateway's MAC). */
export function buildArpRequest(
  out: Uint8Array,
  mac: Uint8Array,
  ip: Uint8Array,
  targetIp: Uint8Array,
): number {
  const bcast = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
  writeEthernetHeader(out, 0, bcast, mac, ETHERTYPE_ARP);
  emitArp(
    { operation: 1, senderMac: mac, senderIp: ip, targetMac: new Uint8Array(6), targetIp },
    out,
    ETH_HEADER_LEN,
  );
  return ETH_HEADER_LEN + 28;
}

/** A solicited neighbour advertisement for `target` (at `mac`), answering the NS in inBuf. */
export function buildNeighborAdvert(
  out: Uint8Array,
  dstMac: Uint8Array,
  mac: Uint8Array,
  target: Uint8Array,
  inBuf: Uint8Array,
  ipOff: number,
  router: boolean,
): number {
  const ip = ETH_HEADER_LEN;
  const icmp = ip + IP6_HEADER_LEN;
  writeEthernetHeader(out, 0, dstMac, mac, ETHERTYPE_IPV6);
  // RFC 4861 §7.2.4: reply to the soliciting address, or all-nodes when it was unspecified
  let unspecified = true;
  for (let i = 0; i < 16; i++) if (inBuf[ipOff + 8 + i] !== 0) unspecified = false;
  const dst = unspecified ? ALL_NODES : inBuf.subarray(ipOff + 8, ipOff + 24);
  const len = emitNeighbor(
    {
      kind: 'advert',
      target,
      flags:
        (router ? ND_NA_FLAG_ROUTER : 0) | (unspecified ? 0 : ND_NA_FLAG_SOLICITED) | ND_NA_FLAG_OVERRIDE,
      lladdr: mac,
    },
    out,
    icmp,
  );
  ipv6Header(out, ip, target, 0, dst, 0, IPPROTO_ICMPV6, len, 255);
  fillL4Checksum6(out, ip, icmp, IPPROTO_ICMPV6, len, icmp + 2);
  return icmp + len;
}

const ALL_NODES = new Uint8Array([0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);

/** A UDP datagram or TCP segment from our uplink address (the resolver's traffic). */
export function buildTransport(
  out: Uint8Array,
  dstMac: Uint8Array,
  srcMac: Uint8Array,
  src: Uint8Array,
  dst: Uint8Array,
  proto: number,
  srcPort: number,
  dstPort: number,
  tcp: { seq: number; ack: number; flags: number; window: number } | undefined,
  payload: Uint8Array,
): number {
  const v6 = dst.length === 16;
  const ip = ETH_HEADER_LEN;
  const l4 = ip + (v6 ? IP6_HEADER_LEN : 20);
  const hl = proto === IPPROTO_TCP ? 20 : 8;
  const len = hl + payload.length;
  if (l4 + len > out.length) return 0;
  writeEthernetHeader(out, 0, dstMac, srcMac, v6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4);
  if (v6) ipv6Header(out, ip, src, 0, dst, 0, proto, len, 64);
  else ipv4Header(out, ip, src, 0, dst, 0, proto, len);
  write16(out, l4, srcPort);
  write16(out, l4 + 2, dstPort);
  let at: number;
  if (proto === IPPROTO_TCP && tcp) {
    out[l4 + 4] = tcp.seq >>> 24;
    out[l4 + 5] = tcp.seq >>> 16;
    out[l4 + 6] = tcp.seq >>> 8;
    out[l4 + 7] = tcp.seq;
    out[l4 + 8] = tcp.ack >>> 24;
    out[l4 + 9] = tcp.ack >>> 16;
    out[l4 + 10] = tcp.ack >>> 8;
    out[l4 + 11] = tcp.ack;
    out[l4 + 12] = 5 << 4;
    out[l4 + 13] = tcp.flags;
    write16(out, l4 + 14, tcp.window);
    write16(out, l4 + 18, 0);
    at = l4 + 16;
  } else {
    write16(out, l4 + 4, len);
    at = l4 + 6;
  }
  out.set(payload, l4 + hl);
  if (v6) fillL4Checksum6(out, ip, l4, proto, len, at);
  else fillL4Checksum4(out, ip, l4, proto, len, at);
  return l4 + len;
}
