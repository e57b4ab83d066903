/**
 * The packet being handled: where its headers are and what they say, parsed once through
 * wire's views and passed explicitly to every stage (smoltcp's parsed packet in `iface`).
 * The engine owns one and reuses it for every frame: nothing here outlives the frame and
 * nothing allocates.
 */

import { formatIpv4, formatIpv6 } from '../wire/address.ts';
import {
  applyDelta,
  checksum,
  fold,
  pseudoSum4,
  pseudoSum6,
  read16,
  read32,
  sumWords,
} from '../wire/checksum.ts';
import { ICMP_ECHO_ID, IcmpView, icmpIsError, icmpQueryOf } from '../wire/icmpv4.ts';
import { Icmp6View, icmp6IsError, icmp6QueryOf } from '../wire/icmpv6.ts';
import {
  IP4_CHECKSUM,
  IP4_DST,
  IP4_FLAG_MF,
  IP4_FLAGS_FRAG,
  IP4_FRAG_MASK,
  IP4_ID,
  IP4_MIN_HEADER,
  IP4_PROTO,
  IP4_SRC,
  IP4_TTL,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_TCP,
  IPPROTO_UDP,
  Ipv4View,
} from '../wire/ipv4.ts';
import { IP6_DST, IP6_HOP_LIMIT, IP6_SRC, Ipv6View } from '../wire/ipv6.ts';
import { TCP_DST_PORT, TCP_FLAGS, TCP_SRC_PORT, TcpView } from '../wire/tcp.ts';
import { UDP_DST_PORT, UDP_SRC_PORT, UdpView } from '../wire/udp.ts';
import type { FrameMeta } from './config.ts';
import { K_DST, K_PORTS, K_PROTO, K_SRC, KEY_WORDS } from './conntrack.ts';

export const FRAG_NONE = 0;
export const FRAG_FIRST = 1;
export const FRAG_LATER = 2;

/** ICMP query kinds: not a query, a query (echo/timestamp request), a query's reply. */
export const ICMP_OTHER = 0;
export const ICMP_QUERY = 1;
export const ICMP_QUERY_REPLY = 2;

export class Packet {
  buf: Uint8Array = new Uint8Array(0);
  /** Offset of the Ethernet header. */
  eth = 0;
  family: 4 | 6 = 4;
  /** Offset and length of the IP packet (ipLen 0: not parsed as IP yet). */
  ip = 0;
  ipLen = 0;
  /** Offset and length of the upper-layer header and payload. */
  l4 = 0;
  l4Len = 0;
  proto = 0;
  /** Offsets of the source and destination addresses. */
  src = 0;
  dst = 0;
  /**
   * Ports (TCP/UDP); for an ICMP query its id and type, for a reply its query's type and id
   * (as conntrack keys them).
   */
  sport = 0;
  dport = 0;
  hasPorts = false;
  icmpType = -1;
  icmpCode = -1;
  icmpKind = ICMP_OTHER;
  tcpFlags = 0;
  frag = FRAG_NONE;
  fragId = 0;
  /** Leaves in fragments (set by the MTU check). */
  fragmentOut = false;
  /** The packet's own tuple in words 0..KEY_WORDS; a new flow builds its reply tuple after it. */
  readonly key = new Uint32Array(KEY_WORDS * 2);
  readonly ip4 = new Ipv4View();
  readonly ip6 = new Ipv6View();
  readonly tcp = new TcpView();
  readonly udp = new UdpView();
  private readonly icmp4 = new IcmpView();
  private readonly icmp6 = new Icmp6View();

  /** A new frame at buf[eth]: nothing parsed yet (logs call it `frame`). */
  start(buf: Uint8Array, eth: number): void {
    // stored only when it changes: storing a buffer younger than this object runs V8's
    // write barrier stub, a call per packet (the wire views do the same)
    if (this.buf !== buf) this.buf = buf;
    this.eth = eth;
    this.ipLen = 0;
    this.fragmentOut = false;
  }

