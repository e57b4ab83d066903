/** One client link (one vif) and its counters. */
import type { RuleSet } from '../rules/types.ts';
import { parseIpv4Text, parseIpv6Text } from '../wire/address.ts';
import { read32 } from '../wire/checksum.ts';
import type { FrameMeta } from './config.ts';
import { DROP_REASON_COUNT } from './reasons.ts';

export const C_RX_PACKETS = 0;
export const C_RX_BYTES = 1;
export const C_TX_PACKETS = 2;
export const C_TX_BYTES = 3;
export const C_ACCEPTED = 4;
export const C_DROPPED = 5;
export const C_DROP_BASE = 6;
export const COUNTER_SLOTS = C_DROP_BASE + DROP_REASON_COUNT;

/** Fragment trains remembered per link: (proto, ident, src, dst) -> flow. */
export class FragmentTable {
  readonly key: Uint32Array;
  readonly entry: Int32Array;
  /** The flow's generation when remembered: a reused conntrack slot is another flow. */
  readonly generation: Uint32Array;
  readonly expires: Float64Array;
  constructor(readonly capacity: number) {
    this.key = new Uint32Array(capacity * 10);
    this.entry = new Int32Array(capacity).fill(-1);
    this.generation = new Uint32Array(capacity);
    this.expires = new Float64Array(capacity);
  }
  find(k: Uint32Array, now: number): number {
    for (let i = 0; i < this.capacity; i++) {
      if (this.entry[i]! < 0 || this.expires[i]! <= now) continue;
      const o = i * 10;
      let j = 0;
      for (; j < 10; j++) if (this.key[o + j] !== k[j]) break;
      if (j === 10) return i;
    }
    return -1;
  }
  /** Remembers a train, replacing an expired slot or else the one closest to expiry. */
  add(k: Uint32Array, entry: number, generation: number, now: number, ttl: number): void {
    let slot = 0;
    let soonest = Number.POSITIVE_INFINITY;
    for (let i = 0; i < this.capacity; i++) {
      if (this.entry[i]! < 0 || this.expires[i]! <= now) {
        slot = i;
        break;
      }
      if (this.expires[i]! < soonest) {
        soonest = this.expires[i]!;
        slot = i;
      }
    }
    this.key.set(k.subarray(0, 10), slot * 10);
    this.entry[slot] = entry;
    this.generation[slot] = generation;
    this.expires[slot] = now + ttl;
  }
  count(now: number): number {
    let n = 0;
    for (let i = 0; i < this.capacity; i++) if (this.entry[i]! >= 0 && this.expires[i]! > now) n++;
    return n;
  }
}

/** Out-of-order fragments held per link, and the largest frame held (a 1500-byte MTU frame fits). */
export const HELD_FRAGMENTS = 8;
export const HELD_FRAGMENT_BYTES = 2048;

export class ClientLink {
  readonly counters = new Float64Array(COUNTER_SLOTS);
  /** The address the client uses on its link (visible IP), as a uint32. */
  readonly ip4: number;
  readonly realIp4: Uint8Array;
  readonly ip4Bytes: Uint8Array;
  /** The gateway address the client uses (visible gateway or the firewall's). */
  readonly gateway4: number;
  readonly gateway4Bytes: Uint8Array;
  readonly ip6: Uint8Array | undefined;
  ruleSet: RuleSet | undefined = undefined;
  /** packets, bytes per rule in evaluation order, then the policy. */
  ruleCounters = new Float64Array(2);
  ruleIndex = new Map<number, number>();
  readonly fragments: FragmentTable;
  readonly held: FragmentHold;

  constructor(
    readonly link: number,
    readonly name: string,
    readonly mac: Uint8Array,
    realIp4: Uint8Array,
    visibleIp4: Uint8Array,
    gateway4: Uint8Array,
    ip6: Uint8Array | undefined,
    fragmentCapacity: number,
  ) {
    this.realIp4 = realIp4.slice(0, 4);
    this.ip4Bytes = visibleIp4.slice(0, 4);
    this.ip4 = read32(visibleIp4, 0);
    this.gateway4Bytes = gateway4.slice(0, 4);
    this.gateway4 = read32(gateway4, 0);
    this.ip6 = ip6?.slice(0, 16);
    this.fragments = new FragmentTable(fragmentCapacity);
    this.held = new FragmentHold(HELD_FRAGMENTS, HELD_FRAGMENT_BYTES);
  }

  setRuleSet(ruleSet: RuleSet | undefined): void {
    this.ruleSet = ruleSet;
    const numbers = ruleSet?.ruleNumbers ?? [];
    this.ruleIndex = new Map(numbers.map((n, i) => [n, i]));
    this.ruleCounters = new Float64Array((numbers.length + 1) * 2);
  }

