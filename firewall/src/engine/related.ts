/**
 * ICMP errors about tracked flows (conntrack RELATED): from the uplink (dir 1) an error goes
 * back to the client that owns the flow with the outer destination and the embedded source
 * restored; from a client (dir 0), an error about a reply it received goes out with our
 * address. The embedded headers are rewritten too (Linux nf_nat_icmp_reply_translation)
 * and the ICMP checksum recomputed.
 */
import { applyDelta, finish, pseudoSum6, read16, sumWords, wordDelta, write16 } from '../wire/checksum.ts';
import { ICMP_CHECKSUM, ICMP_ECHO_ID, ICMP_HEADER_LEN, icmpQueryOf } from '../wire/icmpv4.ts';
import { icmp6QueryOf } from '../wire/icmpv6.ts';
import {
  IP4_CHECKSUM,
  IP4_DST,
  IP4_FLAGS_FRAG,
  IP4_FRAG_MASK,
  IP4_MIN_HEADER,
  IP4_PROTO,
  IP4_SRC,
  IP4_VER_IHL,
  IPPROTO_ICMPV6,
  IPPROTO_TCP,
  IPPROTO_UDP,
} from '../wire/ipv4.ts';
import {
  IP6_DST,
  IP6_EXT_AH,
  IP6_EXT_DEST_OPTS,
  IP6_EXT_FRAGMENT,
  IP6_EXT_HOP_BY_HOP,
  IP6_EXT_ROUTING,
  IP6_FRAG_HEADER_LEN,
  IP6_FRAG_OFFSET_FLAGS,
  IP6_HEADER_LEN,
  IP6_NEXT_HEADER,
  IP6_SRC,
} from '../wire/ipv6.ts';
import { TCP_CHECKSUM, TCP_DST_PORT, TCP_SRC_PORT } from '../wire/tcp.ts';
import { UDP_CHECKSUM } from '../wire/udp.ts';
import type { FrameMeta } from './config.ts';
import { K_DST, K_PORTS, K_SRC } from './conntrack.ts';
import { toClient, toUplink } from './egress.ts';
import type { Iface, Verdict } from './iface.ts';
import type { Link } from './links.ts';
import { patchWord } from './nat.ts';
import { ICMP_OTHER, ICMP_QUERY, ICMP_QUERY_REPLY, type Packet } from './packet.ts';
import { R_ICMP_UNMATCHED, R_TTL } from './reasons.ts';

/** What an ICMP error must quote of the transport header: ports, or the echo id (RFC 792). */
const QUOTED_L4_MIN = 8;
/** The shortest IPv6 extension header (RFC 8200 §4: lengths count 8-octet units). */
const IP6_EXT_MIN_LEN = 8;
/** Most IPv6 extension headers walked in a quoted packet. */
const QUOTED_EXT_HEADERS = 8;