  /**
   * Reads the transport header of the IPv4 packet `ip4` has checked and fills `key` with the
   * packet's own tuple. False when the transport header is unparseable. The header fields
   * are read at wire's offsets here rather than through the view's getters: each inlined
   * getter counts against V8's inlining budget of the hot path it sits on.
   */
  parse4(): boolean {
    const v = this.ip4;
    const buf = this.buf;
    const l3 = v.off;
    this.family = 4;
    this.ip = l3;
    this.ipLen = v.totalLen;
    this.l4 = l3 + v.headerLen;
    this.l4Len = v.totalLen - v.headerLen;
    this.proto = buf[l3 + IP4_PROTO]!;
    this.src = l3 + IP4_SRC;
    this.dst = l3 + IP4_DST;
    const ff = read16(buf, l3 + IP4_FLAGS_FRAG);
    this.frag = (ff & IP4_FRAG_MASK) !== 0 ? FRAG_LATER : (ff & IP4_FLAG_MF) !== 0 ? FRAG_FIRST : FRAG_NONE;
    this.fragId = read16(buf, l3 + IP4_ID);
    return this.parseL4();
  }

  /** parse4 for the IPv6 packet `ip6` has checked. */
  parse6(): boolean {
    const v = this.ip6;
    const l3 = v.off;
    this.family = 6;
    this.ip = l3;
    this.ipLen = v.totalLen;
    this.l4 = v.upperOffset;
    this.l4Len = v.upperLen;
    this.proto = v.upperProtocol;
    this.src = l3 + IP6_SRC;
    this.dst = l3 + IP6_DST;
    this.frag = !v.isFragment ? FRAG_NONE : v.fragmentOffset !== 0 ? FRAG_LATER : FRAG_FIRST;
    this.fragId = v.fragmentIdent;
    return this.parseL4();
  }

  private parseL4(): boolean {
    const buf = this.buf;
    const o = this.l4;
    const n = this.l4Len;
    const proto = this.proto;
    this.sport = 0;
    this.dport = 0;
    this.icmpType = -1;
    this.icmpCode = -1;
    this.tcpFlags = 0;
    this.hasPorts = false;
    this.icmpKind = ICMP_OTHER;
    if (this.frag !== FRAG_LATER) {
      if (proto === IPPROTO_TCP) {
        if (this.tcp.check(buf, o, n)) return false;
        this.sport = read16(buf, o + TCP_SRC_PORT);
        this.dport = read16(buf, o + TCP_DST_PORT);
        this.tcpFlags = buf[o + TCP_FLAGS]!;
        this.hasPorts = true;
      } else if (proto === IPPROTO_UDP) {
        if (this.udp.check(buf, o, n, this.frag === FRAG_FIRST)) return false;
        this.sport = read16(buf, o + UDP_SRC_PORT);
        this.dport = read16(buf, o + UDP_DST_PORT);
        this.hasPorts = true;
      } else if (proto === this.icmpProto) {
        if (!this.parseIcmp(buf, o, n)) return false;
      }
    }
    if (this.family === 4) fillKey4(this.key, proto, buf, this.src, this.dst, this.sport, this.dport);
    else this.fillKey(this.key, proto, this.src, this.dst, this.sport, this.dport);
    return true;
  }

  /** The ICMP header of either family: its type and code, and a query's keying. */
  private parseIcmp(buf: Uint8Array, o: number, n: number): boolean {
    const v4 = this.family === 4;
    if (v4 ? this.icmp4.check(buf, o, n) : this.icmp6.check(buf, o, n)) return false;
    const t = v4 ? this.icmp4.type : this.icmp6.type;
    this.icmpType = t;
    this.icmpCode = v4 ? this.icmp4.code : this.icmp6.code;
    // conntrack keys a query by its identifier and the query type (a reply by the type
    // of its query): the type sits where a destination port would
    const q = v4 ? icmpQueryOf(t) : icmp6QueryOf(t);
    if (q === t) {
      this.sport = read16(buf, o + ICMP_ECHO_ID);
      this.dport = q;
      this.icmpKind = ICMP_QUERY;
    } else if (q >= 0) {
      this.sport = q;
      this.dport = read16(buf, o + ICMP_ECHO_ID);
      this.icmpKind = ICMP_QUERY_REPLY;
    }
    return true;
  }

  /** The ICMP protocol of the packet's family. */
  get icmpProto(): number {
    return this.family === 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6;
  }

  /** Whether the packet is an ICMP error (its own family's ICMP). */
  get isIcmpError(): boolean {
    const t = this.icmpType;
    return t >= 0 && (this.family === 4 ? icmpIsError(t) : icmp6IsError(t));
  }

