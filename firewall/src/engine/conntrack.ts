/**
 * The connection table: a fixed-capacity store of flows in typed arrays, indexed twice by
 * open addressing (by the tuple the client sends, and by the tuple replies arrive with on
 * the uplink), with an LRU list for eviction. Nothing here allocates after construction.
 *
 * A key is KEY_WORDS uint32 words: [family<<8 | proto, srcPort<<16 | dstPort, src(4), dst(4)]
 * (IPv4 addresses use the first address word, the other three are zero).
 */
import { read32 } from '../wire/checksum.ts';
import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP } from '../wire/ipv4.ts';
import { TCP_ACKF, TCP_FIN, TCP_RST, TCP_SYN } from '../wire/tcp.ts';
import { TIMEOUTS_MS } from './config.ts';

export const KEY_WORDS = 10;
export const K_PROTO = 0;
export const K_PORTS = 1;
export const K_SRC = 2;
export const K_DST = 6;

/** TCP states (Linux enum tcp_conntrack numbering), plus pseudo-states for UDP/ICMP/other. */
export const TCP_NONE = 0;
export const TCP_SYN_SENT = 1;
export const TCP_SYN_RECV = 2;
export const TCP_ESTABLISHED = 3;
export const TCP_FIN_WAIT = 4;
export const TCP_CLOSE_WAIT = 5;
export const TCP_LAST_ACK = 6;
export const TCP_TIME_WAIT = 7;
export const TCP_CLOSE = 8;

/** Flag bits of an entry. */
export const F_SEEN_REPLY = 1;
export const F_ASSURED = 2;
export const F_FIN_ORIG = 4;
export const F_FIN_REPLY = 8;

/** An established flow seen within this long is "live" and is not evicted for a new one. */
export const LIVE_MS = 120_000;
/** How far up the LRU list eviction looks for an idle or unassured flow. */
const EVICT_SCAN = 64;

export function tcpTimeout(state: number): number {
  switch (state) {
    case TCP_SYN_SENT:
      return TIMEOUTS_MS.tcpSynSent;
    case TCP_SYN_RECV:
      return TIMEOUTS_MS.tcpSynRecv;
    case TCP_ESTABLISHED:
      return TIMEOUTS_MS.tcpEstablished;
    case TCP_FIN_WAIT:
      return TIMEOUTS_MS.tcpFinWait;
    case TCP_CLOSE_WAIT:
      return TIMEOUTS_MS.tcpCloseWait;
    case TCP_LAST_ACK:
      return TIMEOUTS_MS.tcpLastAck;
    case TCP_TIME_WAIT:
      return TIMEOUTS_MS.tcpTimeWait;
    default:
      return TIMEOUTS_MS.tcpClose;
  }
}

/** A flow's timeout in its state (Linux nf_conntrack defaults, TIMEOUTS_MS). */
export function flowTimeout(proto: number, state: number, flags: number): number {
  if (proto === IPPROTO_TCP) return tcpTimeout(state);
  if (proto === IPPROTO_UDP)
    return (flags & F_SEEN_REPLY) !== 0 ? TIMEOUTS_MS.udpReplied : TIMEOUTS_MS.udpUnreplied;
  if (proto === IPPROTO_ICMP || proto === IPPROTO_ICMPV6) return TIMEOUTS_MS.icmp;
  return TIMEOUTS_MS.generic;
}

/**
 * Whether a TCP packet with `flags` and no flow may open one, as Linux
 * nf_conntrack_proto_tcp.c judges it (tcp_valid_flags, then tcp_conntracks[dir][index][sNO],
 * PSH/ECE/CWR ignored): SYN (with URG) starts a connection and, with nf_conntrack_tcp_loose
 * at its default 1, a plain ACK (with URG) picks one up mid-stream. FIN, FIN+ACK, RST,
 * SYN+ACK, no flags and invalid combinations such as SYN+FIN are invalid: dropped.
 */
