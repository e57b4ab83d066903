import sharp from 'sharp';
import { describe, expect, it, vi } from 'vitest';
import { decodeImage } from './decode.ts';
import { composedFrames, corpusFiles, readCorpus } from './oracle.ts';

// Whole-folder oracle runs: allow for a busy CI machine.
vi.setConfig({ testTimeout: 120_000 });

const folder = 'webp';
const files = corpusFiles(folder, '.webp');

/** sharp's (libwebp's) decode of every frame, RGBA, frames stacked. */
async function sharpFrames(bytes: Uint8Array): Promise<{ width: number; data: Uint8Array; pages: number }> {
  const { data, info } = await sharp(bytes, { animated: true, limitInputPixels: false })
    .ensureAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return {
    width: info.width,
    data: new Uint8Array(data.buffer, data.byteOffset, data.length),
    pages: info.pages ?? 1,
  };
}

describe('WebP against sharp (libwebp) on the generated fixtures', () => {
  it('has lossy, lossless, alpha and animated files', () => {
    expect(files.filter((f) => f.startsWith('lossy-')).length).toBeGreaterThanOrEqual(20);
    expect(files.filter((f) => f.startsWith('lossless-')).length).toBeGreaterThanOrEqual(10);
    expect(files.filter((f) => f.startsWith('alpha-')).length).toBeGreaterThanOrEqual(5);
    expect(
      files.filter((f) => f.startsWith('anim-') || f.startsWith('gif2webp-')).length,
    ).toBeGreaterThanOrEqual(7);
  });

  // Lossy included: the decoder does libwebp's integer arithmetic, so the tolerance is 0
  // for every file (measured: max |Δ| 0 on all of them).
  it('decodes every fixture, every frame, to exactly the RGBA sharp gives', async () => {
    const mismatched: string[] = [];
    for (const name of files) {
      const bytes = readCorpus(folder, name);
      const ours = decodeImage(bytes);
      if (!ours.ok) {
        mismatched.push(`${name}: refused (${ours.reason})`);
        continue;
      }
      const ref = await sharpFrames(bytes);
      const { width, height } = ours.image;
      const frames = composedFrames(ours.image);
      const frameBytes = width * height * 4;
      if (
        width !== ref.width ||
        frames.length !== ref.pages ||
        ref.data.length !== frameBytes * frames.length
      ) {
        mismatched.push(
          `${name}: ${width}×${height}×${frames.length}, sharp ${ref.width} wide, ${ref.pages} pages`,
        );
        continue;
      }
      let over = 0;
      let max = 0;
      frames.forEach((frame, f) => {
        for (let i = 0; i < frameBytes; i++) {
          const d = Math.abs((frame[i] as number) - (ref.data[f * frameBytes + i] as number));
          if (d > 0) over++;
          if (d > max) max = d;
        }
      });
      if (over > 0) mismatched.push(`${name}: ${over} samples differ, max ${max}`);
    }
    expect(mismatched).toEqual([]);
  });

  it('reads animation timing and loop count', async () => {
    const ours = decodeImage(readCorpus(folder, 'anim-lossy.webp'));
    if (!ours.ok) throw new Error(ours.reason);
    expect(ours.image.frames.map((f) => f.delayMs)).toEqual([80, 80, 80, 80]);
    expect(ours.image.loopCount).toBe(2);
    const meta = await sharp(readCorpus(folder, 'gif2webp-animated_loop_variable_delay.webp')).metadata();
    const variable = decodeImage(readCorpus(folder, 'gif2webp-animated_loop_variable_delay.webp'));
    if (!variable.ok) throw new Error(variable.reason);
    expect(variable.image.frames.map((f) => f.delayMs)).toEqual(meta.delay);
  });

  it('gives gif2webp files the loop count and delays of their GIF (WebP counts plays, as our loopCount)', () => {
    for (const name of files.filter((f) => f.startsWith('gif2webp-animated_'))) {
      const gifName = `${name.slice('gif2webp-'.length, -'.webp'.length)}.gif`;
      const gif = decodeImage(readCorpus('gif/gif-test-suite', gifName));
      const webp = decodeImage(readCorpus(folder, name));
      if (!gif.ok || !webp.ok) throw new Error(`${name} or its GIF refused`);
      expect(webp.image.loopCount, name).toBe(gif.image.loopCount);
      expect(
        webp.image.frames.map((f) => f.delayMs),
        name,
      ).toEqual(gif.image.frames.map((f) => f.delayMs));
    }
  });

  it('decodes stills at a reduced size like the other formats', () => {
    const half = decodeImage(readCorpus(folder, 'lossy-q75.webp'), undefined, { scale: 2 });
    if (!half.ok) throw new Error(half.reason);
    expect([half.image.width, half.image.height, half.image.scaled?.denominator]).toEqual([151, 101, 2]);
  });

  it('reads the EXIF orientation and skips the metadata chunks', () => {
    const plain = decodeImage(readCorpus(folder, 'lossy-q95.webp'));
    const withExif = decodeImage(readCorpus(folder, 'lossy-exif.webp'));
    expect(plain.ok && withExif.ok).toBe(true);
    if (withExif.ok) expect(withExif.image.orientation).toBe(1);
  });
});

