/**
 * Frames the firewall writes itself: ICMP errors, echo replies, ARP replies and requests,
 * neighbour advertisements and the resolver's DNS packets, built with wire's emitters into
 * one buffer per engine. The IPv4 identification counter is the engine's too, so engines
 * with the same seed and input write the same bytes whatever other engines do.
 */
import type { DnsPacketOut } from '../dns/types.ts';
import { ARP_OP_REPLY, ARP_OP_REQUEST, ARP_SHA, ARP_SPA, type ArpRepr, emitArp } from '../wire/arp.ts';
import { checksum, finish, pseudoSum4, pseudoSum6, sumWords, write16, write32 } from '../wire/checksum.ts';
import {
  BROADCAST_MAC,
  ETH_HEADER_LEN,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  writeEthernetHeader,
} from '../wire/ethernet.ts';
import {
  emitIcmp,
  ICMP_CHECKSUM,
  ICMP_CODE,
  ICMP_ECHO_REPLY,
  ICMP_HEADER_LEN,
  ICMP_TIMESTAMP_REPLY,
  ICMP_TS_LEN,
  ICMP_TS_RECEIVE,
  ICMP_TS_TRANSMIT,
  ICMP_TYPE,
  type IcmpRepr,
} from '../wire/icmpv4.ts';
import {
  emitNeighbor,
  ICMP6_CHECKSUM,
  ICMP6_ECHO_REPLY,
  ND_NA_FLAG_OVERRIDE,
  ND_NA_FLAG_ROUTER,
  ND_NA_FLAG_SOLICITED,
  type NeighborRepr,
} from '../wire/icmpv6.ts';
import {
  emitIpv4,
  IP4_MIN_HEADER,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_TCP,
  IPPROTO_UDP,
  type Ipv4Repr,
} from '../wire/ipv4.ts';
import { emitIpv6, IP6_HEADER_LEN, IP6_SRC, type Ipv6Repr } from '../wire/ipv6.ts';
import { emitTcp, TCP_CHECKSUM, type TcpRepr } from '../wire/tcp.ts';
import { emitUdp, UDP_CHECKSUM, type UdpRepr } from '../wire/udp.ts';
import type { Link } from './links.ts';
import type { Packet } from './packet.ts';

/** RFC 1812 §4.3.2.3: an ICMPv4 error carries as much of the datagram as fits in 576 bytes. */
export const ICMP4_MAX_ERROR = 576;
/** RFC 4443 §2.4(c): an ICMPv6 error must not exceed the minimum IPv6 MTU. */
export const ICMP6_MAX_ERROR = 1280;

