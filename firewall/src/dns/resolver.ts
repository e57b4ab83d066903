/**
 * The firewall's own stub resolver, for `dsthost` rules. Sans-IO: it hands the
 * engine UDP datagrams and TCP segments (DnsTransportEndpoint) and is given
 * what arrives for them; time and randomness are injected.
 *
 * - Upstream servers come from QubesDB `/qubes-primary-dns`, `/qubes-secondary-dns`
 *   (both used, in turn; mirage uses only the first).
 * - Every attempt uses a fresh random 16-bit id and random source port; an answer
 *   counts only if it comes from the server and port asked, to the port used,
 *   with the id, QR set, and the question echoed (RFC 5452 §9.1 checks).
 * - Truncated answers are asked again over TCP to the same server (RFC 7766).
 * - A and AAAA (IPv4 trees need A, IPv6 trees AAAA, as Linux's getaddrinfo per
 *   family); CNAME chains are followed inside the answer and, if the server did
 *   not include the target's data, by asking for the target, up to 8 names.
 * - TTLs are clamped to [minTtl, maxTtl]; names in use are asked again when their
 *   TTL runs out, and the old addresses stay in force until a new answer arrives
 *   (a timed-out refresh keeps them and tries again later).
 * - A name that fails (NXDOMAIN, every server failing) is reported as failed, so
 *   SourceRules fails closed, and is asked again after `retryMs`, doubled per further
 *   failure up to `maxRetryMs` (a failed refresh likewise, keeping its addresses).
 * - `freshness` tells a rules commit whether an answer is current; `refresh` asks again now.
 */

import type { HostAnswer, HostResolver } from '../rules/client-rules.ts';
import { parseIpText } from '../wire/address.ts';
import { DnsTcpConnection } from './tcp.ts';
import type { DnsPacketIn, DnsPacketOut, DnsTransportEndpoint } from './types.ts';
import {
  CLASS_IN,
  canonicalName,
  DNS_PORT,
  type DnsMessage,
  decodeMessage,
  encodeQuery,
  namesEqual,
  nameToLabels,
  OPCODE_QUERY,
  RCODE_NOERROR,
  RCODE_NXDOMAIN,
  TYPE_A,
  TYPE_AAAA,
  TYPE_CNAME,
  TYPE_SOA,
} from './wire.ts';

/** Randomness for ids, ports and TCP sequence numbers (tests inject a seeded one). */
export interface RandomSource {
  fill(bytes: Uint8Array): void;
}

/** crypto.getRandomValues: unpredictable ids and ports are the defence against spoofed answers. */
export const cryptoRandom: RandomSource = {
  fill(bytes) {
    globalThis.crypto.getRandomValues(bytes);
  },
};

export interface DnsServer {
  address: Uint8Array;
  port: number;
}

export interface StubResolverOptions {
  servers: readonly DnsServer[];
  /** Monotonic milliseconds (used by retain/release, which get no time argument). */
  now: () => number;
  random?: RandomSource;
  /** Wait for one UDP answer before asking the next server. */
  attemptTimeoutMs?: number;
  /** Rounds over the server list before a name fails (resolv.conf's `attempts`). */
  rounds?: number;
  /** Whole TCP exchange. */
  tcpTimeoutMs?: number;
  minTtlSeconds?: number;
  maxTtlSeconds?: number;
  /** Bounds for negative answers (NXDOMAIN, no data). */
  minNegativeTtlSeconds?: number;
  maxNegativeTtlSeconds?: number;
  /** When to ask again after a failure; doubled after each further failure of the name. */
  retryMs?: number;
  /** The longest wait between retries (the backoff's cap). */
  maxRetryMs?: number;
  /** Names followed through CNAMEs, counting the first. */
  maxChain?: number;
  /** Addresses kept per answer (an upstream could send thousands over TCP; each costs index entries). */
  maxAddresses?: number;
  /** Lookups in flight at once; more wait their turn (a tree of 10,000 dsthost rules must not burst). */
  maxInFlight?: number;
  /** Names tracked at once; beyond it a name fails (and its client's rules fail closed). */
  maxNames?: number;
  /** Local port range for queries (IANA ephemeral by default). */
  portRange?: readonly [number, number];
  /** Lets the engine keep our ports apart from its NAT ports. */
  portAvailable?: (transport: 'udp' | 'tcp', port: number) => boolean;
  log?: (line: string) => void;
}

