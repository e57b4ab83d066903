/**
 * Fragments: first-fragment tracking (a first fragment's flow is remembered per link, later
 * fragments follow it, early ones wait in the link's hold), and IPv4 fragmentation of
 * packets too big for the uplink MTU.
 */
import { copyBytes, finish, read16, read32, sumWords, write16 } from '../wire/checksum.ts';
import { ETH_HEADER_LEN } from '../wire/ethernet.ts';
import {
  fillIpv4Checksum,
  IP4_FLAG_MF,
  IP4_FLAGS_FRAG,
  IP4_FRAG_MASK,
  IP4_MIN_HEADER,
  IP4_OPT_END,
  IP4_OPT_NOP,
  IP4_TOTAL_LEN,
  IP4_VER_IHL,
  IPPROTO_TCP,
  IPPROTO_UDP,
} from '../wire/ipv4.ts';
import { TCP_CHECKSUM } from '../wire/tcp.ts';
import { UDP_CHECKSUM } from '../wire/udp.ts';
import type { FrameMeta } from './config.ts';
import { TIMEOUTS_MS } from './config.ts';
import { FRAGMENT_KEY_WORDS } from './fragment-table.ts';
import { type Iface, V_FORWARDED, type Verdict } from './iface.ts';
import { C_ACCEPTED, C_TX_BYTES, C_TX_PACKETS, type Link } from './links.ts';
import { FRAG_NONE, type Packet } from './packet.ts';

/** An IPv4 option with this bit set is copied into every fragment (RFC 791). */
const IP4_OPT_COPIED = 0x80;

/** The key of p's fragment train in iface.scratchKey: [family<<8 | proto, ident, src, dst]. */
export function fragmentKey(iface: Iface, p: Packet): Uint32Array {
  const k = iface.scratchKey;
  const buf = p.buf;
  k[0] = (p.family << 8) | p.proto;
  k[1] = p.fragId >>> 0;
  const w = p.family === 4 ? 1 : 4;
  for (let i = 0; i < 4; i++) {
    k[2 + i] = i < w ? read32(buf, p.src + i * 4) : 0;
    k[6 + i] = i < w ? read32(buf, p.dst + i * 4) : 0;
  }
  return k;
}

/** A first fragment of flow e came on `link`: its later fragments follow the flow. */
export function rememberFragments(iface: Iface, p: Packet, link: Link, e: number): void {
  const k = fragmentKey(iface, p);
  link.fragments.add(k, e, iface.conntrack.generation[e]!, iface.now, TIMEOUTS_MS.fragment);
  iface.releaseKey.set(k.subarray(0, FRAGMENT_KEY_WORDS));
  iface.releaseLink = link;
}

/**
 * Sends the (translated) IPv4 packet p on the uplink in fragments that fit its MTU (RFC 791:
 * the first fragment keeps every option, later ones only the options with the copy bit).
 * A checksum-blank transport checksum is finished first: a partial sum cannot be split.
 */
export function sendInFragments(iface: Iface, p: Packet, from: Link, meta: FrameMeta): Verdict {
  const buf = p.buf;
  const ip = p.ip;
  const hl = (buf[ip + IP4_VER_IHL]! & 0xf) * 4;
  const proto = p.proto;
  if (meta.csumBlank && p.frag === FRAG_NONE && (proto === IPPROTO_TCP || proto === IPPROTO_UDP)) {
    const at = p.l4 + (proto === IPPROTO_TCP ? TCP_CHECKSUM : UDP_CHECKSUM);
    let v = finish(sumWords(buf, p.l4, p.l4Len, 0));
    if (v === 0 && proto === IPPROTO_UDP) v = 0xffff;
    write16(buf, at, v);
  }
  // options copied into every fragment
  const opts = iface.fragmentOptions;
  let optLen = 0;
  for (let i = ip + IP4_MIN_HEADER; i < ip + hl; ) {
    const t = buf[i]!;
    if (t === IP4_OPT_END) break;
    if (t === IP4_OPT_NOP) {
      i++;
      continue;
    }
    const l = buf[i + 1]!;
    if (t & IP4_OPT_COPIED) for (let j = 0; j < l; j++) opts[optLen++] = buf[i + j]!;
    i += l;
  }
  while (optLen & 3) opts[optLen++] = 0;
  const ff = read16(buf, ip + IP4_FLAGS_FRAG);
  const baseOffset = (ff & IP4_FRAG_MASK) * 8;
  const moreAfter = (ff & IP4_FLAG_MF) !== 0;
  const payload = p.ipLen - hl;
  const o = iface.writer.out;
  const up = iface.uplink;
  const at = ETH_HEADER_LEN;
  for (let pos = 0, first = true; pos < payload; first = false) {
    const fhl = first ? hl : IP4_MIN_HEADER + optLen;
    const n = Math.min((up.mtu - fhl) & ~7, payload - pos);
    const last = pos + n >= payload;
    copyBytes(o, 0, buf, p.eth, ETH_HEADER_LEN);
    copyBytes(o, at, buf, ip, IP4_MIN_HEADER);
    if (first) copyBytes(o, at + IP4_MIN_HEADER, buf, ip + IP4_MIN_HEADER, hl - IP4_MIN_HEADER);
    else copyBytes(o, at + IP4_MIN_HEADER, opts, 0, optLen);
    o[at + IP4_VER_IHL] = 0x40 | (fhl >> 2);
    write16(o, at + IP4_TOTAL_LEN, fhl + n);
    write16(o, at + IP4_FLAGS_FRAG, (last && !moreAfter ? 0 : IP4_FLAG_MF) | ((baseOffset + pos) >> 3));
    copyBytes(o, at + fhl, buf, ip + hl + pos, n);
    fillIpv4Checksum(o, at, fhl);
    const len = at + fhl + n;
    up.counters[C_TX_PACKETS]! += 1;
    up.counters[C_TX_BYTES]! += len;
    iface.sink.send(up.link, o, 0, len, iface.outMeta);
    pos += n;
  }
  from.counters[C_ACCEPTED]! += 1;
  return V_FORWARDED;
}
