import { constants, deflateSync } from 'node:zlib';
import { zlibSync } from 'fflate';
import { describe, expect, it } from 'vitest';
import { InflateError, inflateZlib, inflateZlibStreaming } from './inflate.ts';

// zlib (node:zlib, test side only) and fflate produce the streams: every block type, code
// lengths up to 15 bits (skewed data), long and overlapping matches.
let seed = 12345;
const random = () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed / 2 ** 32;
};
const noise = (n: number) => Uint8Array.from({ length: n }, () => random() * 256);
const runs = (n: number) => {
  const a = new Uint8Array(n);
  for (let i = 1; i < n; i++) a[i] = random() < 0.1 ? random() * 256 : (a[i - 1] as number);
  return a;
};
/** Very uneven byte frequencies: long (up to 15-bit) literal codes and sub-tables. */
const skewed = (n: number) => Uint8Array.from({ length: n }, () => (random() ** 6 * 256) | 0);
const text = (n: number) =>
  new TextEncoder()
    .encode('the quick brown fox jumps over the lazy dog; '.repeat(Math.ceil(n / 45)))
    .slice(0, n);

const inflated = (stream: Uint8Array, size: number) => {
  const out = new Uint8Array(size);
  return out.subarray(0, inflateZlib(stream, out));
};
/** Equal bytes (toEqual on large arrays is slow). */
const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

describe('inflate', () => {
  it('reproduces zlib-compressed data at every level and strategy', () => {
    const strategies = [
      constants.Z_DEFAULT_STRATEGY,
      constants.Z_FIXED,
      constants.Z_HUFFMAN_ONLY,
      constants.Z_RLE,
      constants.Z_FILTERED,
    ];
    for (const make of [noise, runs, skewed, text])
      for (const n of [0, 1, 2, 3, 258, 259, 1000, 70_000, 200_000]) {
        const data = make(n);
        for (const level of [0, 1, 6, 9])
          for (const strategy of strategies) {
            const stream = new Uint8Array(deflateSync(data, { level, strategy }));
            expect(
              same(inflated(stream, n), data),
              `${make.name} ${n} level ${level} strategy ${strategy}`,
            ).toBe(true);
          }
        expect(same(inflated(zlibSync(data, { level: 9 }), n), data), `${make.name} ${n} fflate`).toBe(true);
      }
  });

  it('stops when the output is full and reports a short stream by its length', () => {
    const data = skewed(50_000);
    const stream = new Uint8Array(deflateSync(data));
    for (const size of [0, 1, 100, 49_999])
      expect(same(inflated(stream, size), data.subarray(0, size))).toBe(true);
    const out = new Uint8Array(60_000);
    expect(inflateZlib(stream, out)).toBe(50_000);
    const stored = new Uint8Array(deflateSync(data, { level: 0 }));
    expect(same(inflated(stored, 12_345), data.subarray(0, 12_345))).toBe(true);
  });

  it('calls back before every block', () => {
    const data = noise(200_000);
    let blocks = 0;
    inflateZlib(new Uint8Array(deflateSync(data, { level: 0 })), new Uint8Array(data.length), () => blocks++);
    expect(blocks).toBeGreaterThanOrEqual(Math.ceil(data.length / 65_535));
  });

  const refuses = (stream: Uint8Array, reason: RegExp) =>
    expect(() => inflateZlib(stream, new Uint8Array(1000))).toThrow(reason);

  it('refuses malformed streams with a reason', () => {
    refuses(Uint8Array.of(0x78), /shorter than its header/);
    refuses(Uint8Array.of(0x79, 0x9c, 0, 0), /invalid zlib header/);
    refuses(Uint8Array.of(0x78, 0x9d, 0, 0), /invalid zlib header/);
    refuses(Uint8Array.of(0x78, 0xbb, 0, 0, 0, 0), /preset dictionary/);
    // Final block of type 3.
    refuses(Uint8Array.of(0x78, 0x9c, 0b111), /invalid block type/);
    // Stored block whose length and complement disagree.
    refuses(Uint8Array.of(0x78, 0x9c, 1, 5, 0, 0, 0), /complement/);
    // Stored block longer than the input.
    refuses(Uint8Array.of(0x78, 0x9c, 1, 5, 0, 0xfa, 0xff, 1, 2), /end of compressed data/);
    // Fixed block: literal 'a' then a match at distance 2 (only 1 byte written).
    // Codes: 'a' = 0x91 (8 bits), length 3 = 257 (7 bits 0000001), distance 2 = 1 (00001).
    refuses(
      fixedBlock([
        [0x91, 8],
        [0b0000001, 7],
        [0b00001, 5],
        [0, 7],
      ]),
      /before the start/,
    );
    // Dynamic block whose code-length code lengths are over-subscribed (four of length 1).
    refuses(
      bitsToStream([
        [1, 1],
        [2, 2],
        [0, 5],
        [0, 5],
        [15, 4],
        [1, 3],
        [1, 3],
        [1, 3],
        [1, 3],
      ]),
      /over-subscribed/,
    );
  });

  it('refuses every truncation of a stream, or returns the part it could decode', () => {
    const data = skewed(3000);
    const stream = new Uint8Array(deflateSync(data));
    for (let cut = 0; cut < stream.length; cut++) {
      const out = new Uint8Array(3000);
      try {
        const n = inflateZlib(stream.subarray(0, cut), out);
        expect(same(out.subarray(0, n), data.subarray(0, n))).toBe(true);
      } catch (error) {
        expect(error).toBeInstanceOf(InflateError);
      }
    }
  });

  it('survives random damage: only InflateError, output never beyond its buffer', () => {
    const data = skewed(20_000);
    const stream = new Uint8Array(deflateSync(data, { level: 9 }));
    for (let round = 0; round < 2000; round++) {
      const bad = stream.slice();
      for (let k = 0; k < 1 + random() * 4; k++) {
        const at = (2 + random() * (bad.length - 2)) | 0;
        bad[at] = (bad[at] as number) ^ (1 << ((random() * 8) | 0));
      }
      const out = new Uint8Array(20_000);
      try {
        expect(inflateZlib(bad, out)).toBeLessThanOrEqual(out.length);
      } catch (error) {
        expect(error).toBeInstanceOf(InflateError);
      }
    }
  });
});