  /** The counter slot for a decision's rule number (-1 = policy). */
  ruleSlot(rule: number): number {
    return rule < 0 ? this.ruleIndex.size : (this.ruleIndex.get(rule) ?? this.ruleIndex.size);
  }
}

/**
 * The addresses in a vif's XenStore backend `ip` key: space-separated, the first IPv4 and
 * the first IPv6 are the client's (as vif-route-qubes reads them). Unparseable tokens are
 * skipped; a key without an IPv4 address gives none.
 */
export function parseVifAddresses(text: string): {
  ip4: Uint8Array | undefined;
  ip6: Uint8Array | undefined;
} {
  let ip4: Uint8Array | undefined;
  let ip6: Uint8Array | undefined;
  for (const token of text.slice(0, 1024).split(/\s+/)) {
    if (!token) continue;
    if (!ip4 && token.includes('.') && !token.includes(':')) ip4 = parseIpv4Text(token);
    else if (!ip6 && token.includes(':')) ip6 = parseIpv6Text(token);
  }
  return { ip4, ip6 };
}

/**
 * Fragments that arrived before their first fragment, held (copied) until it comes: a fixed
 * number of slots of fixed size per link, so reordering costs bounded memory. Unclaimed
 * fragments expire with the fragment timeout.
 */
export class FragmentHold {
  private readonly bufs: Uint8Array[] = [];
  private readonly lens: Int32Array;
  private readonly expires: Float64Array;
  private readonly keys: Uint32Array;
  private readonly metas: FrameMeta[] = [];
  /** Held fragments that expired or were pushed out unclaimed. */
  lost = 0;

  constructor(
    readonly slots: number,
    readonly slotBytes: number,
  ) {
    this.lens = new Int32Array(slots);
    this.expires = new Float64Array(slots);
    this.keys = new Uint32Array(slots * 10);
    for (let i = 0; i < slots; i++) {
      this.bufs.push(new Uint8Array(slotBytes));
      this.metas.push({ csumBlank: false, dataValidated: false, gsoType: 0, gsoSize: 0 });
    }
  }

  /** Copies the frame into a slot (the oldest one if all are taken); false when it cannot fit. */
  hold(
    key: Uint32Array,
    buf: Uint8Array,
    off: number,
    len: number,
    meta: FrameMeta,
    now: number,
    ttl: number,
  ): boolean {
    if (len > this.slotBytes || len <= 0) return false;
    let slot = 0;
    let oldest = Number.POSITIVE_INFINITY;
    for (let i = 0; i < this.slots; i++) {
      if (this.lens[i] === 0 || this.expires[i]! <= now) {
        if (this.lens[i] !== 0) this.lost++;
        slot = i;
        oldest = Number.NEGATIVE_INFINITY;
        break;
      }
      if (this.expires[i]! < oldest) {
        oldest = this.expires[i]!;
        slot = i;
      }
    }
    if (oldest !== Number.NEGATIVE_INFINITY) this.lost++;
    const b = this.bufs[slot]!;
    for (let i = 0; i < len; i++) b[i] = buf[off + i]!;
    this.lens[slot] = len;
    this.expires[slot] = now + ttl;
    for (let i = 0; i < 10; i++) this.keys[slot * 10 + i] = key[i]!;
    const m = this.metas[slot]!;
    m.csumBlank = meta.csumBlank;
    m.dataValidated = meta.dataValidated;
    m.gsoType = meta.gsoType;
    m.gsoSize = meta.gsoSize;
    return true;
  }

  /** Hands every held fragment of the train `key` to `deliver` and frees its slot. */
  release(
    key: Uint32Array,
    now: number,
    deliver: (buf: Uint8Array, len: number, meta: FrameMeta) => void,
  ): void {
    for (let i = 0; i < this.slots; i++) {
      if (this.lens[i] === 0) continue;
      if (this.expires[i]! <= now) {
        this.lens[i] = 0;
        this.lost++;
        continue;
      }
      let j = 0;
      for (; j < 10; j++) if (this.keys[i * 10 + j] !== key[j]) break;
      if (j < 10) continue;
      const len = this.lens[i]!;
      this.lens[i] = 0;
      deliver(this.bufs[i]!, len, this.metas[i]!);
    }
  }

  count(now: number): number {
    let n = 0;
    for (let i = 0; i < this.slots; i++) if (this.lens[i] !== 0 && this.expires[i]! > now) n++;
    return n;
  }
}
