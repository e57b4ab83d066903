/**
 * FirewallEngine: sys-moat's packet path, sans-IO. Frames come in from the uplink (link 0)
 * or a client link, are checked, tracked, translated and handed to a FrameSink; every
 * decision is counted. The hot path (an established flow) reads through views, builds a
 * numeric key in a reused Uint32Array, rewrites the frame in place and allocates nothing.
 *
 * Behaviour follows the Linux sys-firewall (reference/firewall-behaviour.md §1, §4):
 * masquerade to the uplink address, nf_conntrack timeouts, client-to-client and unsolicited
 * inbound dropped, `reject with icmp admin-prohibited` for rule drops, pings to the firewall
 * answered and everything else to it rejected host-prohibited, anti-spoofing in both
 * directions against the attached clients and /connected-ips(6), DNAT of the virtual DNS
 * servers like qubes-setup-dnat-to-ns, and conntrack purge after a rule change.
 */
import type { DnsPacketIn, DnsTransportEndpoint } from '../dns/types.ts';
import type { FlowQuery, RuleDecision, RuleSet } from '../rules/types.ts';
import { formatIpv4, formatIpv6 } from '../wire/address.ts';
import { ARP_OP_REPLY, ARP_OP_REQUEST, ArpView } from '../wire/arp.ts';
import {
  applyDelta,
  applyPartialDelta,
  checksum,
  copyBytes,
  finish,
  fold,
  pseudoSum4,
  pseudoSum6,
  read16,
  read32,
  sumWords,
  wordDelta,
  write16,
  write32,
} from '../wire/checksum.ts';
import {
  ETH_HEADER_LEN,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  formatMac,
  macEquals,
} from '../wire/ethernet.ts';
import {
  ICMP_DEST_UNREACH,
  ICMP_ECHO_REQUEST,
  ICMP_TIME_EXCEEDED,
  ICMP_UNREACH_ADMIN_PROHIBITED,
  ICMP_UNREACH_FRAG_NEEDED,
  ICMP_UNREACH_HOST_PROHIBITED,
  icmpIsError,
  icmpIsQuery,
  icmpIsQueryReply,
} from '../wire/icmpv4.ts';
import {
  checkNeighborMessage,
  ICMP6_DEST_UNREACH,
  ICMP6_ECHO_REPLY,
  ICMP6_ECHO_REQUEST,
  ICMP6_PACKET_TOO_BIG,
  ICMP6_TIME_EXCEEDED,
  ICMP6_UNREACH_ADMIN_PROHIBITED,
  icmp6IsError,
  ND_NEIGHBOR_ADVERT,
  ND_NEIGHBOR_SOLICIT,
  ND_REDIRECT,
  ND_ROUTER_ADVERT,
  ND_ROUTER_SOLICIT,
  ND_TARGET,
} from '../wire/icmpv6.ts';
import {
  fillIpv4Checksum,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_TCP,
  IPPROTO_UDP,
  Ipv4View,
} from '../wire/ipv4.ts';
import { IP6_HEADER_LEN, Ipv6View } from '../wire/ipv6.ts';
import { TCP_ACKF, TCP_FIN, TCP_RST, TCP_SYN } from '../wire/tcp.ts';
import {
  C_ACCEPTED,
  C_DROP_BASE,
  C_DROPPED,
  C_RX_BYTES,
  C_RX_PACKETS,
  C_TX_BYTES,
  C_TX_PACKETS,
  ClientLink,
  COUNTER_SLOTS,
  FragmentHold,
  FragmentTable,
  HELD_FRAGMENT_BYTES,
  HELD_FRAGMENTS,
} from './client.ts';
import {
  type ClientConfig,
  type DnsConfig,
  type DropLogEntry,
  type EngineConfig,
  type FrameMeta,
  type FrameSink,
  plainMeta,
  QUBES_GATEWAY_MAC,
  TIMEOUTS_MS,
  UPLINK,
  type UplinkConfig,
} from './config.ts';
import {
  Conntrack,
  F_ASSURED,
  F_FIN_ORIG,
  F_FIN_REPLY,
  F_SEEN_REPLY,
  K_DST,
  K_PORTS,
  K_PROTO,
  K_SRC,
  KEY_WORDS,
  TCP_CLOSE,
  TCP_CLOSE_WAIT,
  TCP_ESTABLISHED,
  TCP_FIN_WAIT,
  TCP_LAST_ACK,
  TCP_SYN_RECV,
  TCP_SYN_SENT,
  TCP_TIME_WAIT,
  tcpTimeout,
} from './conntrack.ts';
import {
  buildArpReply,
  buildArpRequest,
  buildEchoReply,
  buildIcmp4Error,
  buildIcmp6Error,
  buildNeighborAdvert,
  buildTransport,
} from './emit.ts';
import { IcmpRateLimiter, TokenBucket } from './ratelimit.ts';
import {
  DROP_REASONS,
  R_ARP_IGNORED,
  R_BAD_CHECKSUM,
  R_CLIENT_TO_CLIENT,
  R_CONNTRACK_FULL,
  R_DNS_NO_UPSTREAM,
  R_FAIL_CLOSED,
  R_FRAG_UNTRACKED,
  R_ICMP_UNMATCHED,
  R_IPV6_DISABLED,
  R_MALFORMED,
  R_NAT_EXHAUSTED,
  R_ND_IGNORED,
  R_NOT_FOR_US,
  R_RULE,
  R_SPOOFED,
  R_SPOOFED_UPLINK,
  R_TCP_INVALID,
  R_TO_FIREWALL,
  R_TOO_BIG,
  R_TTL,
  R_UNKNOWN_LINK,
  R_UNSUPPORTED_ETHERTYPE,
  R_UNTRACKED_INBOUND,
} from './reasons.ts';

export const V_DROPPED = 0;
export const V_FORWARDED = 1;
/** Answered or consumed by the firewall itself (ARP, ND, ping, the resolver's packets). */
export const V_LOCAL = 2;
export type Verdict = typeof V_DROPPED | typeof V_FORWARDED | typeof V_LOCAL;

const FRAG_NONE = 0;
const FRAG_FIRST = 1;
const FRAG_LATER = 2;

