/**
 * The fixed-size fragment state of a link: trains whose first fragment was seen (first-
 * fragment tracking) and later fragments that came before their first, held until it does.
 * Memory per link is fixed; nothing here allocates after construction.
 */
import type { FrameMeta } from './config.ts';

/** Words of a fragment train key: [family<<8 | proto, ident, src(4), dst(4)]. */
export const FRAGMENT_KEY_WORDS = 10;

/** Fragment trains remembered per link: (proto, ident, src, dst) -> flow. */
export class FragmentTable {
  readonly key: Uint32Array;
  readonly entry: Int32Array;
  /** The flow's generation when remembered: a reused conntrack slot is another flow. */
  readonly generation: Uint32Array;
  readonly expires: Float64Array;
  constructor(readonly capacity: number) {
    this.key = new Uint32Array(capacity * FRAGMENT_KEY_WORDS);
    this.entry = new Int32Array(capacity).fill(-1);
    this.generation = new Uint32Array(capacity);
    this.expires = new Float64Array(capacity);
  }
  find(k: Uint32Array, now: number): number {
    for (let i = 0; i < this.capacity; i++) {
      if (this.entry[i]! < 0 || this.expires[i]! <= now) continue;
      const o = i * FRAGMENT_KEY_WORDS;
      let j = 0;
      for (; j < FRAGMENT_KEY_WORDS; j++) if (this.key[o + j] !== k[j]) break;
      if (j === FRAGMENT_KEY_WORDS) return i;
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
    this.key.set(k.subarray(0, FRAGMENT_KEY_WORDS), slot * FRAGMENT_KEY_WORDS);
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
    this.keys = new Uint32Array(slots * FRAGMENT_KEY_WORDS);
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
    for (let i = 0; i < FRAGMENT_KEY_WORDS; i++) this.keys[slot * FRAGMENT_KEY_WORDS + i] = key[i]!;
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
      for (; j < FRAGMENT_KEY_WORDS; j++) if (this.keys[i * FRAGMENT_KEY_WORDS + j] !== key[j]) break;
      if (j < FRAGMENT_KEY_WORDS) continue;
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