export function tcpOpensFlow(flags: number): boolean {
  // URG, PSH, ECE and CWR do not change the verdict
  const f = flags & (TCP_FIN | TCP_SYN | TCP_RST | TCP_ACKF);
  return f === TCP_SYN || f === TCP_ACKF;
}

/** The state a new TCP flow starts in, from its first packet's flags. */
export function tcpFirstState(flags: number): number {
  return (flags & TCP_SYN) !== 0 ? TCP_SYN_SENT : TCP_ESTABLISHED;
}

export function hashKey(k: Uint32Array, off: number): number {
  let h = 0x811c9dc5;
  h = mix(h, k[off + K_PROTO]!);
  h = mix(h, k[off + K_PORTS]!);
  h = mix(h, k[off + K_SRC]!);
  h = mix(h, k[off + K_DST]!);
  // the other address words are zero for IPv4 keys
  if (k[off + K_PROTO]! >>> 8 === 6) h = mixRest6(h, k, off);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Whether two keys are equal; IPv4 keys differ only in their first address words. */
function keyEquals(a: Uint32Array, ao: number, b: Uint32Array, bo: number): boolean {
  if (
    a[ao + K_PROTO] !== b[bo + K_PROTO] ||
    a[ao + K_PORTS] !== b[bo + K_PORTS] ||
    a[ao + K_SRC] !== b[bo + K_SRC] ||
    a[ao + K_DST] !== b[bo + K_DST]
  )
    return false;
  return a[ao + K_PROTO]! >>> 8 === 4 || restEquals6(a, ao, b, bo);
}

/** hashKey's and keyEquals's IPv6 address words past the first (apart: they keep IPv4 small). */
function mixRest6(h: number, k: Uint32Array, off: number): number {
  for (let i = 1; i < 4; i++) {
    h = mix(h, k[off + K_SRC + i]!);
    h = mix(h, k[off + K_DST + i]!);
  }
  return h;
}

function restEquals6(a: Uint32Array, ao: number, b: Uint32Array, bo: number): boolean {
  for (let i = 1; i < 4; i++)
    if (a[ao + K_SRC + i] !== b[bo + K_SRC + i] || a[ao + K_DST + i] !== b[bo + K_DST + i]) return false;
  return true;
}

function mix(h: number, w: number): number {
  h = Math.imul(h ^ w, 0x01000193);
  return h ^ (h >>> 15);
}

class FlowIndex {
  readonly slots: Int32Array;
  readonly mask: number;
  constructor(capacity: number) {
    let n = 16;
    while (n < capacity * 2) n *= 2;
    this.slots = new Int32Array(n);
    this.mask = n - 1;
  }
}

export class Conntrack {
  readonly capacity: number;
  size = 0;
  readonly keys: Uint32Array;
  readonly hashes: Uint32Array;
  readonly link: Int32Array;
  readonly state: Uint8Array;
  readonly flags: Uint8Array;
  /** Index into the owning client's rule counters (the rule that admitted the flow). */
  readonly rule: Int32Array;
  readonly expires: Float64Array;
  readonly lastSeen: Float64Array;
  readonly used: Uint8Array;
  /** Bumped each time a slot takes a new flow, so stale references can tell. */
  readonly generation: Uint32Array;
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  private head = -1; // most recently used
  private tail = -1; // least recently used
  private readonly free: Int32Array;
  private freeTop: number;
  private readonly orig: FlowIndex;
  private readonly reply: FlowIndex;
  evictions = 0;
  /** Flows whose reply tuple uses each local port: UDP at [port], TCP at [65536 + port]. */
  readonly localPortUse = new Uint16Array(65536 * 2);
  /** Flows per link (client), for the per-client share of the table. */
  private perLink = new Int32Array(64);
  /** The engine's clock, for expiry on lookup. */
  now = 0;
  expirations = 0;
  private sweepCursor = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.keys = new Uint32Array(capacity * KEY_WORDS * 2);
    this.hashes = new Uint32Array(capacity * 2);
    this.link = new Int32Array(capacity);
    this.state = new Uint8Array(capacity);
    this.flags = new Uint8Array(capacity);
    this.rule = new Int32Array(capacity);
    this.expires = new Float64Array(capacity);
    this.lastSeen = new Float64Array(capacity);
    this.used = new Uint8Array(capacity);
    this.generation = new Uint32Array(capacity);
    this.prev = new Int32Array(capacity);
    this.next = new Int32Array(capacity);
    this.free = new Int32Array(capacity);
    for (let i = 0; i < capacity; i++) this.free[i] = capacity - 1 - i;
    this.freeTop = capacity;
    this.orig = new FlowIndex(capacity);
    this.reply = new FlowIndex(capacity);
  }

  /** Finds the entry whose original (dir 0) or reply (dir 1) tuple equals key[off..]. */
  lookup(dir: 0 | 1, key: Uint32Array, off: number): number {
    const index = dir === 0 ? this.orig : this.reply;
    const h = hashKey(key, off);
    const slots = index.slots;
    const mask = index.mask;
    const keys = this.keys;
    const base = dir * KEY_WORDS;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const s = slots[i]!;
      if (s === 0) return -1;
      const e = s - 1;
      if (this.hashes[e * 2 + dir] !== h) continue;
      const ko = e * KEY_WORDS * 2 + base;
      if (!keyEquals(keys, ko, key, off)) continue;
      // an expired flow is gone even if the sweep has not reached it yet
      if (this.expires[e]! <= this.now) {
        this.remove(e);
        this.expirations++;
        return -1;
      }
      return e;
    }
  }

  /**
   * Takes a free entry, evicting when full: first an expired flow, then one that is not
   * assured (unanswered UDP, half-open TCP, ICMP), then an established flow idle for more
   * than LIVE_MS. Returns -1 when only live established flows are left (the new flow is
   * dropped, as Linux does when early_drop finds nothing).
   */
  allocate(now: number): number {
    if (this.freeTop === 0) {
      let victim = -1;
      let unassured = -1;
      for (let e = this.tail, n = 0; e >= 0 && n < EVICT_SCAN; e = this.prev[e]!, n++) {
        if (this.expires[e]! <= now) {
          victim = e;
          break;
        }
        if (unassured < 0 && (this.flags[e]! & F_ASSURED) === 0) unassured = e;
      }
      if (victim < 0) victim = unassured;
      if (victim < 0 && this.tail >= 0 && now - this.lastSeen[this.tail]! > LIVE_MS) victim = this.tail;
      if (victim < 0) return -1;
      if (this.expires[victim]! <= now) this.expirations++;
      else this.evictions++;
      this.remove(victim);
    }
    return this.free[--this.freeTop]!;
  }

  /** Publishes an allocated entry whose keys have been written (both tuples). */
  insert(e: number, link: number, state: number, rule: number, now: number, timeout: number): void {
    const ko = e * KEY_WORDS * 2;
    const ho = hashKey(this.keys, ko);
    const hr = hashKey(this.keys, ko + KEY_WORDS);
    this.hashes[e * 2] = ho;
    this.hashes[e * 2 + 1] = hr;
    this.put(this.orig, ho, e);
    this.put(this.reply, hr, e);
    this.link[e] = link;
    this.state[e] = state;
    this.flags[e] = 0;
    this.rule[e] = rule;
    this.lastSeen[e] = now;
    this.expires[e] = now + timeout;
    this.used[e] = 1;
    this.generation[e] = (this.generation[e]! + 1) >>> 0;
    if (link >= this.perLink.length) {
      const grown = new Int32Array(Math.max(link + 1, this.perLink.length * 2));
      grown.set(this.perLink);
      this.perLink = grown;
    }
    this.perLink[link]! += 1;
    this.portUse(e, 1);
    this.prev[e] = -1;
    this.next[e] = this.head;
    if (this.head >= 0) this.prev[this.head] = e;
    this.head = e;
    if (this.tail < 0) this.tail = e;
    this.size++;
  }

  private put(index: FlowIndex, h: number, e: number): void {
    const slots = index.slots;
    let i = h & index.mask;
    while (slots[i] !== 0) i = (i + 1) & index.mask;
    slots[i] = e + 1;
  }

  /** Backward-shift deletion keeps linear probing tombstone-free. */
  private unindex(index: FlowIndex, dir: number, e: number): void {
    const slots = index.slots;
    const mask = index.mask;
    let i = this.hashes[e * 2 + dir]! & mask;
    while (slots[i] !== e + 1) i = (i + 1) & mask;
    for (let j = (i + 1) & mask; ; j = (j + 1) & mask) {
      const s = slots[j]!;
      if (s === 0) break;
      const home = this.hashes[(s - 1) * 2 + dir]! & mask;
      // move s back to the hole at i unless its home lies cyclically in (i, j]
      const inRange = i <= j ? home > i && home <= j : home > i || home <= j;
      if (!inRange) {
        slots[i] = s;
        i = j;
      }
    }
    slots[i] = 0;
  }

  remove(e: number): void {
    if (this.used[e] === 0) return;
    this.unindex(this.orig, 0, e);
    this.unindex(this.reply, 1, e);
    const p = this.prev[e]!;
    const n = this.next[e]!;
    if (p >= 0) this.next[p] = n;
    else this.head = n;
    if (n >= 0) this.prev[n] = p;
    else this.tail = p;
    this.used[e] = 0;
    this.perLink[this.link[e]!]! -= 1;
    this.portUse(e, -1);
    this.free[this.freeTop++] = e;
    this.size--;
  }

  private portUse(e: number, d: number): void {
    const ko = e * KEY_WORDS * 2 + KEY_WORDS;
    const proto = this.keys[ko + K_PROTO]! & 0xff;
    if (proto !== IPPROTO_TCP && proto !== IPPROTO_UDP) return;
    const i = (proto === IPPROTO_TCP ? 65536 : 0) + (this.keys[ko + K_PORTS]! & 0xffff);
    // saturating: 65,535 flows on one port (to as many remotes) is already the ceiling
    const v = this.localPortUse[i]! + d;
    if (v >= 0 && v <= 0xffff) this.localPortUse[i] = v;
  }

  /** How many flows belong to `link`. */
  countOf(link: number): number {
    return link < this.perLink.length ? this.perLink[link]! : 0;
  }

  /**
   * Makes room within one link's share: removes that link's least recently used expired or
   * unassured flow among the `EVICT_SCAN * 4` oldest flows. False when it has none there.
   */
  evictOwn(link: number, now: number): boolean {
    for (let e = this.tail, n = 0; e >= 0 && n < EVICT_SCAN * 4; e = this.prev[e]!, n++) {
      if (this.link[e] !== link) continue;
      if (this.expires[e]! <= now || (this.flags[e]! & F_ASSURED) === 0) {
        if (this.expires[e]! <= now) this.expirations++;
        else this.evictions++;
        this.remove(e);
        return true;
      }
    }
    return false;
  }

  /** Marks use: moves to the LRU head and pushes the expiry out. */
  touch(e: number, now: number, timeout: number): void {
    this.lastSeen[e] = now;
    this.expires[e] = now + timeout;
    if (this.head === e) return;
    const p = this.prev[e]!;
    const n = this.next[e]!;
    this.next[p] = n;
    if (n >= 0) this.prev[n] = p;
    else this.tail = p;
    this.prev[e] = -1;
    this.next[e] = this.head;
    this.prev[this.head] = e;
    this.head = e;
  }

  /** Removes every flow for which `doomed(e)` holds; returns how many went. */
  removeWhere(doomed: (e: number) => boolean): number {
    let n = 0;
    for (let e = 0; e < this.capacity; e++) {
      if (this.used[e] === 1 && doomed(e)) {
        this.remove(e);
        n++;
      }
    }
    return n;
  }

  /** Where tuple `dir` (0 original, 1 reply) of entry e starts in `keys`. */
  keyOffset(e: number, dir: 0 | 1): number {
    return e * KEY_WORDS * 2 + dir * KEY_WORDS;
  }

  family(e: number): 4 | 6 {
    return (this.keys[e * KEY_WORDS * 2 + K_PROTO]! >>> 8) as 4 | 6;
  }

  proto(e: number): number {
    return this.keys[e * KEY_WORDS * 2 + K_PROTO]! & 0xff;
  }

  /** The address `field` (K_SRC or K_DST) of tuple `dir` as bytes (16 written; IPv4 in the first 4). */
  address(e: number, dir: 0 | 1, field: number, out: Uint8Array): void {
    const o = this.keyOffset(e, dir) + field;
    for (let i = 0; i < 4; i++) {
      const w = this.keys[o + i]!;
      out[i * 4] = w >>> 24;
      out[i * 4 + 1] = w >>> 16;
      out[i * 4 + 2] = w >>> 8;
      out[i * 4 + 3] = w;
    }
  }

  /** Whether the address `field` of tuple `dir` equals buf[off..off+4·words). */
  addressEquals(e: number, dir: 0 | 1, field: number, buf: Uint8Array, off: number): boolean {
    const o = this.keyOffset(e, dir) + field;
    const words = this.family(e) === 4 ? 1 : 4;
    for (let i = 0; i < words; i++) if (this.keys[o + i] !== read32(buf, off + i * 4)) return false;
    return true;
  }

  /** Entry e's timeout in its current state. */
  timeoutOf(e: number): number {
    return flowTimeout(this.proto(e), this.state[e]!, this.flags[e]!);
  }

  /**
   * A simplified nf_conntrack_proto_tcp state machine (no window tracking): SYN, SYN+ACK,
   * ACK open; FINs from both sides and the last ACK close; RST closes. Moves entry e on a
   * packet with `flags` travelling in `dir`; false for a packet Linux would call invalid.
   */
  trackTcp(e: number, dir: 0 | 1, f: number, now: number): boolean {
    // the usual packet of an assured established flow (no SYN, FIN or RST) changes nothing
    // but the expiry: apart from the transitions, so that the hot path inlines this much
    if (
      (f & (TCP_RST | TCP_SYN | TCP_FIN)) === 0 &&
      this.state[e] === TCP_ESTABLISHED &&
      (this.flags[e]! & F_ASSURED) !== 0
    ) {
      this.touch(e, now, TIMEOUTS_MS.tcpEstablished);
      return true;
    }
    return this.tcpTransition(e, dir, f, now);
  }

  /** trackTcp past its common case. */
  private tcpTransition(e: number, dir: 0 | 1, f: number, now: number): boolean {
    let st = this.state[e]!;
    let fl = this.flags[e]!;
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
    this.state[e] = st;
    this.flags[e] = fl;
    this.touch(e, now, tcpTimeout(st));
    return true;
  }

  /** A reply on a non-TCP flow: answered and assured, timeout renewed. */
  markReplied(e: number, now: number): void {
    this.flags[e] = this.flags[e]! | F_SEEN_REPLY | F_ASSURED;
    this.touch(e, now, this.timeoutOf(e));
  }

  /** Removes expired entries, looking at up to `budget` slots per call (called from tick). */
  sweep(now: number, budget: number): number {
    let removed = 0;
    for (let n = 0; n < budget && n < this.capacity; n++) {
      const e = this.sweepCursor;
      this.sweepCursor = (e + 1) % this.capacity;
      if (this.used[e] === 1 && this.expires[e]! <= now) {
        this.remove(e);
        this.expirations++;
        removed++;
      }
    }
    return removed;
  }
}
