/**
 * FirewallEngine: sys-moat's packet path, sans-IO. Frames come in from the uplink (link 0)
 * or a client link, are checked, tracked, translated and handed to a FrameSink; every
 * decision is counted. The hot path (an established flow) reads through views, builds a
 * numeric key in a reused Uint32Array, rewrites the frame in place and allocates nothing.
 *
 * Behaviour follows the Linux sys-firewall as Qubes configures it (qubes-core-agent-linux
 * network/qubes-ipv4.nft, qubes-ipv6.nft, qubesagent/firewall.py; the files and commits are
 * in docs/firewall-behaviour.md):
 * masquerade to the uplink address, nf_conntrack timeouts, client-to-client and unsolicited
 * inbound dropped, `reject with icmp admin-prohibited` for rule drops, pings to the firewall
 * answered and everything else to it rejected host-prohibited, anti-spoofing in both
 * directions against the attached clients and /connected-ips(6), DNAT of the virtual DNS
 * servers like qubes-setup-dnat-to-ns, and conntrack purge after a rule change.
 *
 * This file is the public face: configuration, the entry of each frame, timers and stats.
 * The packet path is in the files of its stages (iface.ts lists them).
 */
import type { DnsTransportEndpoint } from '../dns/types.ts';
import type { RuleSet } from '../rules/types.ts';
import { read32 } from '../wire/checksum.ts';
import { formatMac } from '../wire/ethernet.ts';
import { fromClient, fromUplink } from './classify.ts';
import {
  type ClientConfig,
  type DecisionLogEntry,
  type DnsConfig,
  type EngineConfig,
  type FrameMeta,
  type FrameSink,
  UPLINK,
  type UplinkConfig,
} from './config.ts';
import type { Conntrack } from './conntrack.ts';
import { evaluateFlow } from './forward.ts';
import { bytesEqual, Iface, V_DROPPED, V_REJECTED, type Verdict } from './iface.ts';
import {
  C_ACCEPTED,
  C_DROP_BASE,
  C_DROPPED,
  C_RX_BYTES,
  C_RX_PACKETS,
  C_TX_BYTES,
  C_TX_PACKETS,
  ClientLink,
  type Link,
} from './links.ts';
import { DROP_REASONS, R_UNKNOWN_LINK } from './reasons.ts';
import { flushResolver } from './resolver-traffic.ts';

export { V_DROPPED, V_FORWARDED, V_LOCAL, V_REJECTED, type Verdict } from './iface.ts';

/** Conntrack slots examined for expiry per tick. */
const SWEEP_BUDGET = 4096;

export interface LinkStats {
  link: number;
  name: string;
  rxPackets: number;
  rxBytes: number;
  txPackets: number;
  txBytes: number;
  accepted: number;
  dropped: number;
  dropsByReason: Record<string, number>;
  rules?: { rule: number | 'policy'; packets: number; bytes: number }[];
  failClosedReason?: string | undefined;
  fragmentTrains: number;
  /** Fragments waiting for their first fragment, and those that expired waiting. */
  fragmentsHeld: number;
  fragmentsLostUnclaimed: number;
}

export interface EngineStats {
  conntrack: { size: number; max: number; evictions: number; expirations: number };
  icmpRateLimited: number;
  logSuppressed: number;
  links: LinkStats[];
}

export class FirewallEngine {
  readonly conntrack: Conntrack;
  private readonly iface: Iface;
  private readonly clientListeners = new Set<() => void>();
  private dnsUpstream: readonly Uint8Array[];

  constructor(config: EngineConfig, sink: FrameSink) {
    this.iface = new Iface(config, sink);
    this.conntrack = this.iface.conntrack;
    this.dnsUpstream = (config.dns?.upstream ?? []).map((a) => a.slice());
  }

  /**
   * Calls `listener` after a client is added or removed and after `setDns` (ClientRules
   * applies a tree that arrived before its vif, and follows the DNS servers). Returns an
   * unsubscribe function.
   */
  onConfigChange(listener: () => void): () => void {
    this.clientListeners.add(listener);
    return () => this.clientListeners.delete(listener);
  }

  private configChanged(): void {
    for (const l of [...this.clientListeners]) l();
  }

  /** The firewall's own DNS servers (`dns.upstream`: `/qubes-primary-dns`, `/qubes-secondary-dns`). */
  get dnsServers(): readonly Uint8Array[] {
    return this.dnsUpstream;
  }

  /**
   * The link of the attached client whose real address (the `/qubes-firewall/<ip>` source:
   * the backend's IPv4, not a mapped visible one, or its IPv6) is `address`.
   */
  clientLink(address: Uint8Array): number | undefined {
    const s = this.iface;
    for (const c of s.clients) {
      if (!c) continue;
      if (
        address.length === 4
          ? bytesEqual(c.realIp4, 0, address, 4)
          : c.ip6 && bytesEqual(c.ip6, 0, address, 16)
      )
        return c.link;
    }
    return undefined;
  }