/** A zlib header then `fields` ([value, bit count], least significant bit first). */
function bitsToStream(fields: [number, number][]): Uint8Array {
  const bytes = [0x78, 0x9c];
  let acc = 0;
  let n = 0;
  for (const [value, count] of fields)
    for (let b = 0; b < count; b++) {
      acc |= ((value >> b) & 1) << n;
      if (++n === 8) {
        bytes.push(acc);
        acc = 0;
        n = 0;
      }
    }
  if (n > 0) bytes.push(acc);
  for (let i = 0; i < 8; i++) bytes.push(0);
  return Uint8Array.from(bytes);
}

/** A final fixed-Huffman block of `codes` ([code, length], sent most significant bit first). */
function fixedBlock(codes: [number, number][]): Uint8Array {
  const fields: [number, number][] = [
    [1, 1],
    [1, 2],
  ];
  for (const [code, length] of codes) for (let b = length - 1; b >= 0; b--) fields.push([(code >> b) & 1, 1]);
  return bitsToStream(fields);
}

describe('inflate through a sliding window', () => {
  /** Everything the streaming inflate hands over, joined. */
  const streamed = (stream: Uint8Array, windowSize: number, stopAfter = Number.POSITIVE_INFINITY) => {
    const pieces: Uint8Array[] = [];
    let total = 0;
    const produced = inflateZlibStreaming(stream, new Uint8Array(windowSize), (window, from, to) => {
      pieces.push(window.slice(from, to));
      total += to - from;
      return total >= stopAfter;
    });
    return { bytes: Buffer.concat(pieces), produced };
  };

  it('hands over exactly the bytes zlib compressed, whatever the window size and block types', () => {
    const inputs = [noise(300_000), runs(500_000), skewed(200_000), text(400_000), new Uint8Array(1_000_000)];
    for (const data of inputs)
      for (const level of [0, 1, 6, 9])
        for (const windowSize of [65536, 65536 + 1000, 200_000]) {
          const { bytes, produced } = streamed(deflateSync(data, { level }), windowSize);
          expect(produced).toBe(data.length);
          expect(same(bytes, data), `level ${level}, window ${windowSize}`).toBe(true);
        }
  });

  it('stops when the sink has what it wants', () => {
    const data = runs(1_000_000);
    const { bytes } = streamed(deflateSync(data), 65536, 100_000);
    expect(bytes.length).toBeGreaterThanOrEqual(100_000);
    expect(bytes.length).toBeLessThan(200_000);
    expect(same(bytes, data.subarray(0, bytes.length))).toBe(true);
  });

  it('refuses the same truncated streams as the whole-buffer inflate, and decodes the same part of the others', () => {
    const data = text(100_000);
    const stream = deflateSync(data);
    for (let cut = 3; cut < stream.length; cut += 97) {
      const part = stream.subarray(0, cut);
      let whole: number | string;
      try {
        whole = inflateZlib(part, new Uint8Array(data.length));
      } catch (error) {
        whole = error instanceof InflateError ? 'refused' : String(error);
      }
      let windowed: number | string;
      try {
        windowed = streamed(part, 65536).produced;
      } catch (error) {
        windowed = error instanceof InflateError ? 'refused' : String(error);
      }
      expect(windowed, `cut at ${cut}`).toBe(whole);
    }
  });
});