/** How long a resolver port stays reserved against NAT after its last packet. */
const OWN_PORT_HOLD_MS = 60_000;
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
  private readonly sink: FrameSink;
  private now = 0;
  private rng: number;
  private readonly reject: boolean;
  private readonly perClientMax: number;

  // addresses
  private upMac: Uint8Array;
  private upGwMac: Uint8Array;
  private up4: number;
  private up4Bytes: Uint8Array;
  private upGw4Bytes: Uint8Array;
  private up6: Uint8Array | undefined;
  private upGw6: Uint8Array | undefined;
  private mtu: number;
  private readonly gw4: number;
  private readonly gw4Bytes: Uint8Array;
  private readonly gw6: Uint8Array | undefined;
  private readonly gwMac: Uint8Array;
  /** fe80::fcff:ffff:feff:ffff, the link-local address of fe:ff:ff:ff:ff:ff (EUI-64). */
  private readonly gwLinkLocal: Uint8Array;
  /** Virtual DNS addresses and their DNAT targets (undefined: no upstream, drop). */
  private readonly dnsVirtual: Uint8Array[] = [];
  private readonly dnsTarget: (Uint8Array | undefined)[] = [];

  // clients
  private readonly clients: (ClientLink | undefined)[] = [undefined];
  private readonly clientByIp4 = new Map<number, number>();
  private connected4 = new Set<number>();
  /** Every address on our side of the firewall: clients (attached or in /connected-ips) and our own. */
  private internal4 = new Set<number>();
  private connected6: Uint8Array[] = [];
  private readonly uplinkCounters = new Float64Array(COUNTER_SLOTS);
  private readonly uplinkFragments: FragmentTable;
  private readonly uplinkHeld = new FragmentHold(HELD_FRAGMENTS * 4, HELD_FRAGMENT_BYTES);
  /** A first fragment was just tracked: release its held fragments after this packet. */
  private releaseLink = -1;
  private readonly releaseKey = new Uint32Array(10);
  private readonly fragCapacity: number;

  // reused per packet
  private readonly ip4 = new Ipv4View();
  private readonly ip6 = new Ipv6View();
  private readonly arp = new ArpView();
  private readonly key = new Uint32Array(KEY_WORDS * 2);
  private readonly fkey = new Uint32Array(KEY_WORDS);
  private out: Uint8Array;
  private readonly outMeta = plainMeta();
  private readonly query: FlowQuery = {
    family: 4,
    proto: 0,
    dst: new Uint8Array(16),
    dstPort: -1,
    icmpType: -1,
    icmpCode: -1,
  };
  private readonly decision: RuleDecision = { action: 'drop', rule: -1 };
  private readonly icmpLimiter = new IcmpRateLimiter();
  // parse state of the current packet
  private pFamily: 4 | 6 = 4;
  private pIp = 0;
  private pIpLen = 0;
  private pL4 = 0;
  private pL4Len = 0;
  private pProto = 0;
  private pSrc = 0;
  private pDst = 0;
  private pSport = 0;
  private pDport = 0;
  private pIcmpType = -1;
  private pIcmpCode = -1;
  private pTcpFlags = 0;
  private pFrag = FRAG_NONE;
  private pFragId = 0;
  private pHasPorts = false;
  /** The current packet leaves in fragments (set by fitsMtu). */
  private pFragmentOut = false;
  private readonly fragOptions = new Uint8Array(40);
  /** ICMP query kind of the current packet: 0 none, 1 query (echo/timestamp request), 2 its reply. */
  private pIcmpKind = 0;

  // the resolver's own traffic
  private resolver: DnsTransportEndpoint | undefined;
  private readonly ownUdp = new Float64Array(65536);
  private readonly ownTcp = new Float64Array(65536);

  // logging
  private readonly logSink: ((e: DropLogEntry) => void) | undefined;
  private readonly logBucket: TokenBucket;
  private logSuppressed = 0;
  private logSuppressedTotal = 0;

  constructor(config: EngineConfig, sink: FrameSink) {
    this.sink = sink;
    this.conntrack = new Conntrack(config.conntrackMax ?? 16384);
    this.reject = config.rejectWithIcmp ?? true;
    this.perClientMax = config.conntrackPerClient ?? Math.max(1, Math.floor(this.conntrack.capacity / 2));
    this.rng = (config.seed ?? 0x9e3779b9) >>> 0 || 1;
    const up = config.uplink;
    this.upMac = up.mac.slice(0, 6);
    this.upGwMac = (up.gatewayMac ?? QUBES_GATEWAY_MAC).slice(0, 6);
    this.up4Bytes = up.ip4.slice(0, 4);
    this.up4 = read32(up.ip4, 0);
    this.upGw4Bytes = up.gateway4.slice(0, 4);
    this.up6 = up.ip6?.slice(0, 16);
    this.upGw6 = up.gateway6?.slice(0, 16);
    this.mtu = Math.max(68, Math.min(up.mtu ?? 1500, 65535));
    this.out = new Uint8Array(Math.max(2048, this.mtu + 64));
    this.gw4Bytes = config.clientGateway4.slice(0, 4);
    this.gw4 = read32(config.clientGateway4, 0);
    this.gw6 = config.clientGateway6?.slice(0, 16);
    this.gwMac = (config.clientGatewayMac ?? QUBES_GATEWAY_MAC).slice(0, 6);
    const ll = new Uint8Array(16);
    ll[0] = 0xfe;
    ll[1] = 0x80;
    ll.set(
      [
        this.gwMac[0]! ^ 2,
        this.gwMac[1]!,
        this.gwMac[2]!,
        0xff,
        0xfe,
        this.gwMac[3]!,
        this.gwMac[4]!,
        this.gwMac[5]!,
      ],
      8,
    );
    this.gwLinkLocal = ll;
    this.setDns(config.dns);
    this.fragCapacity = config.fragmentsPerLink ?? 64;
    this.uplinkFragments = new FragmentTable(this.fragCapacity * 4);
    this.logSink = config.log;
    const perSecond = config.logPerSecond ?? 10;
    this.logBucket = new TokenBucket(perSecond, perSecond * 2);
  }

  // ---------------------------------------------------------------- configuration

  /** Attaches a client vif; returns its link number. */
  addClient(config: ClientConfig): number {
    const link = this.clients.length;
    const visible = config.visibleIp4 ?? config.ip4;
    const mapped = config.visibleIp4 !== undefined && read32(config.visibleIp4, 0) !== read32(config.ip4, 0);
    const client = new ClientLink(
      link,
      config.name ?? `client${link}`,
      config.mac.slice(0, 6),
      config.ip4,
      visible,
      config.visibleGateway4 ?? this.gw4Bytes,
      // Linux vif-qubes-nat.sh disables IPv6 for clients with a mapped address
      mapped ? undefined : config.ip6,
      this.fragCapacity,
    );
    this.clients.push(client);
    this.clientByIp4.set(client.ip4 | 0, link);
    this.updateInternal();
    return link;
  }

  /** Detaches a client and forgets its connections. */
  removeClient(link: number): void {
    const c = this.clients[link];
    if (!c) return;
    this.purge(link, () => true);
    this.clientByIp4.delete(c.ip4 | 0);
    this.clients[link] = undefined;
    this.updateInternal();
  }

  /**
   * Swaps the client's rule set (atomically: the next packet sees only the new set) and
   * removes the tracked connections the new set would not admit, as Linux's qubes-firewall
   * purges conntrack after applying rules. Undefined means drop-all.
   */
  setRuleSet(link: number, ruleSet: RuleSet | undefined): number {
    const c = this.clients[link];
    if (!c) return 0;
    c.setRuleSet(ruleSet);
    const ct = this.conntrack;
    return this.purge(link, (e) => {
      const d = this.evaluateEntry(c, e);
      if (d < 0) return true;
      ct.rule[e] = d;
      return false;
    });
  }

  /**
   * A new uplink (the netvm changed or restarted: `/qubes-gateway`, our `/qubes-ip`, the
   * netfront MAC or MTU). The engine keeps its clients and rules; if our uplink address
   * changed, every tracked flow is cut (their NAT mappings name the old address), as Linux
   * drops masqueraded connections when the address goes away. Mirage never recovers here.
   */
  setUplink(up: UplinkConfig): number {
    const old4 = this.up4;
    const old6 = this.up6;
    this.upMac = up.mac.slice(0, 6);
    this.upGwMac = (up.gatewayMac ?? QUBES_GATEWAY_MAC).slice(0, 6);
    this.up4Bytes = up.ip4.slice(0, 4);
    this.up4 = read32(up.ip4, 0);
    this.upGw4Bytes = up.gateway4.slice(0, 4);
    this.up6 = up.ip6?.slice(0, 16);
    this.upGw6 = up.gateway6?.slice(0, 16);
    this.mtu = Math.max(68, Math.min(up.mtu ?? 1500, 65535));
    if (this.out.length < this.mtu + 64) this.out = new Uint8Array(this.mtu + 64);
    const same6 =
      old6 === undefined
        ? this.up6 === undefined
        : this.up6 !== undefined && bytesEqual(old6, 0, this.up6, 16);
    let cut = 0;
    if (old4 !== this.up4 || !same6) {
      const ct = this.conntrack;
      for (let e = 0; e < ct.capacity; e++) {
        if (ct.used[e] === 1) {
          ct.remove(e);
          cut++;
        }
      }
    }
    this.updateInternal();
    return cut;
  }

  /** `/connected-ips` and `/connected-ips6`: every client address, running or not. */
  setConnectedIps(ips4: readonly Uint8Array[], ips6: readonly Uint8Array[] = []): void {
    this.connected4 = new Set(ips4.filter((a) => a.length >= 4).map((a) => read32(a, 0) | 0));
    this.connected6 = ips6.filter((a) => a.length >= 16).map((a) => a.slice(0, 16));
    this.updateInternal();
  }

  /**
   * Rebuilds the internal address set and cuts tracked flows to addresses that became
   * internal: the fast path looks flows up before the client-to-client check, so a flow
   * must never outlive its destination turning into a client.
   */
  private updateInternal(): void {
    const s = new Set<number>([this.up4 | 0, this.gw4 | 0]);
    for (const a of this.connected4) s.add(a);
    for (const c of this.clients) if (c) s.add(c.ip4 | 0);
    this.internal4 = s;
    const ct = this.conntrack;
    const b = new Uint8Array(16);
    for (let e = 0; e < ct.capacity; e++) {
      if (ct.used[e] !== 1) continue;
      const o = e * KEY_WORDS * 2 + KEY_WORDS + K_SRC;
      if (ct.keys[o - K_SRC]! >>> 8 === 4) {
        if (s.has(ct.keys[o]! | 0)) ct.remove(e);
        continue;
      }
      for (let i = 0; i < 4; i++) write32(b, i * 4, ct.keys[o + i]!);
      if (this.isClient6(b, 0)) ct.remove(e);
    }
  }

  /** Replaces the DNS DNAT (when QubesDB's DNS keys change); existing flows keep theirs. */
  setDns(dns: DnsConfig | undefined): void {
    this.dnsVirtual.length = 0;
    this.dnsTarget.length = 0;
    if (!dns) return;
    for (const family of [4, 16]) {
      const up = dns.upstream.filter((a) => a.length === family);
      dns.virtual
        .filter((a) => a.length === family)
        .forEach((v, i) => {
          this.dnsVirtual.push(v.slice());
          this.dnsTarget.push(up.length > 0 ? up[i % up.length]!.slice() : undefined);
        });
    }
  }

  attachResolver(endpoint: DnsTransportEndpoint): void {
    this.resolver = endpoint;
    this.flushResolver();
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
    this.now = nowMs;
    this.conntrack.now = nowMs;
    this.conntrack.sweep(nowMs, SWEEP_BUDGET);
    if (this.resolver) {
      this.resolver.tick(nowMs);
      this.flushResolver();
    }
  }

  /** Asks for the uplink gateway's MAC (Qubes uses fe:ff:ff:ff:ff:ff until an answer arrives). */
  solicitGateway(): void {
    const n = buildArpRequest(this.out, this.upMac, this.up4Bytes, this.upGw4Bytes);
    this.emit(UPLINK, n);
  }

  // ---------------------------------------------------------------- the packet path

  /**
   * One frame from `link`. The frame is rewritten in place when forwarded; `meta` travels
   * with it. Never throws on packet content.
   */
  receive(link: number, buf: Uint8Array, off: number, len: number, meta: FrameMeta): Verdict {
    const v = this.receiveOne(link, buf, off, len, meta);
    if (this.releaseLink >= 0) this.releaseHeld();
    return v;
  }

  /** Runs the fragments that waited for the first fragment just forwarded. */
  private releaseHeld(): void {
    const link = this.releaseLink;
    this.releaseLink = -1;
    const hold = link === UPLINK ? this.uplinkHeld : this.clients[link]?.held;
    if (!hold) return;
    hold.release(this.releaseKey, this.now, (b, len, meta) => {
      this.receiveOne(link, b, 0, len, meta);
    });
    this.releaseLink = -1;
  }

  private receiveOne(link: number, buf: Uint8Array, off: number, len: number, meta: FrameMeta): Verdict {
    if (link === UPLINK) {
      const c = this.uplinkCounters;
      c[C_RX_PACKETS]! += 1;
      c[C_RX_BYTES]! += len;
      return this.fromUplink(buf, off, len, meta);
    }
    const client = this.clients[link];
    if (!client) {
      this.uplinkCounters[C_DROP_BASE + R_UNKNOWN_LINK]! += 1;
      return V_DROPPED;
    }
    client.counters[C_RX_PACKETS]! += 1;
    client.counters[C_RX_BYTES]! += len;
    return this.fromClient(client, buf, off, len, meta);
  }

  private fromClient(c: ClientLink, buf: Uint8Array, off: number, len: number, meta: FrameMeta): Verdict {
    this.ipBuf = buf;
    this.pIpLen = 0;
    if (len < ETH_HEADER_LEN || off + len > buf.length) return this.drop(c.link, R_MALFORMED, buf);
    // a point-to-point link: frames must be for our MAC or a group address
    if ((buf[off]! & 1) === 0 && !macEquals(buf, off, this.gwMac))
      return this.drop(c.link, R_NOT_FOR_US, buf);
    const type = read16(buf, off + 12);
    const l3 = off + ETH_HEADER_LEN;
    if (type === ETHERTYPE_IPV4) return this.clientIp4(c, buf, off, l3, len - ETH_HEADER_LEN, meta);
    if (type === ETHERTYPE_IPV6) return this.clientIp6(c, buf, off, l3, len - ETH_HEADER_LEN, meta);
    if (type === ETHERTYPE_ARP) return this.clientArp(c, buf, l3, len - ETH_HEADER_LEN);
    return this.drop(c.link, R_UNSUPPORTED_ETHERTYPE, buf);
  }

  // ---------------------------------------------------------------- ARP and ND

  private clientArp(c: ClientLink, buf: Uint8Array, l3: number, len: number): Verdict {
    if (this.arp.check(buf, l3, len)) return this.drop(c.link, R_MALFORMED, buf);
    // replies and gratuitous ARP change nothing: clients' MACs come from XenStore
    if (this.arp.operation !== ARP_OP_REQUEST) return this.drop(c.link, R_ARP_IGNORED, buf);
    if (read32(buf, l3 + 14) !== c.ip4) return this.drop(c.link, R_ARP_IGNORED, buf);
    const target = read32(buf, l3 + 24);
    // like Linux proxy_arp on the vif: every address but the client's own is reached through us
    if (target === c.ip4 || target === 0) return this.drop(c.link, R_ARP_IGNORED, buf);
    const n = buildArpReply(this.out, this.gwMac, buf, l3 + 24, buf, l3);
    this.emit(c.link, n);
    return V_LOCAL;
  }

  private uplinkArp(buf: Uint8Array, l3: number, len: number): Verdict {
    if (this.arp.check(buf, l3, len)) return this.drop(UPLINK, R_MALFORMED, buf);
    const op = this.arp.operation;
    if (op === ARP_OP_REQUEST && read32(buf, l3 + 24) === this.up4) {
      const n = buildArpReply(this.out, this.upMac, this.up4Bytes, 0, buf, l3);
      this.emit(UPLINK, n);
      return V_LOCAL;
    }
    if (op === ARP_OP_REPLY && read32(buf, l3 + 14) === read32(this.upGw4Bytes, 0)) {
      this.upGwMac = buf.slice(l3 + 8, l3 + 14);
      return V_LOCAL;
    }
    return this.drop(UPLINK, R_ARP_IGNORED, buf);
  }

  /** NS for one of `targets` is answered; other ND messages are ignored. */
  private neighbor(
    link: number,
    buf: Uint8Array,
    ethOff: number,
    targets: (Uint8Array | undefined)[],
    mac: Uint8Array,
    router: boolean,
  ): Verdict {
    const v = this.ip6;
    const icmp = v.upperOffset;
    const type = buf[icmp]!;
    const ll = checkNeighborMessage(buf, icmp, v.upperLen, v.hopLimit);
    if (typeof ll === 'string') return this.drop(link, R_MALFORMED, buf);
    if (type === ND_NEIGHBOR_SOLICIT) {
      for (const t of targets) {
        if (t && bytesEqual(buf, icmp + ND_TARGET, t, 16)) {
          const dstMac = ll >= 0 ? buf.slice(ll, ll + 6) : buf.slice(ethOff + 6, ethOff + 12);
          const n = buildNeighborAdvert(this.out, dstMac, mac, t, buf, v.off, router);
          this.emit(link, n);
          return V_LOCAL;
        }
      }
      return this.drop(link, R_ND_IGNORED, buf);
    }
    if (
      type === ND_NEIGHBOR_ADVERT &&
      link === UPLINK &&
      this.upGw6 &&
      ll >= 0 &&
      bytesEqual(buf, icmp + ND_TARGET, this.upGw6, 16)
    ) {
      this.upGwMac = buf.slice(ll, ll + 6);
      return V_LOCAL;
    }
    return this.drop(link, R_ND_IGNORED, buf);
  }

  // ---------------------------------------------------------------- IPv4 from a client

  private clientIp4(
    c: ClientLink,
    buf: Uint8Array,
    eth: number,
    l3: number,
    len: number,
    meta: FrameMeta,
  ): Verdict {
    const v = this.ip4;
    if (v.check(buf, l3, len)) return this.drop(c.link, R_MALFORMED, buf);
    if (!v.headerChecksumOk()) return this.drop(c.link, R_BAD_CHECKSUM, buf);
    const src = read32(buf, l3 + 12);
    const dst = read32(buf, l3 + 16);
    if (src !== c.ip4) return this.drop(c.link, R_SPOOFED, buf);
    if (!this.parse4(buf, l3)) return this.drop(c.link, R_MALFORMED, buf);
    if (dst === c.gateway4 || dst === this.gw4 || dst === this.up4) return this.toFirewall4(c, buf, eth, l3);
    // multicast, limited broadcast, 0/8 and loopback are never routed
    const top = dst >>> 24;
    if (top >= 224 || top === 0 || top === 127) return this.drop(c.link, R_NOT_FOR_US, buf);
    if (buf[l3 + 8]! <= 1) return this.ttlExceeded(c.link, buf, eth, c.mac, c.gateway4Bytes);
    if (!this.checkL4(meta)) return this.drop(c.link, R_BAD_CHECKSUM, buf);
    return this.forwardFromClient(c, buf, eth, meta);
  }

  /**
   * Reads the transport header of the IPv4 packet in `this.ip4` into the parse state and
   * fills `this.key` with the packet's own tuple. False when the header is unparseable.
   */
  private parse4(buf: Uint8Array, l3: number): boolean {
    const v = this.ip4;
    this.pFamily = 4;
    this.pIp = l3;
    this.pIpLen = v.totalLen;
    this.pL4 = v.payloadOffset;
    this.pL4Len = v.payloadLen;
    this.pProto = v.protocol;
    this.pSrc = l3 + 12;
    this.pDst = l3 + 16;
    const ff = v.flagsFrag;
    this.pFrag = (ff & 0x1fff) !== 0 ? FRAG_LATER : (ff & 0x2000) !== 0 ? FRAG_FIRST : FRAG_NONE;
    this.pFragId = v.ident;
    return this.parseL4(buf);
  }

  private parse6(buf: Uint8Array, l3: number): boolean {
    const v = this.ip6;
    this.pFamily = 6;
    this.pIp = l3;
    this.pIpLen = v.totalLen;
    this.pL4 = v.upperOffset;
    this.pL4Len = v.upperLen;
    this.pProto = v.upperProtocol;
    this.pSrc = l3 + 8;
    this.pDst = l3 + 24;
    this.pFrag = !v.isFragment ? FRAG_NONE : v.fragmentOffset !== 0 ? FRAG_LATER : FRAG_FIRST;
    this.pFragId = v.fragmentIdent;
    return this.parseL4(buf);
  }

  private parseL4(buf: Uint8Array): boolean {
    const o = this.pL4;
    const n = this.pL4Len;
    const proto = this.pProto;
    this.pSport = 0;
    this.pDport = 0;
    this.pIcmpType = -1;
    this.pIcmpCode = -1;
    this.pTcpFlags = 0;
    this.pHasPorts = false;
    this.pIcmpKind = 0;
    if (this.pFrag !== FRAG_LATER) {
      if (proto === IPPROTO_TCP) {
        if (n < 20) return false;
        const hl = (buf[o + 12]! >> 4) * 4;
        if (hl < 20 || hl > n) return false;
        this.pSport = read16(buf, o);
        this.pDport = read16(buf, o + 2);
        this.pTcpFlags = buf[o + 13]!;
        this.pHasPorts = true;
      } else if (proto === IPPROTO_UDP) {
        if (n < 8) return false;
        const ul = read16(buf, o + 4);
        // a first fragment's UDP length covers the whole datagram
        if (ul < 8 || (this.pFrag === FRAG_NONE && ul > n)) return false;
        this.pSport = read16(buf, o);
        this.pDport = read16(buf, o + 2);
        this.pHasPorts = true;
      } else if (proto === (this.pFamily === 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6)) {
        if (n < 8) return false;
        const t = buf[o]!;
        this.pIcmpType = t;
        this.pIcmpCode = buf[o + 1]!;
        const isQuery = this.pFamily === 4 ? icmpIsQuery(t) : t === ICMP6_ECHO_REQUEST;
        const isReply = this.pFamily === 4 ? icmpIsQueryReply(t) : t === ICMP6_ECHO_REPLY;
        if (isQuery) {
          this.pSport = read16(buf, o + 4);
          this.pIcmpKind = 1;
        } else if (isReply) {
          this.pDport = read16(buf, o + 4);
          this.pIcmpKind = 2;
        }
      }
    }
    this.fillKey(this.key, 0, buf, this.pSrc, this.pDst, this.pSport, this.pDport);
    return true;
  }

  private fillKey(
    k: Uint32Array,
    o: number,
    buf: Uint8Array,
    srcOff: number,
    dstOff: number,
    sport: number,
    dport: number,
  ): void {
    k[o + K_PROTO] = (this.pFamily << 8) | this.pProto;
    k[o + K_PORTS] = ((sport << 16) | dport) >>> 0;
    if (this.pFamily === 4) {
      k[o + K_SRC] = read32(buf, srcOff);
      k[o + K_SRC + 1] = 0;
      k[o + K_SRC + 2] = 0;
      k[o + K_SRC + 3] = 0;
      k[o + K_DST] = read32(buf, dstOff);
      k[o + K_DST + 1] = 0;
      k[o + K_DST + 2] = 0;
      k[o + K_DST + 3] = 0;
    } else {
      for (let i = 0; i < 4; i++) {
        k[o + K_SRC + i] = read32(buf, srcOff + i * 4);
        k[o + K_DST + i] = read32(buf, dstOff + i * 4);
      }
    }
  }

  /** Verifies the transport checksum unless offloaded, validated, or split by fragmentation. */
  private checkL4(meta: FrameMeta): boolean {
    if (meta.csumBlank || meta.dataValidated || this.pFrag !== FRAG_NONE) return true;
    const buf = this.ipBuf;
    const proto = this.pProto;
    const o = this.pL4;
    const n = this.pL4Len;
    if (this.pFamily === 4) {
      if (proto === IPPROTO_TCP)
        return fold16(sumWords(buf, o, n, pseudoSum4(buf, this.pIp, proto, n))) === 0xffff;
      if (proto === IPPROTO_UDP) {
        if (read16(buf, o + 6) === 0) return true; // no checksum (IPv4 only)
        const ul = read16(buf, o + 4);
        return fold16(sumWords(buf, o, ul, pseudoSum4(buf, this.pIp, proto, ul))) === 0xffff;
      }
      if (proto === IPPROTO_ICMP) return checksum(buf, o, n) === 0;
      return true;
    }
    if (proto === IPPROTO_TCP || proto === IPPROTO_ICMPV6)
      return fold16(sumWords(buf, o, n, pseudoSum6(buf, this.pIp, proto, n))) === 0xffff;
    if (proto === IPPROTO_UDP) {
      const ul = read16(buf, o + 4);
      return fold16(sumWords(buf, o, ul, pseudoSum6(buf, this.pIp, proto, ul))) === 0xffff;
    }
    return true;
  }
  private ipBuf: Uint8Array = new Uint8Array(0);

  // ---------------------------------------------------------------- forwarding, client -> uplink

  private forwardFromClient(c: ClientLink, buf: Uint8Array, eth: number, meta: FrameMeta): Verdict {
    this.ipBuf = buf;
    const ct = this.conntrack;
    if (this.pFrag === FRAG_LATER) return this.laterFragment(c.link, c.fragments, buf, eth, meta, 0);
    let e = ct.lookup(0, this.key, 0);
    if (e < 0) {
      // Linux `oifgroup 2 drop`: nothing new toward any client address (tracked flows never
      // point at one: updateInternal cuts them when an address becomes a client's)
      if (
        this.pFamily === 4 ? this.internal4.has(read32(buf, this.pDst) | 0) : this.isClient6(buf, this.pDst)
      )
        return this.drop(c.link, R_CLIENT_TO_CLIENT, buf);
      const isErr =
        this.pFamily === 4
          ? icmpIsError(this.pIcmpType)
          : this.pIcmpType >= 0 && icmp6IsError(this.pIcmpType);
      if (this.pIcmpType >= 0 && isErr) return this.relatedIcmp(c.link, buf, eth, meta, 0);
      e = this.newFlow(c, buf, eth);
      if (e < 0) return V_DROPPED;
    } else if (this.pProto === IPPROTO_TCP && !this.tcpTrack(e, 0)) {
      return this.drop(c.link, R_TCP_INVALID, buf);
    } else {
      ct.touch(e, this.now, this.flowTimeout(e));
    }
    if (this.pFrag === FRAG_FIRST) this.rememberFragments(c.fragments, e, c.link);
    if (!this.fitsMtu(c.link, buf, eth, meta, c.mac, c.gateway4Bytes)) return V_DROPPED;
    const slot = ct.rule[e]! * 2;
    c.ruleCounters[slot]! += 1;
    c.ruleCounters[slot + 1]! += this.pIpLen;
    this.rewrite(buf, e, 1, meta.csumBlank);
    this.decrementTtl(buf);
    return this.out2uplink(c, buf, eth, meta);
  }

  private out2uplink(c: ClientLink, buf: Uint8Array, eth: number, meta: FrameMeta): Verdict {
    copyMac(buf, eth, this.upGwMac);
    copyMac(buf, eth + 6, this.upMac);
    if (this.pFragmentOut) return this.fragmentOut(c, buf, eth, meta);
    const len = ETH_HEADER_LEN + this.pIpLen;
    c.counters[C_ACCEPTED]! += 1;
    const u = this.uplinkCounters;
    u[C_TX_PACKETS]! += 1;
    u[C_TX_BYTES]! += len;
    this.sink.send(UPLINK, buf, eth, len, meta);
    return V_FORWARDED;
  }

  /** A first packet: rules, then a conntrack entry with a NAT mapping. Returns -1 when dropped. */
  private newFlow(c: ClientLink, buf: Uint8Array, eth: number): number {
    const proto = this.pProto;
    if (proto === IPPROTO_TCP && (this.pTcpFlags & TCP_RST) !== 0) {
      this.drop(c.link, R_TCP_INVALID, buf);
      return -1;
    }
    if (proto === IPPROTO_TCP && (this.pTcpFlags & (TCP_SYN | TCP_ACKF)) === (TCP_SYN | TCP_ACKF)) {
      this.drop(c.link, R_TCP_INVALID, buf);
      return -1;
    }
    // the reply tuple starts as the packet's own tuple reversed, toward our uplink address
    const k = this.key;
    const r = KEY_WORDS;
    k[r + K_PROTO] = k[K_PROTO]!;
    // DNAT of the virtual DNS servers (Linux dnat-dns chain, prerouting, before the rules)
    const redirect = this.dnsRedirect(buf);
    if (redirect === null) {
      this.drop(c.link, R_DNS_NO_UPSTREAM, buf);
      return -1;
    }
    for (let i = 0; i < 4; i++) {
      k[r + K_SRC + i] = redirect ? wordOf(redirect, i) : k[K_DST + i]!;
      k[r + K_DST + i] = this.pFamily === 4 ? (i === 0 ? this.up4 : 0) : wordOf(this.up6!, i);
    }
    // rules see the destination after DNAT, as Linux's forward chain does
    const q = this.query;
    q.family = this.pFamily;
    q.proto = proto;
    for (let i = 0; i < 4; i++) write32(q.dst, i * 4, k[r + K_SRC + i]!);
    q.dstPort = proto === IPPROTO_TCP || proto === IPPROTO_UDP ? this.pDport : -1;
    q.icmpType = this.pIcmpType;
    q.icmpCode = this.pIcmpCode;
    const rs = c.ruleSet;
    if (!rs || rs.failClosedReason !== undefined) {
      this.rejectByRule(c, buf, eth, R_FAIL_CLOSED);
      return -1;
    }
    const d = rs.evaluate(q, this.decision);
    const slot = c.ruleSlot(d.rule);
    if (d.action !== 'accept') {
      c.ruleCounters[slot * 2]! += 1;
      c.ruleCounters[slot * 2 + 1]! += this.pIpLen;
      this.rejectByRule(c, buf, eth, R_RULE);
      return -1;
    }
    if (!this.pickNatPort()) {
      this.drop(c.link, R_NAT_EXHAUSTED, buf);
      return -1;
    }
    const ct = this.conntrack;
    // one client may hold only its share of the table: a flood costs that client's own flows
    if (ct.countOf(c.link) >= this.perClientMax && !ct.evictOwn(c.link, this.now)) {
      this.drop(c.link, R_CONNTRACK_FULL, buf);
      return -1;
    }
    const e = ct.allocate(this.now);
    if (e < 0) {
      this.drop(c.link, R_CONNTRACK_FULL, buf);
      return -1;
    }
    const keys = ct.keys;
    const ko = e * KEY_WORDS * 2;
    for (let i = 0; i < KEY_WORDS * 2; i++) keys[ko + i] = k[i]!;
    let state = 0;
    if (proto === IPPROTO_TCP) state = (this.pTcpFlags & TCP_SYN) !== 0 ? TCP_SYN_SENT : TCP_ESTABLISHED;
    ct.insert(e, c.link, state, slot, this.now, this.timeoutFor(proto, state, 0));
    return e;
  }

  /** The DNAT target; undefined: no redirect; null: a virtual DNS address with no upstream (drop). */
  private dnsRedirect(buf: Uint8Array): Uint8Array | undefined | null {
    if ((this.pProto !== IPPROTO_UDP && this.pProto !== IPPROTO_TCP) || this.pDport !== 53) return undefined;
    const n = this.pFamily === 4 ? 4 : 16;
    for (let i = 0; i < this.dnsVirtual.length; i++) {
      const v = this.dnsVirtual[i]!;
      if (v.length === n && bytesEqual(buf, this.pDst, v, n)) return this.dnsTarget[i] ?? null;
    }
    return undefined;
  }

  /**
   * Chooses the reply tuple's port (in key[KEY_WORDS..]): the client's own source port (or
   * echo id) when that tuple is free, else a random one from Linux's range for the port's
   * class (nf_nat_l4proto_unique_tuple: <512, 600-1023, >=1024).
   */
  private pickNatPort(): boolean {
    const k = this.key;
    const r = KEY_WORDS;
    const proto = this.pProto;
    const ct = this.conntrack;
    if (proto !== IPPROTO_TCP && proto !== IPPROTO_UDP && this.pSport === 0 && this.pIcmpType < 0) {
      k[r + K_PORTS] = 0;
      return ct.lookup(1, k, r) < 0;
    }
    const isIcmp = this.pIcmpType >= 0;
    const remotePort = isIcmp ? 0 : this.pDport;
    const own = proto === IPPROTO_TCP ? this.ownTcp : proto === IPPROTO_UDP ? this.ownUdp : undefined;
    let port = this.pSport;
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
      if (attempt > 0) port = lo + (this.random() % span);
      if (own && own[port]! > this.now) continue;
      k[r + K_PORTS] = ((remotePort << 16) | port) >>> 0;
      if (ct.lookup(1, k, r) < 0) return true;
    }
    return false;
  }

  private random(): number {
    let x = this.rng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.rng = x >>> 0;
    return this.rng;
  }

  private rejectByRule(c: ClientLink, buf: Uint8Array, eth: number, reason: number): void {
    this.drop(c.link, reason, buf);
    if (!this.reject) return;
    if (this.pFamily === 4)
      this.icmpError4(
        c.link,
        buf,
        eth,
        c.mac,
        c.gateway4Bytes,
        ICMP_DEST_UNREACH,
        ICMP_UNREACH_ADMIN_PROHIBITED,
        0,
      );
    else
      this.icmpError6(
        c.link,
        buf,
        eth,
        c.mac,
        this.gw6 ?? this.gwLinkLocal,
        ICMP6_DEST_UNREACH,
        ICMP6_UNREACH_ADMIN_PROHIBITED,
        0,
      );
  }

  // ---------------------------------------------------------------- conntrack state

  private timeoutFor(proto: number, state: number, flags: number): number {
    if (proto === IPPROTO_TCP) return tcpTimeout(state);
    if (proto === IPPROTO_UDP)
      return (flags & F_SEEN_REPLY) !== 0 ? TIMEOUTS_MS.udpReplied : TIMEOUTS_MS.udpUnreplied;
    if (proto === IPPROTO_ICMP || proto === IPPROTO_ICMPV6) return TIMEOUTS_MS.icmp;
    return TIMEOUTS_MS.generic;
  }

  private flowTimeout(e: number): number {
    const ct = this.conntrack;
    return this.timeoutFor(ct.keys[e * KEY_WORDS * 2]! & 0xff, ct.state[e]!, ct.flags[e]!);
  }

  /**
   * A simplified nf_conntrack_proto_tcp state machine (no window tracking): SYN, SYN+ACK,
   * ACK open; FINs from both sides and the last ACK close; RST closes. Returns false for a
   * packet Linux would call invalid.
   */
  private tcpTrack(e: number, dir: 0 | 1): boolean {
    const ct = this.conntrack;
    const f = this.pTcpFlags;
    let st = ct.state[e]!;
    let fl = ct.flags[e]!;
    if (dir === 1) fl |= F_SEEN_REPLY;
    if (f & TCP_RST) st = TCP_CLOSE;
    else if (f & TCP_SYN) {
      if (dir === 0 && (f & TCP_ACKF) === 0) {
        if (st === TCP_TIME_WAIT || st === TCP_CLOSE) {
          st = TCP_SYN_SENT;
          fl &= ~(F_FIN_ORIG | F_FIN_REPLY);
        }
      } else if (dir === 1 && (f & TCP_ACKF) !== 0) {
        if (st === TCP_SYN_SENT) st = TCP_SYN_RECV;
      } else if (st !== TCP_SYN_SENT && st !== TCP_SYN_RECV) {
        return false;
      }
    } else if (f & TCP_FIN) {
      fl |= dir === 0 ? F_FIN_ORIG : F_FIN_REPLY;
      if ((fl & (F_FIN_ORIG | F_FIN_REPLY)) === (F_FIN_ORIG | F_FIN_REPLY)) st = TCP_LAST_ACK;
      else if (st <= TCP_ESTABLISHED) st = TCP_FIN_WAIT;
    } else if (f & TCP_ACKF) {
      if (st === TCP_SYN_RECV && dir === 0) st = TCP_ESTABLISHED;
      else if (st === TCP_FIN_WAIT && (fl & (dir === 0 ? F_FIN_REPLY : F_FIN_ORIG)) !== 0)
        st = TCP_CLOSE_WAIT;
      else if (st === TCP_LAST_ACK) st = TCP_TIME_WAIT;
    }
    if (st === TCP_ESTABLISHED && (fl & F_SEEN_REPLY) !== 0) fl |= F_ASSURED;
    ct.state[e] = st;
    ct.flags[e] = fl;
    ct.touch(e, this.now, tcpTimeout(st));
    return true;
  }

  // ---------------------------------------------------------------- NAT rewriting

  /**
   * Rewrites the current packet's addresses and ports to the reverse of tuple `dir` of
   * entry e (dir 1: toward the uplink; dir 0: toward the client), keeping the IPv4 header
   * checksum and the transport checksum right by RFC 1624 updates. A checksum-blank frame
   * gets the address change folded into its partial pseudo-header sum and no port change.
   */
  private rewrite(buf: Uint8Array, e: number, dir: 0 | 1, partial: boolean): void {
    const keys = this.conntrack.keys;
    const ko = e * KEY_WORDS * 2 + dir * KEY_WORDS;
    let addrDelta = 0;
    const words = this.pFamily === 4 ? 1 : 4;
    for (let i = 0; i < words; i++) {
      addrDelta += this.patchWord(buf, this.pSrc + i * 4, keys[ko + K_DST + i]!);
      addrDelta += this.patchWord(buf, this.pDst + i * 4, keys[ko + K_SRC + i]!);
    }
    if (this.pFamily === 4 && addrDelta !== 0) applyDelta(buf, this.pIp + 10, addrDelta, false);
    if (this.pFrag === FRAG_LATER) return;
    const ports = keys[ko + K_PORTS]!;
    const newSport = ports & 0xffff;
    const newDport = ports >>> 16;
    const o = this.pL4;
    const proto = this.pProto;
    if (proto === IPPROTO_TCP || proto === IPPROTO_UDP) {
      const at = o + (proto === IPPROTO_TCP ? 16 : 6);
      if (proto === IPPROTO_UDP && this.pFamily === 4 && read16(buf, at) === 0 && !partial) {
        write16(buf, o, newSport);
        write16(buf, o + 2, newDport);
        return;
      }
      let portDelta = 0;
      const os = read16(buf, o);
      const od = read16(buf, o + 2);
      if (os !== newSport) {
        portDelta += (~os & 0xffff) + newSport;
        write16(buf, o, newSport);
      }
      if (od !== newDport) {
        portDelta += (~od & 0xffff) + newDport;
        write16(buf, o + 2, newDport);
      }
      if (partial) {
        if (addrDelta !== 0) applyPartialDelta(buf, at, addrDelta);
      } else if (addrDelta + portDelta !== 0) {
        applyDelta(buf, at, addrDelta + portDelta, proto === IPPROTO_UDP);
      }
      return;
    }
    if (this.pIcmpType >= 0) {
      // ICMPv6 sums the pseudo-header, ICMPv4 does not
      let d = this.pFamily === 6 ? addrDelta : 0;
      if (this.pIcmpKind !== 0) {
        const id = read16(buf, o + 4);
        const newId = this.pIcmpKind === 1 ? newSport : newDport;
        if (id !== newId) {
          d += (~id & 0xffff) + newId;
          write16(buf, o + 4, newId);
        }
      }
      if (d !== 0) applyDelta(buf, o + 2, d, false);
    }
  }

  /** Writes a 32-bit word if it differs; returns its checksum delta. */
  private patchWord(buf: Uint8Array, off: number, word: number): number {
    const old = read32(buf, off);
    if (old === word) return 0;
    write32(buf, off, word);
    return (~(old >>> 16) & 0xffff) + (word >>> 16) + (~old & 0xffff) + (word & 0xffff);
  }

  private decrementTtl(buf: Uint8Array): void {
    if (this.pFamily === 4) {
      const at = this.pIp + 8;
      const old = (buf[at]! << 8) | buf[at + 1]!;
      buf[at] = buf[at]! - 1;
      applyDelta(buf, this.pIp + 10, (~old & 0xffff) + (old - 0x100), false);
    } else {
      buf[this.pIp + 7] = buf[this.pIp + 7]! - 1;
    }
  }

  /**
   * The uplink MTU: a DF (or IPv6) packet too big for it gets fragmentation needed /
   * packet too big; GSO frames are checked per segment (Linux skb_gso_validate_network_len).
   */
  private fitsMtu(
    link: number,
    buf: Uint8Array,
    eth: number,
    meta: FrameMeta,
    mac: Uint8Array,
    from4: Uint8Array,
  ): boolean {
    this.pFragmentOut = false;
    let size = this.pIpLen;
    const gso = meta.gsoType !== 0 && meta.gsoSize > 0 && this.pProto === IPPROTO_TCP;
    if (gso) size = this.pL4 - this.pIp + (buf[this.pL4 + 12]! >> 4) * 4 + meta.gsoSize;
    if (size <= this.mtu) return true;
    if (this.pFamily === 4) {
      const df = (buf[this.pIp + 6]! & 0x40) !== 0;
      // like Linux, a router fragments what may be fragmented (ip_fragment)
      if (!df && !gso && this.mtu - (buf[this.pIp]! & 0xf) * 4 >= 8) {
        this.pFragmentOut = true;
        return true;
      }
      this.drop(link, R_TOO_BIG, buf);
      if (df)
        this.icmpError4(link, buf, eth, mac, from4, ICMP_DEST_UNREACH, ICMP_UNREACH_FRAG_NEEDED, this.mtu);
    } else {
      this.drop(link, R_TOO_BIG, buf);
      this.icmpError6(link, buf, eth, mac, this.gw6 ?? this.gwLinkLocal, ICMP6_PACKET_TOO_BIG, 0, this.mtu);
    }
    return false;
  }

  // ---------------------------------------------------------------- fragments

  /**
   * Sends the (translated) IPv4 packet in fragments that fit the uplink MTU (RFC 791: the
   * first fragment keeps every option, later ones only the options with the copy bit).
   * A checksum-blank transport checksum is finished first: a partial sum cannot be split.
   */
  private fragmentOut(c: ClientLink, buf: Uint8Array, eth: number, meta: FrameMeta): Verdict {
    const ip = this.pIp;
    const hl = (buf[ip]! & 0xf) * 4;
    const proto = this.pProto;
    if (meta.csumBlank && this.pFrag === FRAG_NONE && (proto === IPPROTO_TCP || proto === IPPROTO_UDP)) {
      const at = this.pL4 + (proto === IPPROTO_TCP ? 16 : 6);
      let v = finish(sumWords(buf, this.pL4, this.pL4Len, 0));
      if (v === 0 && proto === IPPROTO_UDP) v = 0xffff;
      write16(buf, at, v);
    }
    // options copied into every fragment
    const opts = this.fragOptions;
    let optLen = 0;
    for (let i = ip + 20; i < ip + hl; ) {
      const t = buf[i]!;
      if (t === 0) break;
      if (t === 1) {
        i++;
        continue;
      }
      const l = buf[i + 1]!;
      if (t & 0x80) for (let j = 0; j < l; j++) opts[optLen++] = buf[i + j]!;
      i += l;
    }
    while (optLen & 3) opts[optLen++] = 0;
    const ff = read16(buf, ip + 6);
    const baseOffset = (ff & 0x1fff) * 8;
    const moreAfter = (ff & 0x2000) !== 0;
    const payload = this.pIpLen - hl;
    const o = this.out;
    const u = this.uplinkCounters;
    for (let pos = 0, first = true; pos < payload; first = false) {
      const fhl = first ? hl : 20 + optLen;
      const n = Math.min((this.mtu - fhl) & ~7, payload - pos);
      const last = pos + n >= payload;
      copyBytes(o, 0, buf, eth, ETH_HEADER_LEN);
      copyBytes(o, ETH_HEADER_LEN, buf, ip, 20);
      if (first) copyBytes(o, ETH_HEADER_LEN + 20, buf, ip + 20, hl - 20);
      else copyBytes(o, ETH_HEADER_LEN + 20, opts, 0, optLen);
      o[ETH_HEADER_LEN] = 0x40 | (fhl >> 2);
      write16(o, ETH_HEADER_LEN + 2, fhl + n);
      write16(o, ETH_HEADER_LEN + 6, (last && !moreAfter ? 0 : 0x2000) | ((baseOffset + pos) >> 3));
      copyBytes(o, ETH_HEADER_LEN + fhl, buf, ip + hl + pos, n);
      fillIpv4Checksum(o, ETH_HEADER_LEN, fhl);
      const len = ETH_HEADER_LEN + fhl + n;
      u[C_TX_PACKETS]! += 1;
      u[C_TX_BYTES]! += len;
      this.sink.send(UPLINK, o, 0, len, this.outMeta);
      pos += n;
    }
    c.counters[C_ACCEPTED]! += 1;
    return V_FORWARDED;
  }

  private fragKey(): Uint32Array {
    const k = this.fkey;
    const buf = this.ipBuf;
    k[0] = (this.pFamily << 8) | this.pProto;
    k[1] = this.pFragId >>> 0;
    const w = this.pFamily === 4 ? 1 : 4;
    for (let i = 0; i < 4; i++) {
      k[2 + i] = i < w ? read32(buf, this.pSrc + i * 4) : 0;
      k[6 + i] = i < w ? read32(buf, this.pDst + i * 4) : 0;
    }
    return k;
  }

  private rememberFragments(table: FragmentTable, e: number, link: number): void {
    const k = this.fragKey();
    table.add(k, e, this.conntrack.generation[e]!, this.now, TIMEOUTS_MS.fragment);
    this.releaseKey.set(k);
    this.releaseLink = link;
  }

  /** A later fragment follows its first fragment's flow (first-fragment tracking). */
  private laterFragment(
    link: number,
    table: FragmentTable,
    buf: Uint8Array,
    eth: number,
    meta: FrameMeta,
    dir: 0 | 1,
  ): Verdict {
    const key = this.fragKey();
    const i = table.find(key, this.now);
    const ct = this.conntrack;
    if (i < 0) {
      // its first fragment has not come yet: hold a copy (bounded) until it does
      const hold = link === UPLINK ? this.uplinkHeld : this.clients[link]?.held;
      const len = ETH_HEADER_LEN + this.pIpLen;
      if (hold?.hold(key, buf, eth, len, meta, this.now, TIMEOUTS_MS.fragment)) return V_LOCAL;
      return this.drop(link, R_FRAG_UNTRACKED, buf);
    }
    const e = table.entry[i]!;
    if (e < 0 || ct.used[e] === 0 || ct.generation[e] !== table.generation[i])
      return this.drop(link, R_FRAG_UNTRACKED, buf);
    const c = this.clients[ct.link[e]!];
    if (!c) return this.drop(link, R_FRAG_UNTRACKED, buf);
    if (dir === 0) {
      if (!this.fitsMtu(link, buf, eth, meta, c.mac, c.gateway4Bytes)) return V_DROPPED;
      this.rewrite(buf, e, 1, meta.csumBlank);
      this.decrementTtl(buf);
      return this.out2uplink(c, buf, eth, meta);
    }
    this.rewrite(buf, e, 0, meta.csumBlank);
    this.decrementTtl(buf);
    return this.out2client(c, buf, eth, meta);
  }

  // ---------------------------------------------------------------- traffic to the firewall

  private toFirewall4(c: ClientLink, buf: Uint8Array, eth: number, l3: number): Verdict {
    const proto = this.pProto;
    if (proto === IPPROTO_ICMP) {
      // qubes-ipv4.nft input: `iifgroup 2 icmp accept`
      if (
        this.pIcmpType === ICMP_ECHO_REQUEST &&
        this.pFrag === FRAG_NONE &&
        checksum(buf, this.pL4, this.pL4Len) === 0
      ) {
        const n = buildEchoReply(
          this.out,
          4,
          c.mac,
          this.gwMac,
          buf,
          l3 + 16,
          buf,
          l3,
          this.pL4,
          this.pL4Len,
        );
        if (n + 0 <= this.out.length) this.emit(c.link, n);
        return V_LOCAL;
      }
      return this.drop(c.link, R_TO_FIREWALL, buf);
    }
    // `iifgroup 2 udp dport 68 drop`, then `reject with icmp host-prohibited`
    this.drop(c.link, R_TO_FIREWALL, buf);
    if (!(proto === IPPROTO_UDP && this.pDport === 68))
      this.icmpError4(
        c.link,
        buf,
        eth,
        c.mac,
        c.gateway4Bytes,
        ICMP_DEST_UNREACH,
        ICMP_UNREACH_HOST_PROHIBITED,
        0,
      );
    return V_DROPPED;
  }

  // ---------------------------------------------------------------- IPv6 from a client

  private clientIp6(
    c: ClientLink,
    buf: Uint8Array,
    eth: number,
    l3: number,
    len: number,
    meta: FrameMeta,
  ): Verdict {
    if (!this.up6 || !c.ip6) return this.drop(c.link, R_IPV6_DISABLED, buf);
    const v = this.ip6;
    if (v.check(buf, l3, len)) return this.drop(c.link, R_MALFORMED, buf);
    if (!this.parse6(buf, l3)) return this.drop(c.link, R_MALFORMED, buf);
    this.ipBuf = buf;
    const icmp = this.pProto === IPPROTO_ICMPV6;
    const dstIsUs =
      bytesEqual(buf, l3 + 24, this.gwLinkLocal, 16) ||
      (this.gw6 !== undefined && bytesEqual(buf, l3 + 24, this.gw6, 16)) ||
      bytesEqual(buf, l3 + 24, this.up6, 16);
    const multicast = buf[l3 + 24] === 0xff;
    // neighbour discovery may come from link-local or unspecified sources; nothing else may
    if (
      icmp &&
      (multicast || dstIsUs) &&
      this.pIcmpType >= ND_ROUTER_SOLICIT &&
      this.pIcmpType <= ND_REDIRECT
    ) {
      if (!bytesEqual(buf, l3 + 8, c.ip6, 16) && !isLinkLocalOrUnspecified(buf, l3 + 8))
        return this.drop(c.link, R_SPOOFED, buf);
      if (this.pIcmpType === ND_NEIGHBOR_SOLICIT) {
        return this.neighbor(c.link, buf, eth, [this.gw6, this.gwLinkLocal], this.gwMac, true);
      }
      return this.drop(c.link, R_ND_IGNORED, buf);
    }
    if (!bytesEqual(buf, l3 + 8, c.ip6, 16)) return this.drop(c.link, R_SPOOFED, buf);
    if (multicast) return this.drop(c.link, R_NOT_FOR_US, buf);
    if (dstIsUs) {
      if (icmp) {
        if (this.pIcmpType === ICMP6_ECHO_REQUEST && this.pFrag === FRAG_NONE && this.checkL4(meta)) {
          const n = buildEchoReply(
            this.out,
            6,
            c.mac,
            this.gwMac,
            buf,
            l3 + 24,
            buf,
            l3,
            this.pL4,
            this.pL4Len,
          );
          this.emit(c.link, n);
          return V_LOCAL;
        }
        // qubes-ipv6.nft `_icmpv6`: other ICMPv6 is accepted (and has no listener here)
        return this.drop(c.link, R_TO_FIREWALL, buf);
      }
      this.drop(c.link, R_TO_FIREWALL, buf);
      this.icmpError6(
        c.link,
        buf,
        eth,
        c.mac,
        this.gw6 ?? this.gwLinkLocal,
        ICMP6_DEST_UNREACH,
        ICMP6_UNREACH_ADMIN_PROHIBITED,
        0,
      );
      return V_DROPPED;
    }
    if (isLinkLocalOrUnspecified(buf, l3 + 24)) return this.drop(c.link, R_NOT_FOR_US, buf);
    if (v.hopLimit <= 1) return this.ttlExceeded(c.link, buf, eth, c.mac, c.gateway4Bytes);
    if (!this.checkL4(meta)) return this.drop(c.link, R_BAD_CHECKSUM, buf);
    return this.forwardFromClient(c, buf, eth, meta);
  }

  private isClient6(buf: Uint8Array, off: number): boolean {
    for (const a of this.connected6) if (bytesEqual(buf, off, a, 16)) return true;
    for (const c of this.clients) if (c?.ip6 && bytesEqual(buf, off, c.ip6, 16)) return true;
    return false;
  }

  // ---------------------------------------------------------------- from the uplink

  private fromUplink(buf: Uint8Array, off: number, len: number, meta: FrameMeta): Verdict {
    this.pIpLen = 0;
    if (len < ETH_HEADER_LEN || off + len > buf.length) return this.drop(UPLINK, R_MALFORMED, buf);
    if ((buf[off]! & 1) === 0 && !macEquals(buf, off, this.upMac))
      return this.drop(UPLINK, R_NOT_FOR_US, buf);
    const type = read16(buf, off + 12);
    const l3 = off + ETH_HEADER_LEN;
    const l3len = len - ETH_HEADER_LEN;
    this.ipBuf = buf;
    if (type === ETHERTYPE_IPV4) {
      const v = this.ip4;
      if (v.check(buf, l3, l3len)) return this.drop(UPLINK, R_MALFORMED, buf);
      if (!v.headerChecksumOk()) return this.drop(UPLINK, R_BAD_CHECKSUM, buf);
      const src = read32(buf, l3 + 12);
      // QSB-056: nothing from upstream may claim a client's or our own address
      if (this.internal4.has(src | 0)) return this.drop(UPLINK, R_SPOOFED_UPLINK, buf);
      if (read32(buf, l3 + 16) !== this.up4) return this.drop(UPLINK, R_NOT_FOR_US, buf);
      if (!this.parse4(buf, l3)) return this.drop(UPLINK, R_MALFORMED, buf);
      return this.uplinkIp(buf, off, meta);
    }
    if (type === ETHERTYPE_IPV6) {
      if (!this.up6) return this.drop(UPLINK, R_IPV6_DISABLED, buf);
      const v = this.ip6;
      if (v.check(buf, l3, l3len)) return this.drop(UPLINK, R_MALFORMED, buf);
      if (!this.parse6(buf, l3)) return this.drop(UPLINK, R_MALFORMED, buf);
      if (
        bytesEqual(buf, l3 + 8, this.up6, 16) ||
        this.isClient6(buf, l3 + 8) ||
        (this.gw6 && bytesEqual(buf, l3 + 8, this.gw6, 16))
      )
        return this.drop(UPLINK, R_SPOOFED_UPLINK, buf);
      if (
        this.pProto === IPPROTO_ICMPV6 &&
        this.pIcmpType >= ND_ROUTER_SOLICIT &&
        this.pIcmpType <= ND_REDIRECT
      ) {
        if (this.pIcmpType === ND_ROUTER_ADVERT || this.pIcmpType === ND_REDIRECT)
          return this.drop(UPLINK, R_ND_IGNORED, buf);
        return this.neighbor(UPLINK, buf, off, [this.up6], this.upMac, false);
      }
      if (!bytesEqual(buf, l3 + 24, this.up6, 16)) return this.drop(UPLINK, R_NOT_FOR_US, buf);
      return this.uplinkIp(buf, off, meta);
    }
    if (type === ETHERTYPE_ARP) return this.uplinkArp(buf, l3, l3len);
    return this.drop(UPLINK, R_UNSUPPORTED_ETHERTYPE, buf);
  }

  private uplinkIp(buf: Uint8Array, eth: number, meta: FrameMeta): Verdict {
    if (this.pFrag === FRAG_LATER) {
      if (this.hopLimitOf(buf) <= 1) return this.drop(UPLINK, R_TTL, buf);
      return this.laterFragment(UPLINK, this.uplinkFragments, buf, eth, meta, 1);
    }
    if (!this.checkL4(meta)) return this.drop(UPLINK, R_BAD_CHECKSUM, buf);
    const ct = this.conntrack;
    const e = ct.lookup(1, this.key, 0);
    if (e < 0) {
      const isErr =
        this.pFamily === 4
          ? icmpIsError(this.pIcmpType)
          : this.pIcmpType >= 0 && icmp6IsError(this.pIcmpType);
      if (this.pIcmpType >= 0 && isErr) return this.relatedIcmp(UPLINK, buf, eth, meta, 1);
      if (this.resolver && this.deliverToResolver(buf)) return V_LOCAL;
      return this.drop(UPLINK, R_UNTRACKED_INBOUND, buf);
    }
    const c = this.clients[ct.link[e]!];
    if (!c) return this.drop(UPLINK, R_UNTRACKED_INBOUND, buf);
    if (this.hopLimitOf(buf) <= 1) return this.ttlExceeded(UPLINK, buf, eth, this.upGwMac, this.up4Bytes);
    if (this.pProto === IPPROTO_TCP) {
      if (!this.tcpTrack(e, 1)) return this.drop(UPLINK, R_TCP_INVALID, buf);
    } else {
      ct.flags[e] = ct.flags[e]! | F_SEEN_REPLY | F_ASSURED;
      ct.touch(e, this.now, this.flowTimeout(e));
    }
    if (this.pFrag === FRAG_FIRST) this.rememberFragments(this.uplinkFragments, e, UPLINK);
    const slot = ct.rule[e]! * 2;
    c.ruleCounters[slot]! += 1;
    c.ruleCounters[slot + 1]! += this.pIpLen;
    this.rewrite(buf, e, 0, meta.csumBlank);
    this.decrementTtl(buf);
    return this.out2client(c, buf, eth, meta);
  }

  private hopLimitOf(buf: Uint8Array): number {
    return this.pFamily === 4 ? buf[this.pIp + 8]! : buf[this.pIp + 7]!;
  }

  private out2client(c: ClientLink, buf: Uint8Array, eth: number, meta: FrameMeta): Verdict {
    copyMac(buf, eth, c.mac);
    copyMac(buf, eth + 6, this.gwMac);
    const len = ETH_HEADER_LEN + this.pIpLen;
    c.counters[C_TX_PACKETS]! += 1;
    c.counters[C_TX_BYTES]! += len;
    this.uplinkCounters[C_ACCEPTED]! += 1;
    this.sink.send(c.link, buf, eth, len, meta);
    return V_FORWARDED;
  }

  // ---------------------------------------------------------------- ICMP errors about tracked flows

  /**
   * An ICMP error whose embedded packet belongs to a tracked flow (conntrack RELATED):
   * from the uplink (dir 1) it goes back to the client with the outer destination and the
   * embedded source restored; from a client (dir 0) about a reply it received, it goes out
   * with our address. The embedded headers are rewritten and the ICMP checksum recomputed.
   */
  private relatedIcmp(link: number, buf: Uint8Array, eth: number, meta: FrameMeta, dir: 0 | 1): Verdict {
    const fam = this.pFamily;
    const inner = this.pL4 + 8;
    const avail = this.pIp + this.pIpLen - inner;
    const ihl = fam === 4 ? (buf[inner]! & 0xf) * 4 : IP6_HEADER_LEN;
    if (
      avail < ihl + 8 ||
      (fam === 4 && (buf[inner]! >> 4 !== 4 || ihl < 20)) ||
      (fam === 6 && buf[inner]! >> 4 !== 6)
    )
      return this.drop(link, R_ICMP_UNMATCHED, buf);
    let iproto = fam === 4 ? buf[inner + 9]! : buf[inner + 6]!;
    const isrc = inner + (fam === 4 ? 12 : 8);
    const idst = inner + (fam === 4 ? 16 : 24);
    let il4 = inner + ihl;
    const end = this.pIp + this.pIpLen;
    if (fam === 4 && (read16(buf, inner + 6) & 0x1fff) !== 0) return this.drop(link, R_ICMP_UNMATCHED, buf);
    // the quoted IPv6 packet's extension headers, as far as the quote reaches
    for (let n = 0; fam === 6 && n < 8; n++) {
      if (iproto !== 0 && iproto !== 43 && iproto !== 60 && iproto !== 44 && iproto !== 51) break;
      if (il4 + 8 > end) return this.drop(link, R_ICMP_UNMATCHED, buf);
      if (iproto === 44 && (read16(buf, il4 + 2) & 0xfff8) !== 0)
        return this.drop(link, R_ICMP_UNMATCHED, buf);
      const hlen = iproto === 44 ? 8 : iproto === 51 ? (buf[il4 + 1]! + 2) * 4 : (buf[il4 + 1]! + 1) * 8;
      iproto = buf[il4]!;
      il4 += hlen;
    }
    if (il4 + 8 > end) return this.drop(link, R_ICMP_UNMATCHED, buf);
    let sp = 0;
    let dp = 0;
    let kind = 0;
    const icmpProto = fam === 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6;
    if (iproto === IPPROTO_TCP || iproto === IPPROTO_UDP) {
      sp = read16(buf, il4);
      dp = read16(buf, il4 + 2);
    } else if (iproto === icmpProto) {
      const t = buf[il4]!;
      const q = fam === 4 ? icmpIsQuery(t) : t === ICMP6_ECHO_REQUEST;
      const r = fam === 4 ? icmpIsQueryReply(t) : t === ICMP6_ECHO_REPLY;
      if (q) {
        sp = read16(buf, il4 + 4);
        kind = 1;
      } else if (r) {
        dp = read16(buf, il4 + 4);
        kind = 2;
      } else return this.drop(link, R_ICMP_UNMATCHED, buf);
    }
    // the embedded packet travelled the other way: its tuple reversed is the flow's tuple
    const k = this.fkey;
    const saveProto = this.pProto;
    this.pProto = iproto;
    this.fillKey(k, 0, buf, idst, isrc, dp, sp);
    this.pProto = saveProto;
    const ct = this.conntrack;
    const e = ct.lookup(dir, k, 0);
    if (e < 0) return this.drop(link, R_ICMP_UNMATCHED, buf);
    const c = this.clients[ct.link[e]!];
    if (!c || (dir === 0 && c.link !== link)) return this.drop(link, R_ICMP_UNMATCHED, buf);
    if (this.hopLimitOf(buf) <= 1) return this.drop(link, R_TTL, buf);
    // outer header: only the address on our side changes
    const ko = e * KEY_WORDS * 2;
    const keys = ct.keys;
    const words = fam === 4 ? 1 : 4;
    let d = 0;
    for (let i = 0; i < words; i++) {
      if (dir === 1) d += this.patchWord(buf, this.pDst + i * 4, keys[ko + K_SRC + i]!);
      else d += this.patchWord(buf, this.pSrc + i * 4, keys[ko + KEY_WORDS + K_DST + i]!);
    }
    if (fam === 4 && d !== 0) applyDelta(buf, this.pIp + 10, d, false);
    // embedded header: the same rewrite as the original packet's direction
    const target = dir === 1 ? ko : ko + KEY_WORDS; // the tuple to restore, as sent
    let idelta = 0;
    for (let i = 0; i < words; i++) {
      idelta += this.patchWord(buf, isrc + i * 4, keys[target + K_SRC + i]!);
      idelta += this.patchWord(buf, idst + i * 4, keys[target + K_DST + i]!);
    }
    if (fam === 4 && idelta !== 0) applyDelta(buf, inner + 10, idelta, false);
    const ports = keys[target + K_PORTS]!;
    const wantSp = ports >>> 16;
    const wantDp = ports & 0xffff;
    // the embedded transport header and its checksum, as far as the quote reaches
    // (Linux nf_nat_icmp_reply_translation rewrites them too)
    let pd = 0;
    let csumAt = -1;
    let pseudo = true;
    if (iproto === IPPROTO_TCP || iproto === IPPROTO_UDP) {
      pd += wordDelta(read16(buf, il4), wantSp) + wordDelta(read16(buf, il4 + 2), wantDp);
      write16(buf, il4, wantSp);
      write16(buf, il4 + 2, wantDp);
      csumAt = il4 + (iproto === IPPROTO_TCP ? 16 : 6);
      if (iproto === IPPROTO_UDP && csumAt + 2 <= end && read16(buf, csumAt) === 0 && fam === 4) csumAt = -1;
    } else if (kind !== 0) {
      const want = kind === 1 ? wantSp : wantDp;
      pd += wordDelta(read16(buf, il4 + 4), want);
      write16(buf, il4 + 4, want);
      csumAt = il4 + 2;
      pseudo = fam === 6;
    }
    if (csumAt >= 0 && csumAt + 2 <= end) {
      const d = (pseudo ? idelta : 0) + pd;
      if (d !== 0) applyDelta(buf, csumAt, d, iproto === IPPROTO_UDP);
    }
    // the outer ICMP checksum covers everything rewritten above
    const icmpLen = this.pL4Len;
    write16(buf, this.pL4 + 2, 0);
    const sum =
      fam === 4
        ? finish(sumWords(buf, this.pL4, icmpLen, 0))
        : finish(sumWords(buf, this.pL4, icmpLen, pseudoSum6(buf, this.pIp, IPPROTO_ICMPV6, icmpLen)));
    write16(buf, this.pL4 + 2, sum);
    this.decrementTtl(buf);
    if (dir === 1) return this.out2client(c, buf, eth, meta);
    return this.out2uplink(c, buf, eth, meta);
  }

  // ---------------------------------------------------------------- ICMP the firewall originates

  private ttlExceeded(
    link: number,
    buf: Uint8Array,
    eth: number,
    mac: Uint8Array,
    from4: Uint8Array,
  ): Verdict {
    this.drop(link, R_TTL, buf);
    if (this.pFamily === 4) this.icmpError4(link, buf, eth, mac, from4, ICMP_TIME_EXCEEDED, 0, 0);
    else
      this.icmpError6(
        link,
        buf,
        eth,
        mac,
        link === UPLINK ? this.up6! : (this.gw6 ?? this.gwLinkLocal),
        ICMP6_TIME_EXCEEDED,
        0,
        0,
      );
    return V_DROPPED;
  }

  /** Never about ICMP errors, later fragments, or group/unspecified sources (RFC 1122 §3.2.2). */
  private icmpError4(
    link: number,
    buf: Uint8Array,
    _eth: number,
    mac: Uint8Array,
    from: Uint8Array,
    type: number,
    code: number,
    rest: number,
  ): void {
    if (this.pFrag === FRAG_LATER) return;
    if (this.pProto === IPPROTO_ICMP && icmpIsError(this.pIcmpType)) return;
    const srcTop = buf[this.pSrc]!;
    if (srcTop >= 224 || srcTop === 0) return;
    const limited = !(type === ICMP_DEST_UNREACH && code === ICMP_UNREACH_FRAG_NEEDED);
    if (!this.icmpLimiter.allow(this.now, read32(buf, this.pSrc), limited)) return;
    const n = buildIcmp4Error(
      this.out,
      mac,
      link === UPLINK ? this.upMac : this.gwMac,
      from,
      buf,
      this.pIp,
      this.pIpLen,
      type,
      code,
      rest,
    );
    this.emit(link, n);
  }

  private icmpError6(
    link: number,
    buf: Uint8Array,
    _eth: number,
    mac: Uint8Array,
    from: Uint8Array,
    type: number,
    code: number,
    rest: number,
  ): void {
    if (this.pFrag === FRAG_LATER) return;
    if (this.pProto === IPPROTO_ICMPV6 && this.pIcmpType >= 0 && icmp6IsError(this.pIcmpType)) return;
    if (buf[this.pSrc] === 0xff || isUnspecified(buf, this.pSrc)) return;
    const limited = type !== ICMP6_PACKET_TOO_BIG;
    const h = read32(buf, this.pSrc + 4) ^ read32(buf, this.pSrc + 12);
    if (!this.icmpLimiter.allow(this.now, h, limited)) return;
    const n = buildIcmp6Error(
      this.out,
      mac,
      link === UPLINK ? this.upMac : this.gwMac,
      from,
      buf,
      this.pIp,
      this.pIpLen,
      type,
      code,
      rest,
    );
    this.emit(link, n);
  }

  private emit(link: number, len: number): void {
    if (link === UPLINK) {
      this.uplinkCounters[C_TX_PACKETS]! += 1;
      this.uplinkCounters[C_TX_BYTES]! += len;
    } else {
      const c = this.clients[link];
      if (c) {
        c.counters[C_TX_PACKETS]! += 1;
        c.counters[C_TX_BYTES]! += len;
      }
    }
    this.sink.send(link, this.out, 0, len, this.outMeta);
  }

  // ---------------------------------------------------------------- the resolver's traffic

  private flushResolver(): void {
    const r = this.resolver;
    if (!r) return;
    for (const p of r.takeOutgoing()) {
      const v6 = p.server.length === 16;
      if (v6 ? !this.up6 : p.server.length !== 4) continue;
      const own = p.transport === 'udp' ? this.ownUdp : this.ownTcp;
      own[p.localPort & 0xffff] = this.now + OWN_PORT_HOLD_MS;
      const n = buildTransport(
        this.out,
        this.upGwMac,
        this.upMac,
        v6 ? this.up6! : this.up4Bytes,
        p.server,
        p.transport === 'udp' ? IPPROTO_UDP : IPPROTO_TCP,
        p.localPort,
        p.serverPort,
        p.transport === 'tcp' ? p : undefined,
        p.payload,
      );
      if (n > 0) this.emit(UPLINK, n);
    }
  }

  private deliverToResolver(buf: Uint8Array): boolean {
    const r = this.resolver!;
    const proto = this.pProto;
    if (proto !== IPPROTO_UDP && proto !== IPPROTO_TCP) return false;
    const own = proto === IPPROTO_UDP ? this.ownUdp : this.ownTcp;
    if (!(own[this.pDport]! > this.now)) return false;
    const w = this.pFamily === 4 ? 4 : 16;
    const server = buf.slice(this.pSrc, this.pSrc + w);
    let packet: DnsPacketIn;
    if (proto === IPPROTO_UDP) {
      const ul = read16(buf, this.pL4 + 4);
      packet = {
        transport: 'udp',
        server,
        serverPort: this.pSport,
        localPort: this.pDport,
        payload: buf.slice(this.pL4 + 8, this.pL4 + ul),
      };
    } else {
      const o = this.pL4;
      const hl = (buf[o + 12]! >> 4) * 4;
      packet = {
        transport: 'tcp',
        server,
        serverPort: this.pSport,
        localPort: this.pDport,
        seq: read32(buf, o + 4),
        ack: read32(buf, o + 8),
        flags: buf[o + 13]!,
        window: read16(buf, o + 14),
        payload: buf.slice(o + hl, o + this.pL4Len),
      };
    }
    const mine = r.deliver(packet, this.now);
    this.flushResolver();
    return mine;
  }

  // ---------------------------------------------------------------- rule changes

  /** Re-evaluates entry e against the client's current rules: counter slot, or -1 if now blocked. */
  private evaluateEntry(c: ClientLink, e: number): number {
    const rs = c.ruleSet;
    if (!rs || rs.failClosedReason !== undefined) return -1;
    const ct = this.conntrack;
    const ko = e * KEY_WORDS * 2;
    const k = ct.keys;
    const q = this.query;
    const fam = (k[ko + K_PROTO]! >>> 8) as 4 | 6;
    const proto = k[ko + K_PROTO]! & 0xff;
    q.family = fam;
    q.proto = proto;
    // the destination after DNAT is the reply tuple's source
    for (let i = 0; i < 4; i++) write32(q.dst, i * 4, k[ko + KEY_WORDS + K_SRC + i]!);
    const isIcmp = proto === IPPROTO_ICMP || proto === IPPROTO_ICMPV6;
    q.dstPort = proto === IPPROTO_TCP || proto === IPPROTO_UDP ? k[ko + K_PORTS]! & 0xffff : -1;
    // conntrack keeps no ICMP type; echo is the only tracked ICMP query clients start
    q.icmpType = isIcmp ? (fam === 4 ? ICMP_ECHO_REQUEST : ICMP6_ECHO_REQUEST) : -1;
    q.icmpCode = isIcmp ? 0 : -1;
    const d = rs.evaluate(q, this.decision);
    return d.action === 'accept' ? c.ruleSlot(d.rule) : -1;
  }

  private purge(link: number, blocked: (e: number) => boolean): number {
    const ct = this.conntrack;
    let n = 0;
    for (let e = 0; e < ct.capacity; e++) {
      if (ct.used[e] === 1 && ct.link[e] === link && blocked(e)) {
        ct.remove(e);
        n++;
      }
    }
    return n;
  }

  // ---------------------------------------------------------------- counting and logging

  private drop(link: number, reason: number, buf: Uint8Array): Verdict {
    const counters = link === UPLINK ? this.uplinkCounters : this.clients[link]?.counters;
    if (counters) {
      counters[C_DROPPED]! += 1;
      counters[C_DROP_BASE + reason]! += 1;
    }
    if (this.logSink) {
      if (this.logBucket.allow(this.now)) {
        this.logSink({
          link,
          client: link === UPLINK ? 'uplink' : (this.clients[link]?.name ?? `link${link}`),
          reason: DROP_REASONS[reason] ?? 'unknown',
          packet: this.describe(buf),
          suppressed: this.logSuppressed,
        });
        this.logSuppressed = 0;
      } else {
        this.logSuppressed++;
        this.logSuppressedTotal++;
      }
    }
    return V_DROPPED;
  }

  /** `proto src:port -> dst:port` of the packet being handled (slow path, logging only). */
  private describe(buf: Uint8Array): string {
    if (this.pIpLen === 0 || this.pIp + 20 > buf.length) return 'frame';
    const fam = this.pFamily;
    const f = (o: number) => (fam === 4 ? formatIpv4(buf, o) : formatIpv6(buf, o));
    const names: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'icmp6' };
    const proto = names[this.pProto] ?? `proto${this.pProto}`;
    const ports = this.pHasPorts;
    return `${proto} ${f(this.pSrc)}${ports ? `:${this.pSport}` : ''} -> ${f(this.pDst)}${ports ? `:${this.pDport}` : ''}`;
  }

  stats(): EngineStats {
    const link = (n: number, name: string, counters: Float64Array, c?: ClientLink): LinkStats => {
      const byReason: Record<string, number> = {};
      DROP_REASONS.forEach((r, i) => {
        const v = counters[C_DROP_BASE + i]!;
        if (v > 0) byReason[r] = v;
      });
      const s: LinkStats = {
        link: n,
        name,
        rxPackets: counters[C_RX_PACKETS]!,
        rxBytes: counters[C_RX_BYTES]!,
        txPackets: counters[C_TX_PACKETS]!,
        txBytes: counters[C_TX_BYTES]!,
        accepted: counters[C_ACCEPTED]!,
        dropped: counters[C_DROPPED]!,
        dropsByReason: byReason,
        fragmentTrains: (c ? c.fragments : this.uplinkFragments).count(this.now),
        fragmentsHeld: (c ? c.held : this.uplinkHeld).count(this.now),
        fragmentsLostUnclaimed: (c ? c.held : this.uplinkHeld).lost,
      };
      if (c) {
        const numbers = c.ruleSet?.ruleNumbers ?? [];
        s.rules = [...numbers, -1].map((r, i) => ({
          rule: r < 0 ? ('policy' as const) : r,
          packets: c.ruleCounters[i * 2]!,
          bytes: c.ruleCounters[i * 2 + 1]!,
        }));
        s.failClosedReason = c.ruleSet ? c.ruleSet.failClosedReason : 'no rule set';
      }
      return s;
    };
    const links = [link(UPLINK, 'uplink', this.uplinkCounters)];
    for (const c of this.clients) if (c) links.push(link(c.link, c.name, c.counters, c));
    const ct = this.conntrack;
    return {
      conntrack: { size: ct.size, max: ct.capacity, evictions: ct.evictions, expirations: ct.expirations },
      icmpRateLimited: this.icmpLimiter.limited,
      logSuppressed: this.logSuppressedTotal,
      links,
    };
  }

  /** The uplink gateway MAC in use (learned from ARP/ND, or the Qubes default). */
  get uplinkGatewayMac(): string {
    return formatMac(this.upGwMac);
  }
}

function copyMac(buf: Uint8Array, off: number, mac: Uint8Array): void {
  buf[off] = mac[0]!;
  buf[off + 1] = mac[1]!;
  buf[off + 2] = mac[2]!;
  buf[off + 3] = mac[3]!;
  buf[off + 4] = mac[4]!;
  buf[off + 5] = mac[5]!;
}

function fold16(sum: number): number {
  return fold(sum);
}

function wordOf(a: Uint8Array, i: number): number {
  return i * 4 + 4 <= a.length ? read32(a, i * 4) : 0;
}

function bytesEqual(buf: Uint8Array, off: number, b: Uint8Array, n: number): boolean {
  for (let i = 0; i < n; i++) if (buf[off + i] !== b[i]) return false;
  return true;
}

function isUnspecified(buf: Uint8Array, off: number): boolean {
  for (let i = 0; i < 16; i++) if (buf[off + i] !== 0) return false;
  return true;
}

function isLinkLocalOrUnspecified(buf: Uint8Array, off: number): boolean {
  return (buf[off] === 0xfe && (buf[off + 1]! & 0xc0) === 0x80) || isUnspecified(buf, off);
}