  // ---------------------------------------------------------------- configuration

  /** Attaches a client vif; returns its link number. */
  addClient(config: ClientConfig): number {
    const s = this.iface;
    const link = s.clients.length;
    const visible = config.visibleIp4 ?? config.ip4;
    const mapped = config.visibleIp4 !== undefined && read32(config.visibleIp4, 0) !== read32(config.ip4, 0);
    const client = new ClientLink(
      link,
      config.name ?? `client${link}`,
      {
        mac: config.mac,
        realIp4: config.ip4,
        visibleIp4: visible,
        gateway4: config.visibleGateway4 ?? s.gw4Bytes,
        // Linux vif-qubes-nat.sh disables IPv6 for clients with a mapped address
        ip6: mapped ? undefined : config.ip6,
        gatewayMac: s.gwMac,
        gateway6: s.gw6 ?? s.gwLinkLocal,
      },
      s.fragmentTrains,
    );
    s.clients.push(client);
    s.links.push(client);
    s.clientByIp4.set(client.ip4 | 0, link);
    s.updateInternal();
    this.configChanged();
    return link;
  }

  /** Detaches a client and forgets its connections. */
  removeClient(link: number): void {
    const s = this.iface;
    const c = s.clients[link];
    if (!c) return;
    const ct = this.conntrack;
    ct.removeWhere((e) => ct.link[e] === link);
    s.clientByIp4.delete(c.ip4 | 0);
    s.clients[link] = undefined;
    s.links[link] = undefined;
    s.updateInternal();
    this.configChanged();
  }

  /**
   * Logs which rule decided each new flow (accept or drop, rule number or policy), rate-limited
   * apart from the drop log; undefined turns it off. For a debug log level: off, the packet
   * path only tests that it is unset.
   */
  setDecisionLog(log: ((entry: DecisionLogEntry) => void) | undefined): void {
    this.iface.decisionLog = log;
  }

  /**
   * Swaps the client's rule set (atomically: the next packet sees only the new set) and
   * removes the tracked connections the new set would not admit, as Linux's qubes-firewall
   * purges conntrack after applying rules. Undefined means drop-all.
   */
  setRuleSet(link: number, ruleSet: RuleSet | undefined): number {
    const s = this.iface;
    const c = s.clients[link];
    if (!c) return 0;
    c.setRuleSet(ruleSet);
    const ct = this.conntrack;
    return ct.removeWhere((e) => {
      if (ct.link[e] !== link) return false;
      const slot = evaluateFlow(s, c, e);
      if (slot < 0) return true;
      ct.rule[e] = slot;
      return false;
    });
  }

  /**
   * A new uplink (the netvm changed or restarted: `/qubes-gateway`, our `/qubes-ip`, the
   * netfront MAC or MTU). The engine keeps its clients and rules; if our uplink address
   * changed, every tracked flow is cut (their NAT mappings name the old address), as Linux
   * drops masqueraded connections when the address goes away. Mirage never recovers here.
   */
  setUplink(config: UplinkConfig): number {
    const s = this.iface;
    const up = s.uplink;
    const old4 = up.ip4;
    const old6 = up.ip6;
    up.configure(config);
    s.writer.reserve(up.mtu + 64);
    const new6 = up.ip6;
    const same6 =
      old6 === undefined ? new6 === undefined : new6 !== undefined && bytesEqual(old6, 0, new6, 16);
    const cut = old4 !== up.ip4 || !same6 ? this.conntrack.removeWhere(() => true) : 0;
    s.updateInternal();
    return cut;
  }

  /** `/connected-ips` and `/connected-ips6`: every client address, running or not. */
  setConnectedIps(ips4: readonly Uint8Array[], ips6: readonly Uint8Array[] = []): void {
    const s = this.iface;
    s.connected4 = new Set(ips4.filter((a) => a.length >= 4).map((a) => read32(a, 0) | 0));
    s.connected6 = ips6.filter((a) => a.length >= 16).map((a) => a.slice(0, 16));
    s.updateInternal();
  }

  /** Replaces the DNS DNAT (when QubesDB's DNS keys change); existing flows keep theirs. */
  setDns(dns: DnsConfig | undefined): void {
    this.iface.setDns(dns);
    this.dnsUpstream = (dns?.upstream ?? []).map((a) => a.slice());
    this.configChanged();
  }

  attachResolver(endpoint: DnsTransportEndpoint): void {
    this.iface.resolver = endpoint;
    flushResolver(this.iface);
  }

