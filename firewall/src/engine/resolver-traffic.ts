/**
 * The firewall's own resolver on the uplink: its datagrams and segments leave from our
 * uplink address, and what comes back to the ports it sends from is handed to it. NAT keeps
 * off those ports while the resolver uses them.
 */
import type { DnsPacketIn } from '../dns/types.ts';
import { IPPROTO_TCP, IPPROTO_UDP } from '../wire/ipv4.ts';
import { parseTcp } from '../wire/tcp.ts';
import { UDP_HEADER_LEN } from '../wire/udp.ts';
import type { Iface } from './iface.ts';
import type { Packet } from './packet.ts';

/** How long a resolver port stays reserved against NAT after its last packet. */
export const OWN_PORT_HOLD_MS = 60_000;

/** Sends what the resolver has queued. */
export function flushResolver(iface: Iface): void {
  const r = iface.resolver;
  if (!r) return;
  const up = iface.uplink;
  for (const packet of r.takeOutgoing()) {
    const v6 = packet.server.length === 16;
    if (v6 ? !up.ip6 : packet.server.length !== 4) continue;
    const own = packet.transport === 'udp' ? iface.ownUdp : iface.ownTcp;
    own[packet.localPort & 0xffff] = iface.now + OWN_PORT_HOLD_MS;
    const n = iface.writer.transport(up, v6 ? up.ip6! : up.own4, packet);
    if (n > 0) iface.emit(up, n);
  }
}

/** Hands p (from the uplink, matching no flow) to the resolver if it is for one of its ports. */
export function deliverToResolver(iface: Iface, p: Packet): boolean {
  const r = iface.resolver!;
  const proto = p.proto;
  if (proto !== IPPROTO_UDP && proto !== IPPROTO_TCP) return false;
  const own = proto === IPPROTO_UDP ? iface.ownUdp : iface.ownTcp;
  if (!(own[p.dport]! > iface.now)) return false;
  const buf = p.buf;
  const server = buf.slice(p.src, p.src + (p.family === 4 ? 4 : 16));
  let packet: DnsPacketIn;
  if (proto === IPPROTO_UDP) {
    const payload = buf.slice(p.l4 + UDP_HEADER_LEN, p.l4 + p.udp.length);
    packet = { transport: 'udp', server, serverPort: p.sport, localPort: p.dport, payload };
  } else {
    const t = parseTcp(buf, p.l4, p.l4Len);
    if (typeof t === 'string') return false;
    const payload = buf.slice(p.l4 + p.tcp.headerLen, p.l4 + p.l4Len);
    const { seq, ack, flags, window } = t;
    packet = {
      transport: 'tcp',
      server,
      serverPort: p.sport,
      localPort: p.dport,
      seq,
      ack,
      flags,
      window,
      payload,
    };
  }
  const mine = r.deliver(packet, iface.now);
  flushResolver(iface);
  return mine;
}
