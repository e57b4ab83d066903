/**
 * Network address translation: the reply tuple of a new flow (our uplink address, the
 * client's port when free, the DNAT of the virtual DNS servers) and the in-place rewrite
 * of each packet to its flow's tuple, checksums kept right by RFC 1624 updates.
 */
import { applyDelta, applyPartialDelta, read16, read32, write16, write32 } from '../wire/checksum.ts';
import { ICMP_CHECKSUM, ICMP_ECHO_ID } from '../wire/icmpv4.ts';
import { IP4_CHECKSUM, IPPROTO_TCP, IPPROTO_UDP } from '../wire/ipv4.ts';
import { TCP_CHECKSUM, TCP_DST_PORT, TCP_SRC_PORT } from '../wire/tcp.ts';
import { UDP_CHECKSUM } from '../wire/udp.ts';
import { K_DST, K_PORTS, K_SRC, KEY_WORDS } from './conntrack.ts';
import { bytesEqual, type Iface } from './iface.ts';
import { FRAG_LATER, ICMP_OTHER, ICMP_QUERY, type Packet } from './packet.ts';

/** The DNAT target; undefined: no redirect; null: a virtual DNS address with no upstream (drop). */
export function dnsRedirect(iface: Iface, p: Packet): Uint8Array | undefined | null {
  if ((p.proto !== IPPROTO_UDP && p.proto !== IPPROTO_TCP) || p.dport !== 53) return undefined;
  const n = p.family === 4 ? 4 : 16;
  for (let i = 0; i < iface.dnsVirtual.length; i++) {
    const v = iface.dnsVirtual[i]!;
    if (v.length === n && bytesEqual(p.buf, p.dst, v, n)) return iface.dnsTarget[i] ?? null;
  }
  return undefined;
}

/**
 * Starts the reply tuple in p.key[KEY_WORDS..]: the packet's own tuple reversed, from
 * `redirect` (a DNAT target) or the packet's destination, to our uplink address. The port
 * word is left to pickNatPort.
 */
export function startReplyTuple(iface: Iface, p: Packet, redirect: Uint8Array | undefined): void {
  const k = p.key;
  const r = KEY_WORDS;
  const up = iface.uplink;
  k[r] = k[0]!;
  for (let i = 0; i < 4; i++) {
    k[r + K_SRC + i] = redirect ? wordOf(redirect, i) : k[K_DST + i]!;
    k[r + K_DST + i] = p.family === 4 ? (i === 0 ? up.ip4 : 0) : wordOf(up.ip6!, i);
  }
}

/**
 * Chooses the reply tuple's port: the client's own source port (or echo id) when that
 * tuple is free, else a random one from Linux's range for the port's class
 * (nf_nat_l4proto_unique_tuple: <512, 600-1023, >=1024). False when none is free.
 */
export function pickNatPort(iface: Iface, p: Packet): boolean {
  const k = p.key;
  const r = KEY_WORDS;
  const proto = p.proto;
  const ct = iface.conntrack;
  if (proto !== IPPROTO_TCP && proto !== IPPROTO_UDP && p.sport === 0 && p.icmpType < 0) {
    k[r + K_PORTS] = 0;
    return ct.lookup(1, k, r) < 0;
  }
  const isIcmp = p.icmpType >= 0;
  // the remote end's port, or an ICMP query's type: kept, only our side's port is chosen
  const remotePort = p.dport;
  const own = proto === IPPROTO_TCP ? iface.ownTcp : proto === IPPROTO_UDP ? iface.ownUdp : undefined;
  let port = p.sport;
  let lo = 1024;
  let span = 65536 - 1024;
  if (isIcmp) {
    lo = 0;
    span = 65536;
  } else if (port < 512) {
    lo = 1;
    span = 511;
  } else if (port < 1024) {
    lo = 600;
    span = 424;
  }
  for (let attempt = 0; attempt < 128; attempt++) {
    if (attempt > 0) port = lo + (iface.random() % span);
    if (own && own[port]! > iface.now) continue;
    k[r + K_PORTS] = ((remotePort << 16) | port) >>> 0;
    if (ct.lookup(1, k, r) < 0) return true;
  }
  return false;
}

/**
 * Rewrites p's addresses and ports to the reverse of tuple `dir` of entry e (dir 1: toward
 * the uplink; dir 0: toward the client), keeping the IPv4 header checksum and the transport
 * checksum right by RFC 1624 updates. A checksum-blank frame (`partial`) gets the address
 * change folded into its partial pseudo-header sum and no port change.
 */
export function rewrite(iface: Iface, p: Packet, e: number, dir: 0 | 1, partial: boolean): void {
  const buf = p.buf;
  const keys = iface.conntrack.keys;
  const ko = iface.conntrack.keyOffset(e, dir);
  let addrDelta = 0;
  const words = p.family === 4 ? 1 : 4;
  for (let i = 0; i < words; i++) {
    addrDelta += patchWord(buf, p.src + i * 4, keys[ko + K_DST + i]!);
    addrDelta += patchWord(buf, p.dst + i * 4, keys[ko + K_SRC + i]!);
  }
  if (p.family === 4 && addrDelta !== 0) applyDelta(buf, p.ip + IP4_CHECKSUM, addrDelta, false);
  if (p.frag === FRAG_LATER) return;
  const ports = keys[ko + K_PORTS]!;
  const newSport = ports & 0xffff;
  const newDport = ports >>> 16;
  const o = p.l4;
  const proto = p.proto;
  if (proto === IPPROTO_TCP || proto === IPPROTO_UDP) {
    const at = o + (proto === IPPROTO_TCP ? TCP_CHECKSUM : UDP_CHECKSUM);
    if (proto === IPPROTO_UDP && p.family === 4 && read16(buf, at) === 0 && !partial) {
      write16(buf, o + TCP_SRC_PORT, newSport);
      write16(buf, o + TCP_DST_PORT, newDport);
      return;
    }
    const portDelta = patchPort(buf, o + TCP_SRC_PORT, newSport) + patchPort(buf, o + TCP_DST_PORT, newDport);
    if (partial) {
      if (addrDelta !== 0) applyPartialDelta(buf, at, addrDelta);
    } else if (addrDelta + portDelta !== 0) {
      applyDelta(buf, at, addrDelta + portDelta, proto === IPPROTO_UDP);
    }
    return;
  }
  if (p.icmpType >= 0) {
    // ICMPv6 sums the pseudo-header, ICMPv4 does not
    let d = p.family === 6 ? addrDelta : 0;
    if (p.icmpKind !== ICMP_OTHER)
      d += patchPort(buf, o + ICMP_ECHO_ID, p.icmpKind === ICMP_QUERY ? newSport : newDport);
    if (d !== 0) applyDelta(buf, o + ICMP_CHECKSUM, d, false);
  }
}

/** Writes a 32-bit word if it differs; returns its checksum delta. */
export function patchWord(buf: Uint8Array, off: number, word: number): number {
  const old = read32(buf, off);
  if (old === word) return 0;
  write32(buf, off, word);
  return (~(old >>> 16) & 0xffff) + (word >>> 16) + (~old & 0xffff) + (word & 0xffff);
}

/** Writes a 16-bit word (a port or an id) if it differs; returns its checksum delta. */
export function patchPort(buf: Uint8Array, off: number, word: number): number {
  const old = read16(buf, off);
  if (old === word) return 0;
  write16(buf, off, word);
  return (~old & 0xffff) + word;
}

function wordOf(a: Uint8Array, i: number): number {
  return i * 4 + 4 <= a.length ? read32(a, i * 4) : 0;
}
