/**
 * The engine's state shared by every stage of the packet path (smoltcp's `InterfaceInner`):
 * links, connection table, addresses, the parsed packet, the frame writer, and the counting
 * and logging every stage does. The stages (classify, forward, local, ICMP errors,
 * fragments, neighbour discovery, the resolver's traffic) are functions over it in their
 * own files; FirewallEngine is the public face.
 */
import type { DnsTransportEndpoint } from '../dns/types.ts';
import type { FlowQuery, RuleDecision } from '../rules/types.ts';
import { ArpView } from '../wire/arp.ts';
import { read32 } from '../wire/checksum.ts';
import {
  type DecisionLogEntry,
  type DnsConfig,
  type DropLogEntry,
  type EngineConfig,
  type FrameSink,
  plainMeta,
  QUBES_GATEWAY_MAC,
} from './config.ts';
import { Conntrack, K_SRC, KEY_WORDS } from './conntrack.ts';
import { FrameWriter } from './emit.ts';
import { FRAGMENT_KEY_WORDS } from './fragment-table.ts';
import {
  C_DROP_BASE,
  C_DROPPED,
  C_TX_BYTES,
  C_TX_PACKETS,
  type ClientLink,
  type Link,
  Uplink,
} from './links.ts';
import { Packet } from './packet.ts';
import { IcmpRateLimiter, TokenBucket } from './ratelimit.ts';
import { DROP_REASONS } from './reasons.ts';

/** Dropped silently (as nftables `drop`, or an error the rate limiter held back). */
export const V_DROPPED = 0;
export const V_FORWARDED = 1;
/** Answered or consumed by the firewall itself (ARP, ND, ping, the resolver's packets). */
export const V_LOCAL = 2;
/**
 * Dropped and answered with an ICMP error: a rule's or the input chain's reject
 * (admin-/host-prohibited), time exceeded, fragmentation needed / packet too big.
 */
export const V_REJECTED = 3;
export type Verdict = typeof V_DROPPED | typeof V_FORWARDED | typeof V_LOCAL | typeof V_REJECTED;

export class Iface {
  readonly conntrack: Conntrack;
  readonly sink: FrameSink;
  now = 0;
  private rng: number;
  /** Answer rule drops with ICMP (Linux `reject`), or drop silently. */
  readonly reject: boolean;
  readonly perClientMax: number;
  readonly fragmentTrains: number;

  readonly uplink: Uplink;
  /** Our address as clients see it (`/qubes-netvm-gateway`), as a uint32 and as bytes. */
  readonly gw4: number;
  readonly gw4Bytes: Uint8Array;
  readonly gw6: Uint8Array | undefined;
  /** Our MAC on every client link. */
  readonly gwMac: Uint8Array;
  /** The link-local address of gwMac (EUI-64): fe80::fcff:ffff:feff:ffff for fe:ff:ff:ff:ff:ff. */
  readonly gwLinkLocal: Uint8Array;
  /** Virtual DNS addresses and their DNAT targets (undefined: no upstream, drop). */
  readonly dnsVirtual: Uint8Array[] = [];
  readonly dnsTarget: (Uint8Array | undefined)[] = [];

  /** Client links by link number (0, the uplink's number, is never a client). */
  readonly clients: (ClientLink | undefined)[] = [undefined];
  /** Every link by number: the uplink, then the clients. */
  readonly links: (Link | undefined)[];
  readonly clientByIp4 = new Map<number, number>();
  connected4 = new Set<number>();
  /** Every address on our side of the firewall: clients (attached or in /connected-ips) and our own. */
  internal4 = new Set<number>();
  connected6: Uint8Array[] = [];

  /** A first fragment was just tracked on this link: release its held fragments after this packet. */
  releaseLink: Link | undefined = undefined;
  readonly releaseKey = new Uint32Array(FRAGMENT_KEY_WORDS);

  readonly packet = new Packet();
  readonly arp = new ArpView();
  /** Scratch keys: an ICMP error's embedded flow, a fragment train. */
  readonly scratchKey = new Uint32Array(KEY_WORDS);
  readonly writer: FrameWriter;
  readonly outMeta = plainMeta();
  readonly fragmentOptions = new Uint8Array(40);
  readonly query: FlowQuery = {
    family: 4,
    proto: 0,
    dst: new Uint8Array(16),
    dstPort: -1,
    icmpType: -1,
    icmpCode: -1,
  };
  readonly decision: RuleDecision = { action: 'drop', rule: -1 };
  readonly icmpLimiter: IcmpRateLimiter;
  /** ICMP errors sent so far (receive() turns a drop that sent one into V_REJECTED). */
  icmpErrorsSent = 0;
  readonly wallClockMs: () => number;

  resolver: DnsTransportEndpoint | undefined;
  /** Until when each local port is the resolver's (NAT keeps off it). */
  readonly ownUdp = new Float64Array(65536);
  readonly ownTcp = new Float64Array(65536);

  private readonly logSink: ((e: DropLogEntry) => void) | undefined;
  private readonly logBucket: TokenBucket;
  private logSuppressed = 0;
  logSuppressedTotal = 0;
  /** Set while the VM logs at debug: each new flow's rule decision (off, it costs nothing). */
  decisionLog: ((e: DecisionLogEntry) => void) | undefined = undefined;
  private readonly decisionBucket: TokenBucket;
  private decisionSuppressed = 0;