  /**
   * Writes a flow key into k[0..KEY_WORDS): this packet's family, `proto`, the addresses at
   * buf[srcOff] and buf[dstOff], and the ports.
   */
  fillKey(k: Uint32Array, proto: number, srcOff: number, dstOff: number, sport: number, dport: number): void {
    const buf = this.buf;
    if (this.family === 4) {
      fillKey4(k, proto, buf, srcOff, dstOff, sport, dport);
      return;
    }
    k[K_PROTO] = (6 << 8) | proto;
    k[K_PORTS] = ((sport << 16) | dport) >>> 0;
    for (let i = 0; i < 4; i++) {
      k[K_SRC + i] = read32(buf, srcOff + i * 4);
      k[K_DST + i] = read32(buf, dstOff + i * 4);
    }
  }

  /**
   * Verifies the transport checksum unless offloaded, validated, or split by fragmentation.
   * Kept small so that the hot path inlines it (the sums are in transportSumOk).
   */
  checksumOk(meta: FrameMeta): boolean {
    if (meta.csumBlank || meta.dataValidated || this.frag !== FRAG_NONE) return true;
    return this.transportSumOk();
  }

  private transportSumOk(): boolean {
    const buf = this.buf;
    const proto = this.proto;
    const o = this.l4;
    const n = this.l4Len;
    if (this.family === 4) {
      if (proto === IPPROTO_TCP)
        return fold(sumWords(buf, o, n, pseudoSum4(buf, this.ip, proto, n))) === 0xffff;
      if (proto === IPPROTO_UDP) {
        if (this.udp.checksum === 0) return true; // no checksum (IPv4 only)
        const ul = this.udp.length;
        return fold(sumWords(buf, o, ul, pseudoSum4(buf, this.ip, proto, ul))) === 0xffff;
      }
      if (proto === IPPROTO_ICMP) return checksum(buf, o, n) === 0;
      return true;
    }
    if (proto === IPPROTO_TCP || proto === IPPROTO_ICMPV6)
      return fold(sumWords(buf, o, n, pseudoSum6(buf, this.ip, proto, n))) === 0xffff;
    if (proto === IPPROTO_UDP) {
      const ul = this.udp.length;
      return fold(sumWords(buf, o, ul, pseudoSum6(buf, this.ip, proto, ul))) === 0xffff;
    }
    return true;
  }

  get hopLimit(): number {
    return this.family === 4 ? this.buf[this.ip + IP4_TTL]! : this.buf[this.ip + IP6_HOP_LIMIT]!;
  }

  /** Decrements the TTL or hop limit (and updates the IPv4 header checksum). */
  decrementHopLimit(): void {
    if (this.family === 4) decrementTtl4(this.buf, this.ip);
    else this.buf[this.ip + IP6_HOP_LIMIT]! -= 1;
  }

  /** `proto src:port -> dst:port` (slow path, logging only). */
  describe(): string {
    const buf = this.buf;
    if (this.ipLen === 0 || this.ip + IP4_MIN_HEADER > buf.length) return 'frame';
    const fam = this.family;
    const f = (o: number) => (fam === 4 ? formatIpv4(buf, o) : formatIpv6(buf, o));
    const names: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'icmp6' };
    const proto = names[this.proto] ?? `proto${this.proto}`;
    const ports = this.hasPorts;
    return `${proto} ${f(this.src)}${ports ? `:${this.sport}` : ''} -> ${f(this.dst)}${ports ? `:${this.dport}` : ''}`;
  }
}

/** Packet.fillKey for an IPv4 packet (the hot path's, apart so that it stays small). */
function fillKey4(
  k: Uint32Array,
  proto: number,
  buf: Uint8Array,
  srcOff: number,
  dstOff: number,
  sport: number,
  dport: number,
): void {
  k[K_PROTO] = (4 << 8) | proto;
  k[K_PORTS] = ((sport << 16) | dport) >>> 0;
  k[K_SRC] = read32(buf, srcOff);
  k[K_SRC + 1] = 0;
  k[K_SRC + 2] = 0;
  k[K_SRC + 3] = 0;
  k[K_DST] = read32(buf, dstOff);
  k[K_DST + 1] = 0;
  k[K_DST + 2] = 0;
  k[K_DST + 3] = 0;
}

/** Decrements an IPv4 header's TTL and updates its checksum (RFC 1624). */
function decrementTtl4(buf: Uint8Array, ip: number): void {
  const at = ip + IP4_TTL;
  const old = (buf[at]! << 8) | buf[at + 1]!;
  buf[at] = buf[at]! - 1;
  applyDelta(buf, ip + IP4_CHECKSUM, (~old & 0xffff) + (old - 0x100), false);
}