/** LSB-first bit writer for hand-made VP8L streams. */
class BitWriter {
  private readonly bytes: number[] = [];
  private acc = 0;
  private n = 0;
  bits(value: number, count: number): this {
    for (let i = 0; i < count; i++) this.bit((value >> i) & 1);
    return this;
  }
  /** A prefix code, most significant bit first (as VP8L stores codes). */
  code(code: number, length: number): this {
    for (let i = length - 1; i >= 0; i--) this.bit((code >> i) & 1);
    return this;
  }
  private bit(b: number): void {
    this.acc |= b << this.n;
    if (++this.n === 8) {
      this.bytes.push(this.acc);
      this.acc = 0;
      this.n = 0;
    }
  }
  done(): Uint8Array {
    if (this.n > 0) this.bytes.push(this.acc);
    return Uint8Array.from(this.bytes);
  }
}

function riffVp8l(payload: Uint8Array): Uint8Array {
  const size = payload.length + (payload.length & 1);
  const out = new Uint8Array(20 + size);
  const view = new DataView(out.buffer);
  out.set([0x52, 0x49, 0x46, 0x46], 0);
  view.setUint32(4, 12 + size, true);
  out.set([0x57, 0x45, 0x42, 0x50, 0x56, 0x50, 0x38, 0x4c], 8);
  view.setUint32(16, payload.length, true);
  out.set(payload, 20);
  return out;
}

/**
 * A 1×1 VP8L image whose green prefix code has lengths 1..7 for symbols 0..6 and 15 for
 * `longCodes` more symbols: 256 makes the code exactly complete with the largest
 * second-level tables an 8-bit root allows; 255 leaves it incomplete and 257
 * over-subscribes it. The shape of CVE-2023-4863's proof of concept: codes whose
 * second-level tables do not fit what was reserved for valid codes.
 */