export interface ResolverStats {
  queriesSent: number;
  tcpQueries: number;
  answersAccepted: number;
  /** Packets to one of our ports from the wrong address/port, with the wrong id or question. */
  answersRejected: number;
  malformed: number;
  timeouts: number;
  serverErrors: number;
}

interface Attempt {
  transport: 'udp' | 'tcp';
  server: DnsServer;
  localPort: number;
  id: number;
  deadline: number;
  tcp: DnsTcpConnection | undefined;
}

interface Lookup {
  /** Name asked now (moves along a CNAME chain). */
  qname: string;
  names: string[];
  ttl: number;
  attempt: Attempt | undefined;
  /** How many attempts so far (selects the server: attempt % servers). */
  tries: number;
}

interface Entry {
  name: string;
  family: 4 | 6;
  refs: number;
  answer: HostAnswer;
  /** When to ask again (TTL expiry or failure retry). */
  refreshAt: number;
  /** When the answer's TTL runs out (a failure or pending: 0). */
  expiresAt: number;
  /** Lookups failed since the last answer (the backoff's exponent; also: the answer is stale). */
  failures: number;
  lookup: Lookup | undefined;
}

const key = (name: string, family: 4 | 6) => `${family}:${name}`;

function sameAddresses(a: readonly Uint8Array[], b: readonly Uint8Array[]): boolean {
  if (a.length !== b.length) return false;
  const s = new Set(a.map((x) => x.join(',')));
  return b.every((x) => s.has(x.join(',')));
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Whether `packet` came from `address`:`port` (answers from anyone else are spoofed or stray). */
function sentBy(packet: DnsPacketIn, address: Uint8Array, port: number): boolean {
  return bytesEqual(packet.server, address) && packet.serverPort === port;
}

export class StubResolver implements DnsTransportEndpoint, HostResolver {
  readonly stats: ResolverStats = {
    queriesSent: 0,
    tcpQueries: 0,
    answersAccepted: 0,
    answersRejected: 0,
    malformed: 0,
    timeouts: 0,
    serverErrors: 0,
  };
  private servers: readonly DnsServer[];
  private readonly random: RandomSource;
  private readonly entries = new Map<string, Entry>();
  /** Our ports in use, per transport, → the entry asking. */
  private readonly udpPorts = new Map<number, Entry>();
  private readonly tcpPorts = new Map<number, Entry>();
  /** TCP connections kept after their answer until they close (FIN handshake). */
  private readonly closing = new Map<number, DnsTcpConnection>();
  private outgoing: DnsPacketOut[] = [];
  private inFlight = 0;
  private readonly listeners = new Set<(name: string, family: 4 | 6) => void>();
  private readonly o: Required<Omit<StubResolverOptions, 'portAvailable' | 'log' | 'random' | 'servers'>>;

  constructor(private readonly options: StubResolverOptions) {
    this.servers = options.servers;
    this.random = options.random ?? cryptoRandom;
    this.o = {
      now: options.now,
      attemptTimeoutMs: options.attemptTimeoutMs ?? 2000,
      rounds: options.rounds ?? 2,
      tcpTimeoutMs: options.tcpTimeoutMs ?? 5000,
      minTtlSeconds: options.minTtlSeconds ?? 30,
      maxTtlSeconds: options.maxTtlSeconds ?? 86_400,
      minNegativeTtlSeconds: options.minNegativeTtlSeconds ?? 30,
      maxNegativeTtlSeconds: options.maxNegativeTtlSeconds ?? 3600,
      retryMs: options.retryMs ?? 30_000,
      maxRetryMs: options.maxRetryMs ?? 600_000,
      maxChain: options.maxChain ?? 8,
      maxInFlight: options.maxInFlight ?? 32,
      maxAddresses: options.maxAddresses ?? 64,
      maxNames: options.maxNames ?? 4096,
      portRange: options.portRange ?? [49152, 65535],
    };
  }

  /** New `/qubes-primary-dns` / `/qubes-secondary-dns`: later attempts use them. */
  setServers(servers: readonly DnsServer[]): void {
    this.servers = servers;
  }

  // ---- HostResolver ----

  retain(name: string, family: 4 | 6): void {
    const canonical = canonicalName(name);
    const k = key(canonical, family);
    const existing = this.entries.get(k);
    if (existing) {
      existing.refs++;
      return;
    }
    const entry: Entry = {
      name: canonical,
      family,
      refs: 1,
      answer: { state: 'pending' },
      refreshAt: 0,
      expiresAt: 0,
      failures: 0,
      lookup: undefined,
    };
    const full = this.entries.size >= this.o.maxNames;
    this.entries.set(k, entry);
    if (full || !nameToLabels(canonical)) {
      entry.answer = { state: 'failed', reason: full ? 'too many names to resolve' : 'not a valid DNS name' };
      entry.refreshAt = Number.POSITIVE_INFINITY;
      return;
    }
    if (this.inFlight < this.o.maxInFlight) this.startLookup(entry, this.o.now());
  }

  release(name: string, family: 4 | 6): void {
    const k = key(canonicalName(name), family);
    const entry = this.entries.get(k);
    if (!entry) return;
    if (--entry.refs > 0) return;
    this.stopAttempt(entry);
    if (entry.lookup) this.inFlight--;
    entry.lookup = undefined;
    this.entries.delete(k);
  }

  answer(name: string, family: 4 | 6): HostAnswer {
    return this.entries.get(key(canonicalName(name), family))?.answer ?? { state: 'pending' };
  }

  subscribe(listener: (name: string, family: 4 | 6) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  freshness(name: string, family: 4 | 6): 'fresh' | 'refreshing' | 'stale' {
    const entry = this.entries.get(key(canonicalName(name), family));
    if (!entry) return 'stale';
    if (entry.lookup) return 'refreshing';
    return entry.failures === 0 && this.o.now() < entry.expiresAt ? 'fresh' : 'stale';
  }

  refresh(name: string, family: 4 | 6): void {
    const entry = this.entries.get(key(canonicalName(name), family));
    if (!entry || entry.lookup || entry.refreshAt === Number.POSITIVE_INFINITY) return;
    // a forced lookup does not wait its turn behind maxInFlight: a commit is waiting for it
    this.startLookup(entry, this.o.now());
  }

  // ---- DnsTransportEndpoint ----

  takeOutgoing(): DnsPacketOut[] {
    for (const entry of this.entries.values()) {
      const tcp = entry.lookup?.attempt?.tcp;
      if (tcp) this.outgoing.push(...tcp.take());
    }
    for (const conn of this.closing.values()) this.outgoing.push(...conn.take());
    const out = this.outgoing;
    this.outgoing = [];
    return out;
  }

  /** True if this port is one of the resolver's (the engine then keeps the packet off the data path). */
  ownsPort(transport: 'udp' | 'tcp', port: number): boolean {
    return transport === 'udp' ? this.udpPorts.has(port) : this.tcpPorts.has(port) || this.closing.has(port);
  }

  deliver(packet: DnsPacketIn, nowMs: number): boolean {
    if (packet.transport === 'udp') {
      const entry = this.udpPorts.get(packet.localPort);
      if (!entry) return false;
      const attempt = entry.lookup?.attempt;
      if (attempt?.transport !== 'udp') return true;
      if (!sentBy(packet, attempt.server.address, attempt.server.port)) {
        this.stats.answersRejected++;
        return true;
      }
      this.onResponse(entry, packet.payload, nowMs);
      return true;
    }
    const closing = this.closing.get(packet.localPort);
    if (closing) {
      if (sentBy(packet, closing.server, closing.serverPort)) {
        closing.deliver(packet, nowMs);
        if (closing.closed) this.closing.delete(packet.localPort);
      } else this.stats.answersRejected++;
      return true;
    }
    const entry = this.tcpPorts.get(packet.localPort);
    if (!entry) return false;
    const attempt = entry.lookup?.attempt;
    const tcp = attempt?.tcp;
    if (!attempt || !tcp) return true;
    if (!sentBy(packet, attempt.server.address, attempt.server.port)) {
      this.stats.answersRejected++;
      return true;
    }
    tcp.deliver(packet, nowMs);
    this.afterTcp(entry, nowMs);
    return true;
  }

  tick(nowMs: number): void {
    for (const [port, conn] of this.closing) {
      conn.tick(nowMs);
      if (conn.closed) {
        this.outgoing.push(...conn.take());
        this.closing.delete(port);
      }
    }
    for (const entry of [...this.entries.values()]) {
      const lookup = entry.lookup;
      if (!lookup) {
        if (nowMs >= entry.refreshAt && this.inFlight < this.o.maxInFlight) this.startLookup(entry, nowMs);
        continue;
      }
      const attempt = lookup.attempt;
      if (!attempt) continue;
      if (attempt.tcp) {
        attempt.tcp.tick(nowMs);
        this.afterTcp(entry, nowMs);
        continue;
      }
      if (nowMs >= attempt.deadline) {
        this.stats.timeouts++;
        this.nextAttempt(entry, nowMs, 'timeout');
      }
    }
  }

  // ---- lookups ----

  private startLookup(entry: Entry, nowMs: number): void {
    this.inFlight++;
    entry.lookup = {
      qname: entry.name,
      names: [entry.name],
      ttl: Number.POSITIVE_INFINITY,
      attempt: undefined,
      tries: 0,
    };
    this.sendAttempt(entry, nowMs, 'udp');
  }

  private qtype(entry: Entry): number {
    return entry.family === 4 ? TYPE_A : TYPE_AAAA;
  }

  private randomU16(): number {
    const b = new Uint8Array(2);
    this.random.fill(b);
    return (b[0]! << 8) | b[1]!;
  }

  private randomU32(): number {
    const b = new Uint8Array(4);
    this.random.fill(b);
    return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
  }

  private pickPort(transport: 'udp' | 'tcp'): number | undefined {
    const [lo, hi] = this.o.portRange;
    const span = hi - lo + 1;
    const inUse = transport === 'udp' ? this.udpPorts : this.tcpPorts;
    for (let i = 0; i < 32; i++) {
      const port = lo + (this.randomU16() % span);
      if (inUse.has(port) || (transport === 'tcp' && this.closing.has(port))) continue;
      if (this.options.portAvailable && !this.options.portAvailable(transport, port)) continue;
      return port;
    }
    return undefined;
  }

  private sendAttempt(entry: Entry, nowMs: number, transport: 'udp' | 'tcp', server?: DnsServer): void {
    const lookup = entry.lookup!;
    this.stopAttempt(entry);
    const servers = this.servers;
    if (servers.length === 0) {
      this.finishFailure(entry, nowMs, 'no DNS servers configured');
      return;
    }
    const srv = server ?? servers[lookup.tries % servers.length]!;
    lookup.tries++;
    const port = this.pickPort(transport);
    if (port === undefined) {
      this.finishFailure(entry, nowMs, 'no free local port');
      return;
    }
    const id = this.randomU16();
    const query = encodeQuery(id, lookup.qname, this.qtype(entry));
    this.stats.queriesSent++;
    if (transport === 'udp') {
      this.udpPorts.set(port, entry);
      lookup.attempt = {
        transport,
        server: srv,
        localPort: port,
        id,
        deadline: nowMs + this.o.attemptTimeoutMs,
        tcp: undefined,
      };
      this.outgoing.push({
        transport: 'udp',
        server: srv.address,
        serverPort: srv.port,
        localPort: port,
        payload: query,
      });
    } else {
      this.stats.tcpQueries++;
      this.tcpPorts.set(port, entry);
      const tcp = new DnsTcpConnection({
        server: srv.address,
        serverPort: srv.port,
        localPort: port,
        isn: this.randomU32(),
        request: query,
        nowMs,
        timeoutMs: this.o.tcpTimeoutMs,
      });
      lookup.attempt = {
        transport,
        server: srv,
        localPort: port,
        id,
        deadline: nowMs + this.o.tcpTimeoutMs,
        tcp,
      };
    }
  }

  /** Forgets the current attempt's port; a TCP connection that finished its answer closes politely. */
  private stopAttempt(entry: Entry): void {
    const attempt = entry.lookup?.attempt;
    if (!attempt) return;
    if (attempt.transport === 'udp') this.udpPorts.delete(attempt.localPort);
    else {
      this.tcpPorts.delete(attempt.localPort);
      const tcp = attempt.tcp!;
      this.outgoing.push(...tcp.take());
      if (!tcp.closed) this.closing.set(attempt.localPort, tcp);
    }
    entry.lookup!.attempt = undefined;
  }

  private nextAttempt(entry: Entry, nowMs: number, why: string): void {
    const lookup = entry.lookup!;
    if (lookup.tries >= Math.max(1, this.servers.length) * this.o.rounds) {
      this.finishFailure(entry, nowMs, `no answer from the DNS servers (${why})`);
      return;
    }
    this.sendAttempt(entry, nowMs, 'udp');
  }

  private afterTcp(entry: Entry, nowMs: number): void {
    const attempt = entry.lookup?.attempt;
    const tcp = attempt?.tcp;
    if (!attempt || !tcp) return;
    this.outgoing.push(...tcp.take());
    const result = tcp.result;
    if (!result) return;
    if (!result.ok) {
      this.stats.timeouts++;
      this.nextAttempt(entry, nowMs, result.reason);
      return;
    }
    this.onResponse(entry, result.response, nowMs);
  }

  private onResponse(entry: Entry, payload: Uint8Array, nowMs: number): void {
    const lookup = entry.lookup!;
    const attempt = lookup.attempt!;
    const decoded = decodeMessage(payload);
    if (!decoded.ok) {
      this.stats.malformed++;
      if (attempt.transport === 'tcp') this.nextAttempt(entry, nowMs, `malformed answer: ${decoded.reason}`);
      return; // UDP: keep waiting for the real answer until the timeout
    }
    const m = decoded.message;
    const q = m.questions[0];
    const h = m.header;
    if (
      h.id !== attempt.id ||
      !h.qr ||
      h.opcode !== OPCODE_QUERY ||
      m.questions.length !== 1 ||
      !q ||
      !namesEqual(q.name, lookup.qname) ||
      q.type !== this.qtype(entry) ||
      q.class !== CLASS_IN
    ) {
      this.stats.answersRejected++;
      if (attempt.transport === 'tcp') this.nextAttempt(entry, nowMs, 'answer does not match the question');
      return;
    }
    this.stats.answersAccepted++;
    if (h.tc && attempt.transport === 'udp') {
      this.sendAttempt(entry, nowMs, 'tcp', attempt.server);
      return;
    }
    if (h.rcode === RCODE_NXDOMAIN) {
      this.finishNegative(entry, nowMs, m, 'NXDOMAIN');
      return;
    }
    if (h.rcode !== RCODE_NOERROR) {
      this.stats.serverErrors++;
      this.nextAttempt(entry, nowMs, `rcode ${h.rcode}`);
      return;
    }
    this.followChain(entry, nowMs, m);
  }

  private followChain(entry: Entry, nowMs: number, m: DnsMessage): void {
    const lookup = entry.lookup!;
    const qtype = this.qtype(entry);
    let current = lookup.qname;
    for (;;) {
      const addresses: Uint8Array[] = [];
      let ttl = lookup.ttl;
      for (const r of m.answers) {
        if (r.type !== qtype || r.class !== CLASS_IN || !namesEqual(r.name, current)) continue;
        const d = r.data;
        if (addresses.length >= this.o.maxAddresses) break;
        if ((d.kind === 'a' || d.kind === 'aaaa') && !addresses.some((a) => bytesEqual(a, d.address))) {
          addresses.push(d.address);
          ttl = Math.min(ttl, r.ttl);
        }
      }
      if (addresses.length > 0) {
        lookup.ttl = ttl;
        this.finishSuccess(entry, nowMs, addresses);
        return;
      }
      const cname = m.answers.find((r) => r.type === TYPE_CNAME && namesEqual(r.name, current));
      if (cname?.data.kind !== 'cname') break;
      const target = canonicalName(cname.data.target);
      if (lookup.names.includes(target)) {
        this.finishFailure(entry, nowMs, 'CNAME loop');
        return;
      }
      if (lookup.names.length >= this.o.maxChain) {
        this.finishFailure(entry, nowMs, `CNAME chain longer than ${this.o.maxChain} names`);
        return;
      }
      lookup.names.push(target);
      lookup.ttl = Math.min(lookup.ttl, cname.ttl);
      current = target;
    }
    if (current !== lookup.qname) {
      // the server gave the chain but not the target's data: ask for the target
      lookup.qname = current;
      lookup.tries = 0;
      this.sendAttempt(entry, nowMs, 'udp');
      return;
    }
    this.finishNegative(entry, nowMs, m, undefined);
  }

  private clamp(seconds: number, min: number, max: number): number {
    return Math.min(max, Math.max(min, Number.isFinite(seconds) ? seconds : max));
  }

  private finishSuccess(entry: Entry, nowMs: number, addresses: Uint8Array[]): void {
    const ttl = this.clamp(entry.lookup!.ttl, this.o.minTtlSeconds, this.o.maxTtlSeconds);
    this.endLookup(entry);
    entry.refreshAt = nowMs + ttl * 1000;
    entry.expiresAt = entry.refreshAt;
    const wasStale = entry.failures > 0;
    entry.failures = 0;
    if (!this.setAnswer(entry, { state: 'resolved', addresses }) && wasStale) this.notify(entry);
  }

  /** NXDOMAIN (reason given) or no data of the type (reason undefined): TTL from the SOA (RFC 2308). */
  private finishNegative(entry: Entry, nowMs: number, m: DnsMessage, reason: string | undefined): void {
    const soa = m.authorities.find((r) => r.type === TYPE_SOA);
    const soaTtl = soa && soa.data.kind === 'soa' ? Math.min(soa.ttl, soa.data.minimum) : Number.NaN;
    const ttl = this.clamp(
      Math.min(soaTtl, entry.lookup!.ttl),
      this.o.minNegativeTtlSeconds,
      this.o.maxNegativeTtlSeconds,
    );
    this.endLookup(entry);
    entry.refreshAt = nowMs + ttl * 1000;
    entry.expiresAt = reason ? 0 : entry.refreshAt;
    entry.failures = reason ? entry.failures + 1 : 0;
    if (!this.setAnswer(entry, reason ? { state: 'failed', reason } : { state: 'resolved', addresses: [] }))
      this.notify(entry);
  }

  private endLookup(entry: Entry): void {
    this.stopAttempt(entry);
    if (entry.lookup) this.inFlight--;
    entry.lookup = undefined;
  }

  private finishFailure(entry: Entry, nowMs: number, reason: string): void {
    this.endLookup(entry);
    // backoff: retryMs, doubled per further failure, at most maxRetryMs
    const wait = Math.min(this.o.maxRetryMs, this.o.retryMs * 2 ** Math.min(entry.failures, 30));
    entry.failures++;
    entry.refreshAt = nowMs + wait;
    const retry = `retrying in ${Math.round(wait / 1000)} s`;
    if (entry.answer.state === 'resolved' && entry.answer.addresses.length > 0) {
      // a failed refresh: keep the addresses we have until a new answer arrives (never
      // widened), and tell the subscribers that the answer is now stale
      this.options.log?.(
        `DNS refresh of ${entry.name} (IPv${entry.family}) failed (${reason}); keeping the previous addresses, ${retry}`,
      );
      this.notify(entry);
      return;
    }
    this.options.log?.(`DNS lookup of ${entry.name} (IPv${entry.family}) failed: ${reason}; ${retry}`);
    if (!this.setAnswer(entry, { state: 'failed', reason })) this.notify(entry);
  }

  private notify(entry: Entry): void {
    for (const l of this.listeners) l(entry.name, entry.family);
  }

  /** Sets the answer; true when it changed (and the subscribers were told). */
  private setAnswer(entry: Entry, answer: HostAnswer): boolean {
    const old = entry.answer;
    entry.answer = answer;
    const same =
      old.state === answer.state &&
      (old.state !== 'resolved' ||
        answer.state !== 'resolved' ||
        sameAddresses(old.addresses, answer.addresses)) &&
      (old.state !== 'failed' || answer.state !== 'failed' || old.reason === answer.reason);
    if (same) return false;
    this.notify(entry);
    return true;
  }
}

/** The upstream servers from QubesDB values (`/qubes-primary-dns`, `/qubes-secondary-dns`); bad values are skipped. */
export function dnsServersFromQubesDb(values: readonly (string | undefined)[]): DnsServer[] {
  const servers: DnsServer[] = [];
  for (const v of values) {
    const address = v === undefined ? undefined : parseIpText(v.trim());
    if (address) servers.push({ address, port: DNS_PORT });
  }
  return servers;
}
