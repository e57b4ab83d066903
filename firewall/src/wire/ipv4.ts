/** IPv4 (RFC 791): header with options, fragments, header checksum. */
import { checksum, read16, write16 } from './checksum.ts';

export const IP4_VER_IHL = 0;
export const IP4_TOS = 1;
export const IP4_TOTAL_LEN = 2;
export const IP4_ID = 4;
export const IP4_FLAGS_FRAG = 6;
export const IP4_TTL = 8;
export const IP4_PROTO = 9;
export const IP4_CHECKSUM = 10;
export const IP4_SRC = 12;
export const IP4_DST = 16;
export const IP4_MIN_HEADER = 20;

export const IP4_FLAG_DF = 0x4000;
export const IP4_FLAG_MF = 0x2000;
export const IP4_FRAG_MASK = 0x1fff;

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ICMPV6 = 58;

/** Options that ask routers to source-route; Linux drops them when forwarding (accept_source_route=0). */
export const IP4_OPT_END = 0;
export const IP4_OPT_NOP = 1;
export const IP4_OPT_LSRR = 131;
export const IP4_OPT_SSRR = 137;

export type Ipv4Error =
  | 'ip4-truncated'
  | 'ip4-bad-version'
  | 'ip4-bad-header-length'
  | 'ip4-bad-total-length'
  | 'ip4-bad-options'
  | 'ip4-source-route';

export class Ipv4View {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;
  headerLen = 0;
  totalLen = 0;

  /** Validates lengths and options once; `len` is what the link delivered (may include padding). */
  check(buf: Uint8Array, off: number, len: number): Ipv4Error | undefined {
    if (len < IP4_MIN_HEADER || off + len > buf.length) return 'ip4-truncated';
    const vihl = buf[off]!;
    if (vihl >> 4 !== 4) return 'ip4-bad-version';
    const hl = (vihl & 0xf) * 4;
    if (hl < IP4_MIN_HEADER || hl > len) return 'ip4-bad-header-length';
    const total = read16(buf, off + IP4_TOTAL_LEN);
    if (total < hl || total > len) return 'ip4-bad-total-length';
    if (hl > IP4_MIN_HEADER) {
      const err = checkOptions(buf, off + IP4_MIN_HEADER, off + hl);
      if (err) return err;
    }
    // stored only when it changes: a view lives long and the buffer is often new, and each
    // such store runs V8's write barrier (a call per packet on the engine's hot path)
    if (this.buf !== buf) this.buf = buf;
    this.off = off;
    this.headerLen = hl;
    this.totalLen = total;
    return undefined;
  }
  headerChecksumOk(): boolean {
    return checksum(this.buf, this.off, this.headerLen) === 0;
  }
  get ttl(): number {
    return this.buf[this.off + IP4_TTL]!;
  }
  get protocol(): number {
    return this.buf[this.off + IP4_PROTO]!;
  }
  get ident(): number {
    return read16(this.buf, this.off + IP4_ID);
  }
  get flagsFrag(): number {
    return read16(this.buf, this.off + IP4_FLAGS_FRAG);
  }
  get dontFragment(): boolean {
    return (this.flagsFrag & IP4_FLAG_DF) !== 0;
  }
  get moreFragments(): boolean {
    return (this.flagsFrag & IP4_FLAG_MF) !== 0;
  }
  /** Fragment offset in bytes. */
  get fragmentOffset(): number {
    return (this.flagsFrag & IP4_FRAG_MASK) * 8;
  }
  get isFragment(): boolean {
    return (this.flagsFrag & (IP4_FLAG_MF | IP4_FRAG_MASK)) !== 0;
  }
  get payloadOffset(): number {
    return this.off + this.headerLen;
  }
  get payloadLen(): number {
    return this.totalLen - this.headerLen;
  }
}

function checkOptions(buf: Uint8Array, i: number, end: number): Ipv4Error | undefined {
  while (i < end) {
    const type = buf[i]!;
    if (type === IP4_OPT_END) return undefined;
    if (type === IP4_OPT_NOP) {
      i++;
      continue;
    }
    if (i + 1 >= end) return 'ip4-bad-options';
    const olen = buf[i + 1]!;
    if (olen < 2 || i + olen > end) return 'ip4-bad-options';
    if (type === IP4_OPT_LSRR || type === IP4_OPT_SSRR) return 'ip4-source-route';
    i += olen;
  }
  return undefined;
}

/** Recomputes the header checksum in place. */
export function fillIpv4Checksum(buf: Uint8Array, off: number, headerLen: number): void {
  write16(buf, off + IP4_CHECKSUM, 0);
  write16(buf, off + IP4_CHECKSUM, checksum(buf, off, headerLen));
}

export interface Ipv4Repr {
  src: Uint8Array;
  dst: Uint8Array;
  protocol: number;
  ttl: number;
  tos: number;
  ident: number;
  dontFragment: boolean;
  moreFragments: boolean;
  fragmentOffset: number;
  /** Raw option bytes (a multiple of 4 long, at most 40). */
  options: Uint8Array;
  payloadLen: number;
}

export function parseIpv4(buf: Uint8Array, off = 0, len = buf.length - off): Ipv4Repr | Ipv4Error {
  const v = new Ipv4View();
  const err = v.check(buf, off, len);
  if (err) return err;
  return {
    src: buf.slice(off + IP4_SRC, off + IP4_SRC + 4),
    dst: buf.slice(off + IP4_DST, off + IP4_DST + 4),
    protocol: v.protocol,
    ttl: v.ttl,
    tos: buf[off + IP4_TOS]!,
    ident: v.ident,
    dontFragment: v.dontFragment,
    moreFragments: v.moreFragments,
    fragmentOffset: v.fragmentOffset,
    options: buf.slice(off + IP4_MIN_HEADER, off + v.headerLen),
    payloadLen: v.payloadLen,
  };
}

/** Writes the header (with checksum) at buf[off]; returns the header length. */
export function emitIpv4(repr: Ipv4Repr, buf: Uint8Array, off = 0): number {
  const hl = IP4_MIN_HEADER + repr.options.length;
  buf[off + IP4_VER_IHL] = 0x40 | (hl >> 2);
  buf[off + IP4_TOS] = repr.tos;
  write16(buf, off + IP4_TOTAL_LEN, hl + repr.payloadLen);
  write16(buf, off + IP4_ID, repr.ident);
  write16(
    buf,
    off + IP4_FLAGS_FRAG,
    (repr.dontFragment ? IP4_FLAG_DF : 0) |
      (repr.moreFragments ? IP4_FLAG_MF : 0) |
      (repr.fragmentOffset >> 3),
  );
  buf[off + IP4_TTL] = repr.ttl;
  buf[off + IP4_PROTO] = repr.protocol;
  buf.set(repr.src.subarray(0, 4), off + IP4_SRC);
  buf.set(repr.dst.subarray(0, 4), off + IP4_DST);
  buf.set(repr.options, off + IP4_MIN_HEADER);
  write16(buf, off + IP4_CHECKSUM, 0);
  write16(buf, off + IP4_CHECKSUM, checksum(buf, off, hl));
  return hl;
}
