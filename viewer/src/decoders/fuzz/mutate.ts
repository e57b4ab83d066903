/**
 * Deterministic mutations of seed files for fuzzing the decoders: the same seed number and
 * iteration always give the same input, so a finding is reproduced from two numbers.
 */
import { crc32 } from '../crc32.ts';
import { isPng } from '../png.ts';
import { isWebp } from '../webp.ts';

/** xorshift32: small, fast, deterministic; not for anything cryptographic. */
export class Prng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let x = this.state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.state = x >>> 0;
    return this.state;
  }
  below(n: number): number {
    return n <= 0 ? 0 : this.next() % n;
  }
}

const interesting8 = [0, 1, 0x7f, 0x80, 0xfe, 0xff, 0x10, 0x40];
const interesting32 = [
  0, 1, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x3fffffff, 0x7fffffff, 0x80000000, 0xffffffff,
];

/** One mutated input built from `seeds[pick]`, by 1–4 stacked mutations. */
export function mutate(seeds: readonly Uint8Array[], rng: Prng): Uint8Array {
  let data: Uint8Array = (seeds[rng.below(seeds.length)] as Uint8Array).slice();
  const rounds = 1 + rng.below(4);
  for (let r = 0; r < rounds; r++) data = mutateOnce(data, seeds, rng);
  // PNG chunks carry CRCs: repair them half of the time so mutations reach the decoder
  // proper instead of stopping at the CRC check.
  if (isPng(data) && rng.below(2) === 0) fixPngCrcs(data);
  // Likewise WebP's RIFF size (and a simple file's only chunk size), which nearly every
  // length-changing mutation breaks.
  if (isWebp(data) && rng.below(2) === 0) fixWebpSizes(data);
  return data;
}

function mutateOnce(data: Uint8Array, seeds: readonly Uint8Array[], rng: Prng): Uint8Array {
  const n = data.length;
  if (n === 0) return data;
  switch (rng.below(8)) {
    case 0: {
      const flips = 1 + rng.below(8);
      for (let i = 0; i < flips; i++) {
        const at = rng.below(n);
        data[at] = (data[at] as number) ^ (1 << rng.below(8));
      }
      return data;
    }
    case 1: {
      data[rng.below(n)] = interesting8[rng.below(interesting8.length)] as number;
      return data;
    }
    case 2: {
      // A 16- or 32-bit field set to an edge value, either byte order.
      const value = interesting32[rng.below(interesting32.length)] as number;
      const width = rng.below(2) === 0 ? 2 : 4;
      const at = rng.below(Math.max(1, n - width));
      const little = rng.below(2) === 0;
      for (let i = 0; i < width && at + i < n; i++) {
        const shift = 8 * (little ? i : width - 1 - i);
        data[at + i] = (value >>> shift) & 0xff;
      }
      return data;
    }
    case 3:
      return data.slice(0, rng.below(n));
    case 4: {
      const at = rng.below(n);
      const len = 1 + rng.below(Math.min(64, n - at));
      const out = new Uint8Array(n - len);
      out.set(data.subarray(0, at));
      out.set(data.subarray(at + len), at);
      return out;
    }
    case 5: {
      // Duplicate a range in place (repeats chunks, blocks, segments).
      const at = rng.below(n);
      const len = 1 + rng.below(Math.min(256, n - at));
      const out = new Uint8Array(n + len);
      out.set(data.subarray(0, at + len));
      out.set(data.subarray(at), at + len);
      return out;
    }
    case 6: {
      // Head of this input, tail of another seed.
      const other = seeds[rng.below(seeds.length)] as Uint8Array;
      const cut = rng.below(n);
      const from = rng.below(other.length);
      const out = new Uint8Array(cut + other.length - from);
      out.set(data.subarray(0, cut));
      out.set(other.subarray(from), cut);
      return out;
    }
    default: {
      const at = rng.below(n);
      const len = Math.min(n - at, 1 + rng.below(32));
      for (let i = 0; i < len; i++) data[at + i] = rng.below(256);
      return data;
    }
  }
}

function fixPngCrcs(data: Uint8Array): void {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let pos = 8;
  while (pos + 12 <= data.length) {
    const length = view.getUint32(pos);
    const end = pos + 8 + length;
    if (end + 4 > data.length) return;
    view.setUint32(end, crc32(data, pos + 4, end));
    pos = end + 4;
  }
}

function fixWebpSizes(data: Uint8Array): void {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  view.setUint32(4, data.length - 8, true);
  const tag = String.fromCharCode(...data.subarray(12, 16));
  if ((tag === 'VP8 ' || tag === 'VP8L') && data.length >= 20) view.setUint32(16, data.length - 20, true);
}
