/**
 * ARP and IPv6 neighbour discovery on every link. Clients get proxy answers (Linux
 * `proxy_arp` on the vif): every address but their own is reached through us, and the
 * gateway's IPv6 addresses are answered; their replies and gratuitous messages change
 * nothing (clients' MACs come from XenStore). On the uplink we answer for our own address
 * and learn the netvm's MAC from its replies.
 */
import { ARP_OP_REPLY, ARP_OP_REQUEST } from '../wire/arp.ts';
import { read32 } from '../wire/checksum.ts';
import { ETH_SRC } from '../wire/ethernet.ts';
import { checkNeighborMessage, ND_NEIGHBOR_ADVERT, ND_NEIGHBOR_SOLICIT, ND_TARGET } from '../wire/icmpv6.ts';
import { bytesEqual, type Iface, V_LOCAL, type Verdict } from './iface.ts';
import type { ClientLink, Link } from './links.ts';
import type { Packet } from './packet.ts';
import { R_ARP_IGNORED, R_MALFORMED, R_ND_IGNORED } from './reasons.ts';

/** An ARP frame (at buf[l3], `len` bytes) from client c. */
export function clientArp(iface: Iface, p: Packet, c: ClientLink, l3: number, len: number): Verdict {
  const arp = iface.arp;
  if (arp.check(p.buf, l3, len)) return iface.drop(p, c, R_MALFORMED);
  if (arp.operation !== ARP_OP_REQUEST) return iface.drop(p, c, R_ARP_IGNORED);
  if (read32(p.buf, arp.senderIpOffset) !== c.ip4) return iface.drop(p, c, R_ARP_IGNORED);
  const target = read32(p.buf, arp.targetIpOffset);
  if (target === c.ip4 || target === 0) return iface.drop(p, c, R_ARP_IGNORED);
  const asked = p.buf.subarray(arp.targetIpOffset, arp.targetIpOffset + 4);
  iface.emit(c, iface.writer.arpReply(c.ownMac, asked, p.buf, l3));
  return V_LOCAL;
}

/** An ARP frame from the uplink: requests for our address, the netvm's replies. */
export function uplinkArp(iface: Iface, p: Packet, l3: number, len: number): Verdict {
  const arp = iface.arp;
  const up = iface.uplink;
  if (arp.check(p.buf, l3, len)) return iface.drop(p, up, R_MALFORMED);
  const op = arp.operation;
  if (op === ARP_OP_REQUEST && read32(p.buf, arp.targetIpOffset) === up.ip4) {
    iface.emit(up, iface.writer.arpReply(up.ownMac, up.own4, p.buf, l3));
    return V_LOCAL;
  }
  if (op === ARP_OP_REPLY && read32(p.buf, arp.senderIpOffset) === read32(up.gateway4, 0)) {
    up.peerMac = p.buf.slice(arp.senderMacOffset, arp.senderMacOffset + 6);
    return V_LOCAL;
  }
  return iface.drop(p, up, R_ARP_IGNORED);
}

/**
 * A neighbour solicitation or advertisement p on `link`: an NS for one of `targets` is
 * answered from our MAC on the link (`router`: with the router flag); the netvm's NA for
 * the uplink gateway teaches us its MAC; the rest is ignored.
 */
export function neighborDiscovery(
  iface: Iface,
  p: Packet,
  link: Link,
  targets: readonly (Uint8Array | undefined)[],
  router: boolean,
): Verdict {
  const buf = p.buf;
  const icmp = p.l4;
  const type = buf[icmp]!;
  const ll = checkNeighborMessage(buf, icmp, p.l4Len, p.hopLimit);
  if (typeof ll === 'string') return iface.drop(p, link, R_MALFORMED);
  if (type === ND_NEIGHBOR_SOLICIT) {
    for (const t of targets) {
      if (t && bytesEqual(buf, icmp + ND_TARGET, t, 16)) {
        const from = ll >= 0 ? ll : p.eth + ETH_SRC;
        const dstMac = buf.slice(from, from + 6);
        iface.emit(link, iface.writer.neighborAdvert(p, dstMac, link.ownMac, t, router));
        return V_LOCAL;
      }
    }
    return iface.drop(p, link, R_ND_IGNORED);
  }
  const up = iface.uplink;
  if (
    type === ND_NEIGHBOR_ADVERT &&
    link === up &&
    up.gateway6 &&
    ll >= 0 &&
    bytesEqual(buf, icmp + ND_TARGET, up.gateway6, 16)
  ) {
    up.peerMac = buf.slice(ll, ll + 6);
    return V_LOCAL;
  }
  return iface.drop(p, link, R_ND_IGNORED);
}
