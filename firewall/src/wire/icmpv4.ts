/** ICMP for IPv4 (RFC 792, RFC 1191 for fragmentation needed, RFC 1812 §5.2.7.1 codes). */
import { read16, write16 } from './checksum.ts';

export const ICMP_TYPE = 0;
export const ICMP_CODE = 1;
export const ICMP_CHECKSUM = 2;
/** Echo identifier / sequence, or the "rest of header" of errors (unused / next-hop MTU). */
export const ICMP_ECHO_ID = 4;
export const ICMP_ECHO_SEQ = 6;
export const ICMP_NEXT_HOP_MTU = 6;
export const ICMP_HEADER_LEN = 8;
/** Timestamp messages (RFC 792): originate, receive, transmit timestamps after the header. */
export const ICMP_TS_ORIGINATE = 8;
export const ICMP_TS_RECEIVE = 12;
export const ICMP_TS_TRANSMIT = 16;
export const ICMP_TS_LEN = 20;

export const ICMP_ECHO_REPLY = 0;
export const ICMP_DEST_UNREACH = 3;
export const ICMP_SOURCE_QUENCH = 4;
export const ICMP_REDIRECT = 5;
export const ICMP_ECHO_REQUEST = 8;
export const ICMP_TIME_EXCEEDED = 11;
export const ICMP_PARAM_PROBLEM = 12;
export const ICMP_TIMESTAMP = 13;
export const ICMP_TIMESTAMP_REPLY = 14;
export const ICMP_INFO_REQUEST = 15;
export const ICMP_INFO_REPLY = 16;
export const ICMP_ADDRESS = 17;
export const ICMP_ADDRESS_REPLY = 18;

/** Destination unreachable codes. */
export const ICMP_UNREACH_PORT = 3;
export const ICMP_UNREACH_FRAG_NEEDED = 4;
export const ICMP_UNREACH_HOST_PROHIBITED = 10;
export const ICMP_UNREACH_ADMIN_PROHIBITED = 13;

export type IcmpError = 'icmp-truncated';

export function icmpIsError(type: number): boolean {
  return (
    type === ICMP_DEST_UNREACH ||
    type === ICMP_SOURCE_QUENCH ||
    type === ICMP_REDIRECT ||
    type === ICMP_TIME_EXCEEDED ||
    type === ICMP_PARAM_PROBLEM
  );
}

/**
 * Whether Linux may send an ICMP error about a message of `type`: the types up to
 * NR_ICMP_TYPES (18) that its icmp_pointers[] table does not mark as errors (0, 8, 13-18;
 * net/ipv4/icmp.c: the unassigned 1, 2, 6, 7, 9 and 10 are marked as errors too), so
 * nothing is said about an error or an unknown type (RFC 1122 §3.2.2).
 */
export function icmpKnownNonError(type: number): boolean {
  return type === 0 || type === 8 || (type >= 13 && type <= 18);
}

/**
 * The query a message of `type` belongs to (a query: itself; a reply: its query), or -1:
 * the query/reply pairs Linux conntrack tracks by identifier and NAT translates
 * (net/netfilter/nf_conntrack_proto_icmp.c `invmap`: echo, timestamp, information, address
 * mask). Any other type can open no flow.
 */
export function icmpQueryOf(type: number): number {
  switch (type) {
    case ICMP_ECHO_REQUEST:
    case ICMP_ECHO_REPLY:
      return ICMP_ECHO_REQUEST;
    case ICMP_TIMESTAMP:
    case ICMP_TIMESTAMP_REPLY:
      return ICMP_TIMESTAMP;
    case ICMP_INFO_REQUEST:
    case ICMP_INFO_REPLY:
      return ICMP_INFO_REQUEST;
    case ICMP_ADDRESS:
    case ICMP_ADDRESS_REPLY:
      return ICMP_ADDRESS;
    default:
      return -1;
  }
}

/** Query types whose identifier Linux conntrack tracks and NAT translates. */
export function icmpIsQuery(type: number): boolean {
  return icmpQueryOf(type) === type;
}
export function icmpIsQueryReply(type: number): boolean {
  const q = icmpQueryOf(type);
  return q >= 0 && q !== type;
}

export class IcmpView {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;
  len = 0;

  check(buf: Uint8Array, off: number, len: number): IcmpError | undefined {
    if (len < ICMP_HEADER_LEN || off + len > buf.length) return 'icmp-truncated';
    this.buf = buf;
    this.off = off;
    this.len = len;
    return undefined;
  }
  get type(): number {
    return this.buf[this.off + ICMP_TYPE]!;
  }
  get code(): number {
    return this.buf[this.off + ICMP_CODE]!;
  }
  get echoId(): number {
    return read16(this.buf, this.off + ICMP_ECHO_ID);
  }
}

export interface IcmpRepr {
  type: number;
  code: number;
  /** Bytes 4..8: echo id/seq, next-hop MTU, or zero. */
  rest: number;
  payload: Uint8Array;
}

export function parseIcmp(buf: Uint8Array, off = 0, len = buf.length - off): IcmpRepr | IcmpError {
  if (len < ICMP_HEADER_LEN || off + len > buf.length) return 'icmp-truncated';
  return {
    type: buf[off]!,
    code: buf[off + 1]!,
    rest: ((read16(buf, off + 4) << 16) | read16(buf, off + 6)) >>> 0,
    payload: buf.slice(off + ICMP_HEADER_LEN, off + len),
  };
}

/** Writes header and payload with a zero checksum; returns the length. */
export function emitIcmp(repr: IcmpRepr, buf: Uint8Array, off = 0): number {
  buf[off] = repr.type;
  buf[off + 1] = repr.code;
  write16(buf, off + 2, 0);
  write16(buf, off + 4, repr.rest >>> 16);
  write16(buf, off + 6, repr.rest & 0xffff);
  buf.set(repr.payload, off + ICMP_HEADER_LEN);
  return ICMP_HEADER_LEN + repr.payload.length;
}
