/** IPv6 (RFC 8200): fixed header and the extension header chain. */
import { read16, read32, write16, write32 } from './checksum.ts';

export const IP6_VER_TC_FLOW = 0;
export const IP6_PAYLOAD_LEN = 4;
export const IP6_NEXT_HEADER = 6;
export const IP6_HOP_LIMIT = 7;
export const IP6_SRC = 8;
export const IP6_DST = 24;
export const IP6_HEADER_LEN = 40;

export const IP6_EXT_HOP_BY_HOP = 0;
export const IP6_EXT_ROUTING = 43;
export const IP6_EXT_FRAGMENT = 44;
export const IP6_EXT_ESP = 50;
export const IP6_EXT_AH = 51;
export const IP6_EXT_NONE = 59;
export const IP6_EXT_DEST_OPTS = 60;

/** Fragment header layout (RFC 8200 §4.5). */
export const IP6_FRAG_HEADER_LEN = 8;
export const IP6_FRAG_OFFSET_FLAGS = 2;
export const IP6_FRAG_IDENT = 4;

/** More extension headers than this costs one packet (a bound on work per packet). */
export const IP6_MAX_EXT_HEADERS = 8;

export type Ipv6Error =
  | 'ip6-truncated'
  | 'ip6-bad-version'
  | 'ip6-bad-payload-length'
  | 'ip6-bad-extension'
  | 'ip6-too-many-extensions'
  | 'ip6-routing-type0';

export class Ipv6View {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;
  totalLen = 0;
  /** The upper-layer protocol after the extension headers (59 for "no next header"). */
  upperProtocol = 0;
  /** Absolute offset of the upper-layer header. */
  upperOffset = 0;
  /** Absolute offset of the fragment header, or -1. */
  fragmentHeaderOffset = -1;
  /** Absolute offset of the byte holding the Next Header value that names the upper layer. */
  nextHeaderFieldOffset = 0;

  check(buf: Uint8Array, off: number, len: number): Ipv6Error | undefined {
    if (len < IP6_HEADER_LEN || off + len > buf.length) return 'ip6-truncated';
    if (buf[off]! >> 4 !== 6) return 'ip6-bad-version';
    const payload = read16(buf, off + IP6_PAYLOAD_LEN);
    // jumbograms (payload 0 with a hop-by-hop jumbo option) never fit a 64 KiB Xen frame
    if (payload + IP6_HEADER_LEN > len) return 'ip6-bad-payload-length';
    const end = off + IP6_HEADER_LEN + payload;
    let next = buf[off + IP6_NEXT_HEADER]!;
    let field = off + IP6_NEXT_HEADER;
    let p = off + IP6_HEADER_LEN;
    let frag = -1;
    for (let n = 0; ; n++) {
      if (
        next !== IP6_EXT_HOP_BY_HOP &&
        next !== IP6_EXT_ROUTING &&
        next !== IP6_EXT_FRAGMENT &&
        next !== IP6_EXT_DEST_OPTS &&
        next !== IP6_EXT_AH
      )
        break;
      if (n >= IP6_MAX_EXT_HEADERS) return 'ip6-too-many-extensions';
      if (next === IP6_EXT_HOP_BY_HOP && n !== 0) return 'ip6-bad-extension';
      if (p + 8 > end) return 'ip6-bad-extension';
      let hlen: number;
      if (next === IP6_EXT_FRAGMENT) {
        if (frag !== -1) return 'ip6-bad-extension';
        frag = p;
        hlen = IP6_FRAG_HEADER_LEN;
      } else if (next === IP6_EXT_AH) {
        hlen = (buf[p + 1]! + 2) * 4;
      } else {
        hlen = (buf[p + 1]! + 1) * 8;
        // RFC 5095 deprecates type 0 routing headers; drop them while segments are left
        if (next === IP6_EXT_ROUTING && buf[p + 2] === 0 && buf[p + 3] !== 0) return 'ip6-routing-type0';
      }
      if (p + hlen > end) return 'ip6-bad-extension';
      field = p;
      next = buf[p]!;
      p += hlen;
    }
    this.buf = buf;
    this.off = off;
    this.totalLen = IP6_HEADER_LEN + payload;
    this.upperProtocol = next;
    this.upperOffset = p;
    this.fragmentHeaderOffset = frag;
    this.nextHeaderFieldOffset = field;
    return undefined;
  }
  get hopLimit(): number {
    return this.buf[this.off + IP6_HOP_LIMIT]!;
  }
  get upperLen(): number {
    return this.off + this.totalLen - this.upperOffset;
  }
  get isFragment(): boolean {
    if (this.fragmentHeaderOffset < 0) return false;
    return (read16(this.buf, this.fragmentHeaderOffset + IP6_FRAG_OFFSET_FLAGS) & 0xfff9) !== 0;
  }
  /** Fragment offset in bytes (0 when not fragmented). */
  get fragmentOffset(): number {
    if (this.fragmentHeaderOffset < 0) return 0;
    return read16(this.buf, this.fragmentHeaderOffset + IP6_FRAG_OFFSET_FLAGS) & 0xfff8;
  }
  get moreFragments(): boolean {
    if (this.fragmentHeaderOffset < 0) return false;
    return (this.buf[this.fragmentHeaderOffset + 3]! & 1) === 1;
  }
  get fragmentIdent(): number {
    return this.fragmentHeaderOffset < 0 ? 0 : read32(this.buf, this.fragmentHeaderOffset + IP6_FRAG_IDENT);
  }
}

export interface Ipv6Repr {
  src: Uint8Array;
  dst: Uint8Array;
  nextHeader: number;
  hopLimit: number;
  trafficClass: number;
  flowLabel: number;
  payloadLen: number;
}

export function parseIpv6(buf: Uint8Array, off = 0, len = buf.length - off): Ipv6Repr | Ipv6Error {
  const v = new Ipv6View();
  const err = v.check(buf, off, len);
  if (err) return err;
  const w = read32(buf, off);
  return {
    src: buf.slice(off + IP6_SRC, off + IP6_SRC + 16),
    dst: buf.slice(off + IP6_DST, off + IP6_DST + 16),
    nextHeader: buf[off + IP6_NEXT_HEADER]!,
    hopLimit: v.hopLimit,
    trafficClass: (w >>> 20) & 0xff,
    flowLabel: w & 0xfffff,
    payloadLen: v.totalLen - IP6_HEADER_LEN,
  };
}

export function emitIpv6(repr: Ipv6Repr, buf: Uint8Array, off = 0): number {
  write32(buf, off, ((6 << 28) | (repr.trafficClass << 20) | (repr.flowLabel & 0xfffff)) >>> 0);
  write16(buf, off + IP6_PAYLOAD_LEN, repr.payloadLen);
  buf[off + IP6_NEXT_HEADER] = repr.nextHeader;
  buf[off + IP6_HOP_LIMIT] = repr.hopLimit;
  buf.set(repr.src.subarray(0, 16), off + IP6_SRC);
  buf.set(repr.dst.subarray(0, 16), off + IP6_DST);
  return IP6_HEADER_LEN;
}
