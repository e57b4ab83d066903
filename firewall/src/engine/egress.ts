/**
 * The last step of forwarding: the uplink MTU check, the Ethernet header of the next hop,
 * the hop limit, counting, and the frame handed to the sink (in fragments when it must be).
 */
import { ETH_DST, ETH_HEADER_LEN, ETH_SRC, writeMac } from '../wire/ethernet.ts';
import { IP4_FLAG_DF, IP4_FLAGS_FRAG, IP4_VER_IHL, IPPROTO_TCP } from '../wire/ipv4.ts';
import { TCP_DATA_OFF } from '../wire/tcp.ts';
import { type FrameMeta, UPLINK } from './config.ts';
import { sendInFragments } from './fragments.ts';
import { sendTooBig } from './icmp-error.ts';
import { type Iface, V_FORWARDED, type Verdict } from './iface.ts';
import { C_ACCEPTED, C_TX_BYTES, C_TX_PACKETS, type ClientLink, type Link } from './links.ts';
import type { Packet } from './packet.ts';
import { R_TOO_BIG } from './reasons.ts';

/**
 * Whether p fits the uplink MTU. A DF (or IPv6) packet too big for it is dropped with
 * fragmentation needed / packet too big; one that may be fragmented is marked to leave in
 * fragments, as a Linux router does (ip_fragment). GSO frames are checked per segment
 * (Linux skb_gso_validate_network_len).
 */
export function fitsUplinkMtu(iface: Iface, p: Packet, from: Link, meta: FrameMeta): boolean {
  p.fragmentOut = false;
  if (meta.gsoType === 0 && p.ipLen <= iface.uplink.mtu) return true;
  return fitsUplinkMtuSlow(iface, p, from, meta);
}

/** fitsUplinkMtu past its common case (no GSO and within the MTU), kept apart so that it inlines. */
function fitsUplinkMtuSlow(iface: Iface, p: Packet, from: Link, meta: FrameMeta): boolean {
  const buf = p.buf;
  const mtu = iface.uplink.mtu;
  let size = p.ipLen;
  const gso = meta.gsoType !== 0 && meta.gsoSize > 0 && p.proto === IPPROTO_TCP;
  if (gso) size = p.l4 - p.ip + (buf[p.l4 + TCP_DATA_OFF]! >> 4) * 4 + meta.gsoSize;
  if (size <= mtu) return true;
  if (p.family === 4) {
    const df = (buf[p.ip + IP4_FLAGS_FRAG]! & (IP4_FLAG_DF >> 8)) !== 0;
    if (!df && !gso && mtu - (buf[p.ip + IP4_VER_IHL]! & 0xf) * 4 >= 8) {
      p.fragmentOut = true;
      return true;
    }
    iface.drop(p, from, R_TOO_BIG);
    if (df) sendTooBig(iface, p, from, mtu);
  } else {
    iface.drop(p, from, R_TOO_BIG);
    sendTooBig(iface, p, from, mtu);
  }
  return false;
}

// toUplink and toClient count by hand rather than through one function taking two Links:
// each site then sees one class of link, which keeps the hot path monomorphic.

/** Sends the translated packet p of client c out of the uplink. */
export function toUplink(iface: Iface, p: Packet, c: ClientLink, meta: FrameMeta): Verdict {
  const up = iface.uplink;
  setMacs(p, up.peerMac, up.ownMac);
  if (p.fragmentOut) return sendInFragments(iface, p, c, meta);
  const len = ETH_HEADER_LEN + p.ipLen;
  c.counters[C_ACCEPTED]! += 1;
  up.counters[C_TX_PACKETS]! += 1;
  up.counters[C_TX_BYTES]! += len;
  iface.sink.send(UPLINK, p.buf, p.eth, len, meta);
  return V_FORWARDED;
}

/** Sends the translated packet p from the uplink to client c. */
export function toClient(iface: Iface, p: Packet, c: ClientLink, meta: FrameMeta): Verdict {
  setMacs(p, c.peerMac, c.ownMac);
  const len = ETH_HEADER_LEN + p.ipLen;
  iface.uplink.counters[C_ACCEPTED]! += 1;
  c.counters[C_TX_PACKETS]! += 1;
  c.counters[C_TX_BYTES]! += len;
  iface.sink.send(c.link, p.buf, p.eth, len, meta);
  return V_FORWARDED;
}

function setMacs(p: Packet, dst: Uint8Array, src: Uint8Array): void {
  writeMac(p.buf, p.eth + ETH_DST, dst);
  writeMac(p.buf, p.eth + ETH_SRC, src);
}
