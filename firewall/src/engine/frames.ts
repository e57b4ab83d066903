/**
 * Builders of well-formed frames for tests, property tests and the benchmark (slow path:
 * they allocate). Checksums are correct unless asked otherwise.
 */
import type { FlowQuery, RuleDecision, RuleSet } from '../rules/types.ts';
import { checksum, write16, write32 } from '../wire/checksum.ts';
import { ETHERTYPE_IPV4, ETHERTYPE_IPV6, writeEthernetHeader } from '../wire/ethernet.ts';
import { emitIpv4 } from '../wire/ipv4.ts';
import { emitIpv6 } from '../wire/ipv6.ts';
import { QUBES_GATEWAY_MAC } from './config.ts';
import { fillL4Checksum4, fillL4Checksum6 } from './emit.ts';

export interface PacketSpec {
  src: Uint8Array;
  dst: Uint8Array;
  /** 6 tcp, 17 udp, 1 icmp, 58 icmpv6, or any other number. */
  proto: number;
  sport?: number;
  dport?: number;
  tcpFlags?: number;
  icmpType?: number;
  icmpCode?: number;
  icmpId?: number;
  ttl?: number;
  payload?: Uint8Array;
  srcMac?: Uint8Array;
  dstMac?: Uint8Array;
  df?: boolean;
  /** The IPv4 identification (default 7, or the fragment's); checksums stay complete. */
  ipId?: number;
  /** IPv4 fragment fields (offset in bytes). */
  fragment?: { ident: number; offset: number; more: boolean };
  /** Leave the transport checksum as the pseudo-header sum (checksum-blank frames). */
  partialChecksum?: boolean;
  /** Raw bytes to use as the L4 segment instead of building one (e.g. ICMP error bodies). */
  l4?: Uint8Array;
}

const CLIENT_MAC = new Uint8Array([0x00, 0x16, 0x3e, 0x5e, 0x6c, 0x01]);

function l4Segment(spec: PacketSpec): { seg: Uint8Array; csumAt: number } {
  if (spec.l4) return { seg: spec.l4.slice(), csumAt: spec.proto === 6 ? 16 : spec.proto === 17 ? 6 : 2 };
  const payload = spec.payload ?? new Uint8Array(0);
  if (spec.proto === 6) {
    const seg = new Uint8Array(20 + payload.length);
    write16(seg, 0, spec.sport ?? 40000);
    write16(seg, 2, spec.dport ?? 80);
    write32(seg, 4, 1000);
    write32(seg, 8, 0);
    seg[12] = 5 << 4;
    seg[13] = spec.tcpFlags ?? 0x02;
    write16(seg, 14, 65535);
    seg.set(payload, 20);
    return { seg, csumAt: 16 };
  }
  if (spec.proto === 17) {
    const seg = new Uint8Array(8 + payload.length);
    write16(seg, 0, spec.sport ?? 40000);
    write16(seg, 2, spec.dport ?? 53);
    write16(seg, 4, seg.length);
    seg.set(payload, 8);
    return { seg, csumAt: 6 };
  }
  if (spec.proto === 1 || spec.proto === 58) {
    const seg = new Uint8Array(8 + payload.length);
    seg[0] = spec.icmpType ?? (spec.proto === 1 ? 8 : 128);
    seg[1] = spec.icmpCode ?? 0;
    write16(seg, 4, spec.icmpId ?? 0x1234);
    write16(seg, 6, 1);
    seg.set(payload, 8);
    return { seg, csumAt: 2 };
  }
  return { seg: payload.slice(), csumAt: -1 };
}