/** The ICMP error p, received on `link` travelling in `dir`, about a tracked flow. */
export function forwardRelatedIcmp(
  iface: Iface,
  p: Packet,
  link: Link,
  meta: FrameMeta,
  dir: 0 | 1,
): Verdict {
  const buf = p.buf;
  const v4 = p.family === 4;
  const inner = p.l4 + ICMP_HEADER_LEN;
  const end = p.ip + p.ipLen;
  const avail = end - inner;
  const ihl = v4 ? (buf[inner + IP4_VER_IHL]! & 0xf) * 4 : IP6_HEADER_LEN;
  if (
    avail < ihl + QUOTED_L4_MIN ||
    (v4 && (buf[inner]! >> 4 !== 4 || ihl < IP4_MIN_HEADER)) ||
    (!v4 && buf[inner]! >> 4 !== 6)
  )
    return iface.drop(p, link, R_ICMP_UNMATCHED);
  let iproto = v4 ? buf[inner + IP4_PROTO]! : buf[inner + IP6_NEXT_HEADER]!;
  const isrc = inner + (v4 ? IP4_SRC : IP6_SRC);
  const idst = inner + (v4 ? IP4_DST : IP6_DST);
  let il4 = inner + ihl;
  if (v4 && (read16(buf, inner + IP4_FLAGS_FRAG) & IP4_FRAG_MASK) !== 0)
    return iface.drop(p, link, R_ICMP_UNMATCHED);
  // the quoted IPv6 packet's extension headers, as far as the quote reaches
  for (let n = 0; !v4 && n < QUOTED_EXT_HEADERS; n++) {
    if (
      iproto !== IP6_EXT_HOP_BY_HOP &&
      iproto !== IP6_EXT_ROUTING &&
      iproto !== IP6_EXT_DEST_OPTS &&
      iproto !== IP6_EXT_FRAGMENT &&
      iproto !== IP6_EXT_AH
    )
      break;
    if (il4 + IP6_EXT_MIN_LEN > end) return iface.drop(p, link, R_ICMP_UNMATCHED);
    if (iproto === IP6_EXT_FRAGMENT && (read16(buf, il4 + IP6_FRAG_OFFSET_FLAGS) & 0xfff8) !== 0)
      return iface.drop(p, link, R_ICMP_UNMATCHED);
    const hlen =
      iproto === IP6_EXT_FRAGMENT
        ? IP6_FRAG_HEADER_LEN
        : iproto === IP6_EXT_AH
          ? (buf[il4 + 1]! + 2) * 4
          : (buf[il4 + 1]! + 1) * 8;
    iproto = buf[il4]!;
    il4 += hlen;
  }
  if (il4 + QUOTED_L4_MIN > end) return iface.drop(p, link, R_ICMP_UNMATCHED);
  let sp = 0;
  let dp = 0;
  let kind = ICMP_OTHER;
  if (iproto === IPPROTO_TCP || iproto === IPPROTO_UDP) {
    sp = read16(buf, il4 + TCP_SRC_PORT);
    dp = read16(buf, il4 + TCP_DST_PORT);
  } else if (iproto === p.icmpProto) {
    // keyed as Packet keys them: id and query type
    const t = buf[il4]!;
    const q = v4 ? icmpQueryOf(t) : icmp6QueryOf(t);
    if (q === t) {
      sp = read16(buf, il4 + ICMP_ECHO_ID);
      dp = q;
      kind = ICMP_QUERY;
    } else if (q >= 0) {
      sp = q;
      dp = read16(buf, il4 + ICMP_ECHO_ID);
      kind = ICMP_QUERY_REPLY;
    } else return iface.drop(p, link, R_ICMP_UNMATCHED);
  }
  // the embedded packet travelled the other way: its tuple reversed is the flow's tuple
  const k = iface.scratchKey;
  p.fillKey(k, iproto, idst, isrc, dp, sp);
  const ct = iface.conntrack;
  const e = ct.lookup(dir, k, 0);
  if (e < 0) return iface.drop(p, link, R_ICMP_UNMATCHED);
  const c = iface.clients[ct.link[e]!];
  if (!c || (dir === 0 && c !== link)) return iface.drop(p, link, R_ICMP_UNMATCHED);
  if (p.hopLimit <= 1) return iface.drop(p, link, R_TTL);
  // outer header: only the address on our side changes
  const keys = ct.keys;
  const ko = ct.keyOffset(e, 0);
  const kr = ct.keyOffset(e, 1);
  const words = v4 ? 1 : 4;
  let d = 0;
  for (let i = 0; i < words; i++) {
    if (dir === 1) d += patchWord(buf, p.dst + i * 4, keys[ko + K_SRC + i]!);
    else d += patchWord(buf, p.src + i * 4, keys[kr + K_DST + i]!);
  }
  if (v4 && d !== 0) applyDelta(buf, p.ip + IP4_CHECKSUM, d, false);
  // embedded header: the same rewrite as the original packet's direction
  const target = dir === 1 ? ko : kr; // the tuple to restore, as sent
  let idelta = 0;
  for (let i = 0; i < words; i++) {
    idelta += patchWord(buf, isrc + i * 4, keys[target + K_SRC + i]!);
    idelta += patchWord(buf, idst + i * 4, keys[target + K_DST + i]!);
  }
  if (v4 && idelta !== 0) applyDelta(buf, inner + IP4_CHECKSUM, idelta, false);
  const ports = keys[target + K_PORTS]!;
  const wantSp = ports >>> 16;
  const wantDp = ports & 0xffff;
  // the embedded transport header and its checksum, as far as the quote reaches
  let pd = 0;
  let csumAt = -1;
  let pseudo = true;
  if (iproto === IPPROTO_TCP || iproto === IPPROTO_UDP) {
    pd +=
      wordDelta(read16(buf, il4 + TCP_SRC_PORT), wantSp) + wordDelta(read16(buf, il4 + TCP_DST_PORT), wantDp);
    write16(buf, il4 + TCP_SRC_PORT, wantSp);
    write16(buf, il4 + TCP_DST_PORT, wantDp);
    csumAt = il4 + (iproto === IPPROTO_TCP ? TCP_CHECKSUM : UDP_CHECKSUM);
    if (iproto === IPPROTO_UDP && csumAt + 2 <= end && read16(buf, csumAt) === 0 && v4) csumAt = -1;
  } else if (kind !== ICMP_OTHER) {
    const want = kind === ICMP_QUERY ? wantSp : wantDp;
    pd += wordDelta(read16(buf, il4 + ICMP_ECHO_ID), want);
    write16(buf, il4 + ICMP_ECHO_ID, want);
    csumAt = il4 + ICMP_CHECKSUM;
    pseudo = !v4;
  }
  if (csumAt >= 0 && csumAt + 2 <= end) {
    const delta = (pseudo ? idelta : 0) + pd;
    if (delta !== 0) applyDelta(buf, csumAt, delta, iproto === IPPROTO_UDP);
  }
  // the outer ICMP checksum covers everything rewritten above
  const icmpLen = p.l4Len;
  write16(buf, p.l4 + ICMP_CHECKSUM, 0);
  const sum = v4
    ? finish(sumWords(buf, p.l4, icmpLen, 0))
    : finish(sumWords(buf, p.l4, icmpLen, pseudoSum6(buf, p.ip, IPPROTO_ICMPV6, icmpLen)));
  write16(buf, p.l4 + ICMP_CHECKSUM, sum);
  p.decrementHopLimit();
  return dir === 1 ? toClient(iface, p, c, meta) : toUplink(iface, p, c, meta);
}
