/**
 * The last step of forwarding: the uplink MTU check, the Ethernet header of the next hop,
 * the hop limit, counting, and the frame handed to the sink (in fragments when it must be).
 */
import { copyBytes } from '../wire/checksum.ts';
import { ETH_DST, ETH_HEADER_LEN, ETH_SRC } from '../wire/ethernet.ts';
import { IP4_FLAG_DF, IP4_FLAGS_FRAG, IP4_VER_IHL, IPPROTO_TCP } from '../wire/ipv4.ts';
import { TCP_DATA_OFF } from '../wire/tcp.ts';
import type { FrameMeta } from './config.ts';
import { sendInFragments } from './fragments.ts';
import { sendTooBig } from './icmp-error.ts';
import type { Iface, Verdict } from './iface.ts';
import type { ClientLink, Link } from './links.ts';
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

/** Sends the translated packet p of client c out of the uplink. */
export function toUplink(iface: Iface, p: Packet, c: ClientLink, meta: FrameMeta): Verdict {
  const up = iface.uplink;
  setMacs(p, up.peerMac, up.ownMac);
  if (p.fragmentOut) return sendInFragments(iface, p, c, meta);
  return iface.forwardFrame(c, up, p, ETH_HEADER_LEN + p.ipLen, meta);
}

/** Sends the translated packet p from the uplink to client c. */
export function toClient(iface: Iface, p: Packet, c: ClientLink, meta: FrameMeta): Verdict {
  setMacs(p, c.peerMac, c.ownMac);
  return iface.forwardFrame(iface.uplink, c, p, ETH_HEADER_LEN + p.ipLen, meta);
}

function setMacs(p: Packet, dst: Uint8Array, src: Uint8Array): void {
  copyBytes(p.buf, p.eth + ETH_DST, dst, 0, 6);
  copyBytes(p.buf, p.eth + ETH_SRC, src, 0, 6);
}
