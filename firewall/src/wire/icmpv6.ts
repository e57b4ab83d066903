/** ICMPv6 (RFC 4443) and neighbour discovery (RFC 4861). */
import { write16 } from './checksum.ts';

export const ICMP6_TYPE = 0;
export const ICMP6_CODE = 1;
export const ICMP6_CHECKSUM = 2;
export const ICMP6_ECHO_ID = 4;
export const ICMP6_MTU = 4;
export const ICMP6_HEADER_LEN = 8;

export const ICMP6_DEST_UNREACH = 1;
export const ICMP6_PACKET_TOO_BIG = 2;
export const ICMP6_TIME_EXCEEDED = 3;
export const ICMP6_PARAM_PROBLEM = 4;
export const ICMP6_ECHO_REQUEST = 128;
export const ICMP6_ECHO_REPLY = 129;
/** Node information query and reply (RFC 4620). */
export const ICMP6_NI_QUERY = 139;
export const ICMP6_NI_REPLY = 140;
export const ND_ROUTER_SOLICIT = 133;
export const ND_ROUTER_ADVERT = 134;
export const ND_NEIGHBOR_SOLICIT = 135;
export const ND_NEIGHBOR_ADVERT = 136;
export const ND_REDIRECT = 137;

export const ICMP6_UNREACH_ADMIN_PROHIBITED = 1;
export const ICMP6_UNREACH_PORT = 4;

/** NS/NA: 4 reserved/flag bytes then the 16-byte target, then options (RFC 4861 §4.3, §4.4). */
export const ND_TARGET = 8;
export const ND_OPTIONS = 24;
export const ND_OPT_SOURCE_LLADDR = 1;
export const ND_OPT_TARGET_LLADDR = 2;
export const ND_NA_FLAG_ROUTER = 0x80;
export const ND_NA_FLAG_SOLICITED = 0x40;
export const ND_NA_FLAG_OVERRIDE = 0x20;

export type Icmp6Error = 'icmp6-truncated' | 'nd-bad-options' | 'nd-bad-hop-limit';

export function icmp6IsError(type: number): boolean {
  return type < 128;
}

/**
 * The query a message of `type` belongs to (a query: itself; a reply: its query), or -1
 * (net/netfilter/nf_conntrack_proto_icmpv6.c `invmap`: echo and node information).
 */
export function icmp6QueryOf(type: number): number {
  if (type === ICMP6_ECHO_REQUEST || type === ICMP6_ECHO_REPLY) return ICMP6_ECHO_REQUEST;
  if (type === ICMP6_NI_QUERY || type === ICMP6_NI_REPLY) return ICMP6_NI_QUERY;
  return -1;
}

export class Icmp6View {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;
  len = 0;

  check(buf: Uint8Array, off: number, len: number): Icmp6Error | undefined {
    if (len < ICMP6_HEADER_LEN || off + len > buf.length) return 'icmp6-truncated';
    this.buf = buf;
    this.off = off;
    this.len = len;
    return undefined;
  }
  get type(): number {
    return this.buf[this.off]!;
  }
  get code(): number {
    return this.buf[this.off + 1]!;
  }
}

/**
 * Validates a neighbour solicitation or advertisement (RFC 4861 §7.1.1: hop limit 255,
 * code 0, length ≥ 24, options of non-zero length within the message) and returns the
 * offset of its link-layer address option (source for NS, target for NA), -1 when absent.
 */
export function checkNeighborMessage(
  buf: Uint8Array,
  off: number,
  len: number,
  hopLimit: number,
): number | Icmp6Error {
  if (hopLimit !== 255) return 'nd-bad-hop-limit';
  if (len < ND_OPTIONS || buf[off + 1] !== 0) return 'icmp6-truncated';
  const want = buf[off] === ND_NEIGHBOR_SOLICIT ? ND_OPT_SOURCE_LLADDR : ND_OPT_TARGET_LLADDR;
  let found = -1;
  for (let p = off + ND_OPTIONS; p < off + len; ) {
    if (p + 2 > off + len) return 'nd-bad-options';
    const olen = buf[p + 1]! * 8;
    if (olen === 0 || p + olen > off + len) return 'nd-bad-options';
    if (buf[p] === want && olen >= 8) found = p + 2;
    p += olen;
  }
  return found;
}

export interface NeighborRepr {
  kind: 'solicit' | 'advert';
  target: Uint8Array;
  flags: number;
  /** The link-layer address option, if any. */
  lladdr: Uint8Array | undefined;
}

export function parseNeighbor(
  buf: Uint8Array,
  off: number,
  len: number,
  hopLimit: number,
): NeighborRepr | Icmp6Error {
  const ll = checkNeighborMessage(buf, off, len, hopLimit);
  if (typeof ll === 'string') return ll;
  return {
    kind: buf[off] === ND_NEIGHBOR_SOLICIT ? 'solicit' : 'advert',
    target: buf.slice(off + ND_TARGET, off + ND_TARGET + 16),
    flags: buf[off + 4]!,
    lladdr: ll < 0 ? undefined : buf.slice(ll, ll + 6),
  };
}

/** Writes an NS/NA body (checksum zero; the caller fills it over the pseudo-header). */
export function emitNeighbor(repr: NeighborRepr, buf: Uint8Array, off = 0): number {
  buf[off] = repr.kind === 'solicit' ? ND_NEIGHBOR_SOLICIT : ND_NEIGHBOR_ADVERT;
  buf[off + 1] = 0;
  write16(buf, off + 2, 0);
  buf[off + 4] = repr.flags;
  buf[off + 5] = 0;
  buf[off + 6] = 0;
  buf[off + 7] = 0;
  buf.set(repr.target.subarray(0, 16), off + ND_TARGET);
  if (!repr.lladdr) return ND_OPTIONS;
  buf[off + ND_OPTIONS] = repr.kind === 'solicit' ? ND_OPT_SOURCE_LLADDR : ND_OPT_TARGET_LLADDR;
  buf[off + ND_OPTIONS + 1] = 1;
  buf.set(repr.lladdr.subarray(0, 6), off + ND_OPTIONS + 2);
  return ND_OPTIONS + 8;
}