  /**
   * Whether the resolver may use a local port: no NATed flow uses it. Pass it to the
   * resolver as `portAvailable`; NAT in turn avoids the ports the resolver sends from.
   */
  localPortAvailable(transport: 'udp' | 'tcp', port: number): boolean {
    if (port < 0 || port > 0xffff) return false;
    return this.conntrack.localPortUse[(transport === 'tcp' ? 65536 : 0) + port] === 0;
  }

  /** Advances time: expires connections, runs the resolver's timers and sends what it queued. */
  tick(nowMs: number): void {
    const s = this.iface;
    s.now = nowMs;
    this.conntrack.now = nowMs;
    this.conntrack.sweep(nowMs, SWEEP_BUDGET);
    if (s.resolver) {
      s.resolver.tick(nowMs);
      flushResolver(s);
    }
  }

  /** Asks for the uplink gateway's MAC (Qubes uses fe:ff:ff:ff:ff:ff until an answer arrives). */
  solicitGateway(): void {
    const s = this.iface;
    s.emit(s.uplink, s.writer.arpRequest(s.uplink, s.uplink.gateway4));
  }

  // ---------------------------------------------------------------- the packet path

  /**
   * One frame from `link`. The frame is rewritten in place when forwarded; `meta` travels
   * with it. Never throws on packet content.
   */
  receive(link: number, buf: Uint8Array, off: number, len: number, meta: FrameMeta): Verdict {
    const s = this.iface;
    const errors = s.icmpErrorsSent;
    const v = this.receiveOne(link, buf, off, len, meta);
    if (s.releaseLink) this.releaseHeld();
    return v === V_DROPPED && s.icmpErrorsSent !== errors ? V_REJECTED : v;
  }

  /** Runs the fragments that waited for the first fragment just forwarded. */
  private releaseHeld(): void {
    const s = this.iface;
    const link = s.releaseLink!;
    s.releaseLink = undefined;
    if (s.links[link.link] !== link) return;
    link.held.release(s.releaseKey, s.now, (b, len, meta) => {
      this.receiveOne(link.link, b, 0, len, meta);
    });
    s.releaseLink = undefined;
  }

  private receiveOne(link: number, buf: Uint8Array, off: number, len: number, meta: FrameMeta): Verdict {
    const s = this.iface;
    if (link === UPLINK) {
      const up = s.uplink;
      up.counters[C_RX_PACKETS]! += 1;
      up.counters[C_RX_BYTES]! += len;
      return fromUplink(s, buf, off, len, meta);
    }
    const c = s.clients[link];
    if (!c) {
      s.uplink.counters[C_DROP_BASE + R_UNKNOWN_LINK]! += 1;
      return V_DROPPED;
    }
    c.counters[C_RX_PACKETS]! += 1;
    c.counters[C_RX_BYTES]! += len;
    return fromClient(s, c, buf, off, len, meta);
  }

  // ---------------------------------------------------------------- counters

  stats(): EngineStats {
    const s = this.iface;
    const linkStats = (l: Link): LinkStats => {
      const counters = l.counters;
      const byReason: Record<string, number> = {};
      DROP_REASONS.forEach((r, i) => {
        const v = counters[C_DROP_BASE + i]!;
        if (v > 0) byReason[r] = v;
      });
      const out: LinkStats = {
        link: l.link,
        name: l.name,
        rxPackets: counters[C_RX_PACKETS]!,
        rxBytes: counters[C_RX_BYTES]!,
        txPackets: counters[C_TX_PACKETS]!,
        txBytes: counters[C_TX_BYTES]!,
        accepted: counters[C_ACCEPTED]!,
        dropped: counters[C_DROPPED]!,
        dropsByReason: byReason,
        fragmentTrains: l.fragments.count(s.now),
        fragmentsHeld: l.held.count(s.now),
        fragmentsLostUnclaimed: l.held.lost,
      };
      if (l instanceof ClientLink) {
        const numbers = l.ruleSet?.ruleNumbers ?? [];
        out.rules = [...numbers, -1].map((r, i) => ({
          rule: r < 0 ? ('policy' as const) : r,
          packets: l.ruleCounters[i * 2]!,
          bytes: l.ruleCounters[i * 2 + 1]!,
        }));
        out.failClosedReason = l.ruleSet ? l.ruleSet.failClosedReason : 'no rule set';
      }
      return out;
    };
    const links: LinkStats[] = [];
    for (const l of s.links) if (l) links.push(linkStats(l));
    const ct = this.conntrack;
    return {
      conntrack: { size: ct.size, max: ct.capacity, evictions: ct.evictions, expirations: ct.expirations },
      icmpRateLimited: s.icmpLimiter.limited,
      logSuppressed: s.logSuppressedTotal,
      links,
    };
  }

  /** The uplink gateway MAC in use (learned from ARP/ND, or the Qubes default). */
  get uplinkGatewayMac(): string {
    return formatMac(this.iface.uplink.peerMac);
  }
}