/** An Ethernet + IPv4 frame. */
export function frame4(spec: PacketSpec): Uint8Array {
  const { seg, csumAt } = l4Segment(spec);
  const f = new Uint8Array(14 + 20 + seg.length);
  writeEthernetHeader(f, 0, spec.dstMac ?? QUBES_GATEWAY_MAC, spec.srcMac ?? CLIENT_MAC, ETHERTYPE_IPV4);
  const frag = spec.fragment;
  emitIpv4(
    {
      src: spec.src,
      dst: spec.dst,
      protocol: spec.proto,
      ttl: spec.ttl ?? 64,
      tos: 0,
      ident: frag?.ident ?? spec.ipId ?? 7,
      dontFragment: spec.df ?? false,
      moreFragments: frag?.more ?? false,
      fragmentOffset: frag?.offset ?? 0,
      options: new Uint8Array(0),
      payloadLen: seg.length,
    },
    f,
    14,
  );
  f.set(seg, 34);
  if (csumAt >= 0 && !spec.l4 && !frag) {
    if (spec.proto === 1) write16(f, 34 + 2, checksum(f, 34, seg.length));
    else if (spec.partialChecksum) writePartial(f, 14, 34, spec.proto, seg.length, csumAt, 4);
    else fillL4Checksum4(f, 14, 34, spec.proto, seg.length, 34 + csumAt);
  }
  return f;
}

/** An Ethernet + IPv6 frame (no extension headers). */
export function frame6(spec: PacketSpec): Uint8Array {
  const { seg, csumAt } = l4Segment(spec);
  const f = new Uint8Array(14 + 40 + seg.length);
  writeEthernetHeader(f, 0, spec.dstMac ?? QUBES_GATEWAY_MAC, spec.srcMac ?? CLIENT_MAC, ETHERTYPE_IPV6);
  emitIpv6(
    {
      src: spec.src,
      dst: spec.dst,
      nextHeader: spec.proto,
      hopLimit: spec.ttl ?? 64,
      trafficClass: 0,
      flowLabel: 0,
      payloadLen: seg.length,
    },
    f,
    14,
  );
  f.set(seg, 54);
  if (csumAt >= 0 && !spec.l4) {
    if (spec.partialChecksum) writePartial(f, 14, 54, spec.proto, seg.length, csumAt, 6);
    else fillL4Checksum6(f, 14, 54, spec.proto, seg.length, 54 + csumAt);
  }
  return f;
}

function writePartial(
  f: Uint8Array,
  ip: number,
  l4: number,
  proto: number,
  len: number,
  at: number,
  fam: 4 | 6,
): void {
  // the folded, uncomplemented pseudo-header sum, as Linux leaves it for CHECKSUM_PARTIAL
  let s = proto + len;
  const a = fam === 4 ? ip + 12 : ip + 8;
  const n = fam === 4 ? 8 : 32;
  for (let i = 0; i < n; i += 2) s += (f[a + i]! << 8) | f[a + i + 1]!;
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  write16(f, l4 + at, s);
}

/** Completes a checksum-blank frame's transport checksum the way a NIC or the receiver would. */
export function completePartial(f: Uint8Array, l4: number, len: number, at: number): void {
  let s = 0;
  for (let i = 0; i < len - 1; i += 2) s += (f[l4 + i]! << 8) | f[l4 + i + 1]!;
  if (len & 1) s += f[l4 + len - 1]! << 8;
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  write16(f, l4 + at, ~s & 0xffff);
}

/** A RuleSet from a function (tests and the benchmark's fallback). */
export function ruleSetOf(
  fn: (q: FlowQuery) => { action: 'accept' | 'drop'; rule: number },
  ruleNumbers: number[] = [],
  failClosedReason?: string,
): RuleSet {
  return {
    failClosedReason,
    ruleNumbers,
    evaluate(q: FlowQuery, out: RuleDecision): RuleDecision {
      const d = fn(q);
      out.action = d.action;
      out.rule = d.rule;
      return out;
    },
  };
}

export const acceptAll: RuleSet = ruleSetOf(() => ({ action: 'accept', rule: 0 }), [0]);
export const dropAll: RuleSet = ruleSetOf(() => ({ action: 'drop', rule: -1 }), []);