const ALL_NODES = new Uint8Array([0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
const NO_BYTES = new Uint8Array(0);
const DEFAULT_HOP_LIMIT = 64;
/** RFC 4861 §7.1.2: neighbour discovery messages carry hop limit 255. */
const ND_HOP_LIMIT = 255;

export class FrameWriter {
  out: Uint8Array;
  private ident = 1;
  private readonly ip4: Ipv4Repr = {
    src: NO_BYTES,
    dst: NO_BYTES,
    protocol: 0,
    ttl: DEFAULT_HOP_LIMIT,
    tos: 0,
    ident: 0,
    dontFragment: true,
    moreFragments: false,
    fragmentOffset: 0,
    options: NO_BYTES,
    payloadLen: 0,
  };
  private readonly ip6: Ipv6Repr = {
    src: NO_BYTES,
    dst: NO_BYTES,
    nextHeader: 0,
    hopLimit: DEFAULT_HOP_LIMIT,
    trafficClass: 0,
    flowLabel: 0,
    payloadLen: 0,
  };
  private readonly icmp: IcmpRepr = { type: 0, code: 0, rest: 0, payload: NO_BYTES };

  constructor(size: number) {
    this.out = new Uint8Array(size);
  }

  /** Makes sure a frame of `size` bytes fits. */
  reserve(size: number): void {
    if (this.out.length < size) this.out = new Uint8Array(size);
  }

  /** An IPv4 header at ETH_HEADER_LEN from `src` to `dst` with the next identification. */
  private ipv4(src: Uint8Array, dst: Uint8Array, protocol: number, payloadLen: number): number {
    const r = this.ip4;
    r.src = src;
    r.dst = dst;
    r.protocol = protocol;
    r.payloadLen = payloadLen;
    r.ident = this.ident;
    this.ident = (this.ident + 1) & 0xffff;
    return ETH_HEADER_LEN + emitIpv4(r, this.out, ETH_HEADER_LEN);
  }

  private ipv6(
    src: Uint8Array,
    dst: Uint8Array,
    nextHeader: number,
    payloadLen: number,
    hopLimit: number,
  ): number {
    const r = this.ip6;
    r.src = src;
    r.dst = dst;
    r.nextHeader = nextHeader;
    r.payloadLen = payloadLen;
    r.hopLimit = hopLimit;
    return ETH_HEADER_LEN + emitIpv6(r, this.out, ETH_HEADER_LEN);
  }

  /**
   * An ICMP error (ICMPv4 or ICMPv6 as the packet is) about packet p, sent on `link` from
   * our address there to the packet's source. `rest` fills bytes 4..8 (the next-hop MTU).
   */
  icmpError(link: Link, p: Packet, type: number, code: number, rest: number): number {
    const out = this.out;
    const v4 = p.family === 4;
    const max = v4 ? ICMP4_MAX_ERROR - IP4_MIN_HEADER : ICMP6_MAX_ERROR - IP6_HEADER_LEN;
    const quote = Math.min(p.ipLen, max - ICMP_HEADER_LEN);
    const r = this.icmp;
    r.type = type;
    r.code = code;
    r.rest = rest;
    r.payload = p.buf.subarray(p.ip, p.ip + quote);
    const len = ICMP_HEADER_LEN + quote;
    const to = p.buf.subarray(p.src, p.src + (v4 ? 4 : 16));
    writeEthernetHeader(out, 0, link.peerMac, link.ownMac, v4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6);
    if (v4) {
      const at = this.ipv4(link.own4, to, IPPROTO_ICMP, len);
      emitIcmp(r, out, at);
      write16(out, at + ICMP_CHECKSUM, checksum(out, at, len));
      return at + len;
    }
    const at = this.ipv6(link.own6!, to, IPPROTO_ICMPV6, len, DEFAULT_HOP_LIMIT);
    emitIcmp(r, out, at);
    fillL4Checksum6(out, ETH_HEADER_LEN, at, IPPROTO_ICMPV6, len, at + ICMP6_CHECKSUM);
    return at + len;
  }

  /**
   * An echo reply to the echo request p (ICMPv4 or ICMPv6) from `link`'s client: same id,
   * sequence and data, from the address it pinged.
   */
  echoReply(link: Link, p: Packet): number {
    const buf = p.buf;
    const v4 = p.family === 4;
    // a ping may be bigger than the buffer sized for the uplink MTU
    this.reserve(ETH_HEADER_LEN + (v4 ? IP4_MIN_HEADER : IP6_HEADER_LEN) + p.l4Len);
    const out = this.out;
    const from = buf.subarray(p.dst, p.dst + (v4 ? 4 : 16));
    const to = buf.subarray(p.src, p.src + (v4 ? 4 : 16));
    writeEthernetHeader(out, 0, link.peerMac, link.ownMac, v4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6);
    const at = v4
      ? this.ipv4(from, to, IPPROTO_ICMP, p.l4Len)
      : this.ipv6(from, to, IPPROTO_ICMPV6, p.l4Len, DEFAULT_HOP_LIMIT);
    out.set(buf.subarray(p.l4, p.l4 + p.l4Len), at);
    if (v4) {
      out[at + ICMP_TYPE] = ICMP_ECHO_REPLY;
      write16(out, at + ICMP_CHECKSUM, 0);
      write16(out, at + ICMP_CHECKSUM, checksum(out, at, p.l4Len));
    } else {
      out[at + ICMP_TYPE] = ICMP6_ECHO_REPLY;
      fillL4Checksum6(out, ETH_HEADER_LEN, at, IPPROTO_ICMPV6, p.l4Len, at + ICMP6_CHECKSUM);
    }
    return at + p.l4Len;
  }

  /**
   * A timestamp reply to the timestamp request p from `link`'s client, as Linux's
   * icmp_timestamp() writes it (net/ipv4/icmp.c): the request's header with type 14 and
   * code 0, its originate timestamp, then receive = transmit = `msSinceMidnight` (UT);
   * 20 bytes whatever the request's length.
   */
  timestampReply(link: Link, p: Packet, msSinceMidnight: number): number {
    const buf = p.buf;
    const out = this.out;
    const from = buf.subarray(p.dst, p.dst + 4);
    const to = buf.subarray(p.src, p.src + 4);
    writeEthernetHeader(out, 0, link.peerMac, link.ownMac, ETHERTYPE_IPV4);
    const at = this.ipv4(from, to, IPPROTO_ICMP, ICMP_TS_LEN);
    out.set(buf.subarray(p.l4, p.l4 + ICMP_TS_RECEIVE), at);
    out[at + ICMP_TYPE] = ICMP_TIMESTAMP_REPLY;
    out[at + ICMP_CODE] = 0;
    write32(out, at + ICMP_TS_RECEIVE, msSinceMidnight);
    write32(out, at + ICMP_TS_TRANSMIT, msSinceMidnight);
    write16(out, at + ICMP_CHECKSUM, 0);
    write16(out, at + ICMP_CHECKSUM, checksum(out, at, ICMP_TS_LEN));
    return at + ICMP_TS_LEN;
  }

  /**
   * An ARP reply to the request at buf[arp]: `address` (4 bytes) is at `mac`. Slow path,
   * but clients may send requests at any rate: the reply is built from views of the request.
   */
  arpReply(mac: Uint8Array, address: Uint8Array, buf: Uint8Array, arp: number): number {
    const requester = buf.subarray(arp + ARP_SHA, arp + ARP_SHA + 6);
    writeEthernetHeader(this.out, 0, requester, mac, ETHERTYPE_ARP);
    const repr: ArpRepr = {
      operation: ARP_OP_REPLY,
      senderMac: mac,
      senderIp: address,
      targetMac: requester,
      targetIp: buf.subarray(arp + ARP_SPA, arp + ARP_SPA + 4),
    };
    return ETH_HEADER_LEN + emitArp(repr, this.out, ETH_HEADER_LEN);
  }

  /** An ARP request for `target`, broadcast from `link` (to learn the netvm's MAC). */
  arpRequest(link: Link, target: Uint8Array): number {
    writeEthernetHeader(this.out, 0, BROADCAST_MAC, link.ownMac, ETHERTYPE_ARP);
    const repr: ArpRepr = {
      operation: ARP_OP_REQUEST,
      senderMac: link.ownMac,
      senderIp: link.own4,
      targetMac: new Uint8Array(6),
      targetIp: target,
    };
    return ETH_HEADER_LEN + emitArp(repr, this.out, ETH_HEADER_LEN);
  }

  /**
   * A solicited neighbour advertisement for `target` at `mac`, answering the solicitation p
   * (to `dstMac`); `router` sets the router flag.
   */
  neighborAdvert(
    p: Packet,
    dstMac: Uint8Array,
    mac: Uint8Array,
    target: Uint8Array,
    router: boolean,
  ): number {
    const out = this.out;
    const buf = p.buf;
    writeEthernetHeader(out, 0, dstMac, mac, ETHERTYPE_IPV6);
    // RFC 4861 §7.2.4: reply to the soliciting address, or all-nodes when it was unspecified
    const solicitor = buf.subarray(p.ip + IP6_SRC, p.ip + IP6_SRC + 16);
    const unspecified = solicitor.every((b) => b === 0);
    const at = ETH_HEADER_LEN + IP6_HEADER_LEN;
    const repr: NeighborRepr = {
      kind: 'advert',
      target,
      flags:
        (router ? ND_NA_FLAG_ROUTER : 0) | (unspecified ? 0 : ND_NA_FLAG_SOLICITED) | ND_NA_FLAG_OVERRIDE,
      lladdr: mac,
    };
    const len = emitNeighbor(repr, out, at);
    this.ipv6(target, unspecified ? ALL_NODES : solicitor, IPPROTO_ICMPV6, len, ND_HOP_LIMIT);
    fillL4Checksum6(out, ETH_HEADER_LEN, at, IPPROTO_ICMPV6, len, at + ICMP6_CHECKSUM);
    return at + len;
  }

  /** The resolver's UDP datagram or TCP segment t, sent on `link` from `from`. 0: too big. */
  transport(link: Link, from: Uint8Array, t: DnsPacketOut): number {
    const out = this.out;
    const v6 = t.server.length === 16;
    const tcp = t.transport === 'tcp';
    const hl = tcp ? 20 : 8;
    const len = hl + t.payload.length;
    if (ETH_HEADER_LEN + (v6 ? IP6_HEADER_LEN : IP4_MIN_HEADER) + len > out.length) return 0;
    writeEthernetHeader(out, 0, link.peerMac, link.ownMac, v6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4);
    const proto = tcp ? IPPROTO_TCP : IPPROTO_UDP;
    const at = v6
      ? this.ipv6(from, t.server, proto, len, DEFAULT_HOP_LIMIT)
      : this.ipv4(from, t.server, proto, len);
    if (t.transport === 'tcp') {
      const repr: TcpRepr = {
        srcPort: t.localPort,
        dstPort: t.serverPort,
        seq: t.seq,
        ack: t.ack,
        flags: t.flags,
        window: t.window,
        urgent: 0,
        options: NO_BYTES,
        checksum: 0,
      };
      emitTcp(repr, out, at);
    } else {
      const repr: UdpRepr = { srcPort: t.localPort, dstPort: t.serverPort, length: len, checksum: 0 };
      emitUdp(repr, out, at);
    }
    out.set(t.payload, at + hl);
    const csum = at + (tcp ? TCP_CHECKSUM : UDP_CHECKSUM);
    if (v6) fillL4Checksum6(out, ETH_HEADER_LEN, at, proto, len, csum);
    else fillL4Checksum4(out, ETH_HEADER_LEN, at, proto, len, csum);
    return at + len;
  }
}

/** The transport checksum over the IPv4 pseudo-header (UDP's zero sent as 0xffff). */
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

/** The transport checksum over the IPv6 pseudo-header (UDP's zero sent as 0xffff). */
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