function longCodeImage(longCodes: number): Uint8Array {
  const w = new BitWriter();
  w.bits(0x2f, 8).bits(0, 14).bits(0, 14).bits(1, 1).bits(0, 3); // 1×1, alpha used, version 0
  w.bits(0, 1); // no transform
  w.bits(0, 1); // no colour cache
  w.bits(0, 1); // no meta prefix codes
  // Green: a normal code. Code-length code: symbols 1..7 and 15, all 3 bits long.
  w.bits(0, 1).bits(19 - 4, 4);
  const order = [17, 18, 0, 1, 2, 3, 4, 5, 16, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
  const used = [1, 2, 3, 4, 5, 6, 7, 15];
  for (const s of order) w.bits(used.includes(s) ? 3 : 0, 3);
  const lengths = [1, 2, 3, 4, 5, 6, 7, ...Array<number>(longCodes).fill(15)];
  w.bits(1, 1)
    .bits(4, 3)
    .bits(lengths.length - 2, 10); // max_symbol = lengths.length
  for (const len of lengths) w.code(used.indexOf(len), 3);
  // Red, blue, alpha, distance: simple codes with the one symbol 0.
  for (let i = 0; i < 4; i++) w.bits(1, 1).bits(0, 1).bits(0, 1).bits(0, 1);
  w.code(0, 1); // the pixel: green symbol 0 (code "0")
  return riffVp8l(w.done());
}

describe('WebP refusals', () => {
  it('decodes a valid code with the largest second-level tables', () => {
    const result = decodeImage(longCodeImage(256));
    expect(result.ok).toBe(true);
    if (result.ok) expect([...(composedFrames(result.image)[0] ?? [])]).toEqual([0, 0, 0, 0]);
  });

  it('refuses CVE-2023-4863-shaped incomplete and over-subscribed codes before building tables', () => {
    for (const [count, why] of [
      [255, /incomplete/],
      [257, /over-subscribed/],
      [1000, /exceeds the alphabet/],
    ] as const) {
      const result = decodeImage(longCodeImage(count), { maxTotalBytes: 1 << 16 });
      expect(result.ok).toBe(false);
      if (!result.ok) {
        expect(result.kind).toBe('corrupt');
        expect(result.reason).toMatch(why);
      }
    }
  });

  it('refuses every truncation of every small fixture cleanly', () => {
    const problems: string[] = [];
    for (const name of files) {
      const bytes = readCorpus(folder, name);
      if (bytes.length > 20_000) continue;
      for (let cut = 0; cut < bytes.length; cut += Math.max(1, Math.floor(bytes.length / 97))) {
        const result = decodeImage(bytes.subarray(0, cut));
        if (result.ok) problems.push(`${name} cut at ${cut} decoded`);
        else if (result.reason.startsWith('the file could not be decoded'))
          problems.push(`${name} cut at ${cut}: ${result.reason}`);
      }
      // The same with the RIFF and chunk sizes made to fit: the bitstreams themselves end early.
      for (let cut = 30; cut < bytes.length; cut += Math.max(1, Math.floor(bytes.length / 31))) {
        const copy = bytes.slice(0, cut);
        const view = new DataView(copy.buffer);
        view.setUint32(4, cut - 8, true);
        const tag = String.fromCharCode(...copy.subarray(12, 16));
        if (tag === 'VP8 ' || tag === 'VP8L') view.setUint32(16, cut - 20, true);
        const result = decodeImage(copy);
        if (!result.ok && result.reason.startsWith('the file could not be decoded'))
          problems.push(`${name} cut at ${cut} (sizes fixed): ${result.reason}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('checks canvas and frame sizes against the limits before allocating', () => {
    const big = readCorpus(folder, 'lossy-16383x3.webp');
    const limited = decodeImage(big, { maxWidth: 8192 });
    expect(limited.ok).toBe(false);
    if (!limited.ok) expect(limited.kind).toBe('limit');
    const budget = decodeImage(readCorpus(folder, 'lossless-photo.webp'), { maxTotalBytes: 100_000 });
    expect(budget.ok).toBe(false);
    if (!budget.ok) expect(budget.kind).toBe('limit');
    const frames = decodeImage(readCorpus(folder, 'anim-lossy.webp'), { maxFrames: 3 });
    expect(frames.ok).toBe(false);
    if (!frames.ok) expect(frames.kind).toBe('limit');
  });

  it('refuses a VP8X canvas that does not match its image', () => {
    const still = readCorpus(folder, 'alpha-fast.webp').slice();
    // VP8X canvas width - 1 at payload offset 4 (file offset 24).
    still[24] = (still[24] as number) ^ 1;
    const result = decodeImage(still);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toMatch(/header says/);
  });
});