  constructor(config: EngineConfig, sink: FrameSink) {
    this.sink = sink;
    this.conntrack = new Conntrack(config.conntrackMax ?? 16384);
    this.reject = config.rejectWithIcmp ?? true;
    this.perClientMax = config.conntrackPerClient ?? Math.max(1, Math.floor(this.conntrack.capacity / 2));
    this.rng = (config.seed ?? 0x9e3779b9) >>> 0 || 1;
    this.fragmentTrains = config.fragmentsPerLink ?? 64;
    this.uplink = new Uplink(config.uplink, this.fragmentTrains * 4);
    this.links = [this.uplink];
    this.writer = new FrameWriter(Math.max(2048, this.uplink.mtu + 64));
    this.gw4Bytes = config.clientGateway4.slice(0, 4);
    this.gw4 = read32(config.clientGateway4, 0);
    this.gw6 = config.clientGateway6?.slice(0, 16);
    this.gwMac = (config.clientGatewayMac ?? QUBES_GATEWAY_MAC).slice(0, 6);
    const m = this.gwMac;
    const ll = new Uint8Array(16);
    ll[0] = 0xfe;
    ll[1] = 0x80;
    ll.set([m[0]! ^ 2, m[1]!, m[2]!, 0xff, 0xfe, m[3]!, m[4]!, m[5]!], 8);
    this.gwLinkLocal = ll;
    this.setDns(config.dns);
    this.icmpLimiter = new IcmpRateLimiter(config.icmpRate);
    this.wallClockMs = config.wallClockMs ?? Date.now;
    this.logSink = config.log;
    const perSecond = config.logPerSecond ?? 10;
    this.logBucket = new TokenBucket(perSecond, perSecond * 2);
    this.decisionBucket = new TokenBucket(perSecond, perSecond * 2);
  }

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

  /**
   * Rebuilds the internal address set and cuts tracked flows to addresses that became
   * internal: the fast path looks flows up before the client-to-client check, so a flow
   * must never outlive its destination turning into a client.
   */
  updateInternal(): void {
    const s = new Set<number>([this.uplink.ip4 | 0, this.gw4 | 0]);
    for (const a of this.connected4) s.add(a);
    for (const c of this.clients) if (c) s.add(c.ip4 | 0);
    this.internal4 = s;
    const ct = this.conntrack;
    const b = new Uint8Array(16);
    ct.removeWhere((e) => {
      if (ct.family(e) === 4) return s.has(ct.keys[ct.keyOffset(e, 1) + K_SRC]! | 0);
      ct.address(e, 1, K_SRC, b);
      return this.isClient6(b, 0);
    });
  }

  isClient6(buf: Uint8Array, off: number): boolean {
    for (const a of this.connected6) if (bytesEqual(buf, off, a, 16)) return true;
    for (const c of this.clients) if (c?.ip6 && bytesEqual(buf, off, c.ip6, 16)) return true;
    return false;
  }

  /** The next number of the engine's seeded xorshift generator. */
  random(): number {
    let x = this.rng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.rng = x >>> 0;
    return this.rng;
  }

  /** Counts and logs (rate-limited) a dropped packet; the packet being handled is p. */
  drop(p: Packet, link: Link, reason: number): Verdict {
    const counters = link.counters;
    counters[C_DROPPED]! += 1;
    counters[C_DROP_BASE + reason]! += 1;
    if (this.logSink) {
      if (this.logBucket.allow(this.now)) {
        this.logSink({
          link: link.link,
          client: link.name,
          reason: DROP_REASONS[reason] ?? 'unknown',
          packet: p.describe(),
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

  /** Logs (rate-limited, its own budget) which rule decided the new flow p of client link c. */
  logDecision(p: Packet, link: Link, action: 'accept' | 'drop', rule: number): void {
    const sink = this.decisionLog;
    if (!sink) return;
    if (!this.decisionBucket.allow(this.now)) {
      this.decisionSuppressed++;
      return;
    }
    sink({
      link: link.link,
      client: link.name,
      action,
      rule: rule < 0 ? 'policy' : rule,
      packet: p.describe(),
      suppressed: this.decisionSuppressed,
    });
    this.decisionSuppressed = 0;
  }

  /** Sends the frame the writer just built (`len` bytes) on `link`. */
  emit(link: Link, len: number): void {
    link.counters[C_TX_PACKETS]! += 1;
    link.counters[C_TX_BYTES]! += len;
    this.sink.send(link.link, this.writer.out, 0, len, this.outMeta);
  }
}

export function bytesEqual(buf: Uint8Array, off: number, b: Uint8Array, n: number): boolean {
  for (let i = 0; i < n; i++) if (buf[off + i] !== b[i]) return false;
  return true;
}

export function isUnspecified(buf: Uint8Array, off: number): boolean {
  for (let i = 0; i < 16; i++) if (buf[off + i] !== 0) return false;
  return true;
}

export function isLinkLocalOrUnspecified(buf: Uint8Array, off: number): boolean {
  return (buf[off] === 0xfe && (buf[off + 1]! & 0xc0) === 0x80) || isUnspecified(buf, off);
}
