/**
 * VP8L, WebP's lossless bitstream (RFC 9649 §3–5), written against the RFC and libwebp's
 * decoder (webmproject/libwebp src/dec/vp8l_dec.c) as the reference for edge cases.
 *
 * Prefix-code tables: CVE-2023-4863 was libwebp writing second-level Huffman tables past a
 * buffer sized in advance for "any valid code", because a code was only found invalid
 * (incomplete) after its tables had been filled. Here a code is checked complete (or a
 * single symbol) from its lengths BEFORE any table is built, the table's exact size is
 * computed from those lengths, reserved in the decode budget, and only then allocated and
 * filled; a typed array would also drop an out-of-range write instead of corrupting memory.
 * Every size read from the stream (sub-images, palettes, meta codes, colour cache) is
 * checked and reserved before allocation, and reading past the data ends the decode as
 * `truncated`.
 */
import { type DecodeBudget, refuse } from './budget.ts';
import { codeToPlane } from './webp-tables.ts';

const rootBits = 8;
const maxCodeLength = 15;
const numLiteralCodes = 256;
const numLengthCodes = 24;
const numDistanceCodes = 40;
const maxCacheBits = 11;
const codeLengthCodeOrder = [17, 18, 0, 1, 2, 3, 4, 5, 16, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
const defaultCodeLength = 8;

enum Transform {
  predictor = 0,
  crossColor = 1,
  subtractGreen = 2,
  colorIndexing = 3,
}

/** LSB-first bit reader over one VP8L stream. Reading past the end yields zeros and sets `eos`. */
class BitReader {
  // Public for decodePixels, which runs the same steps on local copies (its hot loop).
  pos: number;
  buf = 0;
  count = 0;
  /** Bits consumed past the end of the data. */
  eos = false;

  constructor(
    readonly data: Uint8Array,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  private fill(): void {
    while (this.count <= 24) {
      const byte = this.pos < this.end ? (this.data[this.pos] as number) : 0;
      this.pos++;
      this.buf |= byte << this.count;
      this.count += 8;
    }
  }

  read(n: number): number {
    if (n === 0) return 0;
    this.fill();
    const v = this.buf & ((1 << n) - 1);
    this.buf >>>= n;
    this.count -= n;
    this.checkEnd();
    return v;
  }

  /** Decodes one symbol with a table made by `buildCode`. */
  symbol(table: Int32Array): number {
    if (this.count < 16) this.fill();
    let e = table[this.buf & 0xff] as number;
    let n = e & 0xffff;
    if (n > 16) {
      this.buf >>>= rootBits;
      this.count -= rootBits;
      e = table[(e >>> 16) + (this.buf & ((1 << (n - 16)) - 1))] as number;
      n = e & 0xffff;
    }
    this.buf >>>= n;
    this.count -= n;
    return e >>> 16;
  }

  /** Sets `eos` once more bits were consumed than the data holds. */
  checkEnd(): boolean {
    if (this.pos > this.end && (this.pos - this.end) * 8 > this.count) this.eos = true;
    return this.eos;
  }
}

const reverseBits = (code: number, len: number): number => {
  let r = 0;
  for (let i = 0; i < len; i++) {
    r = (r << 1) | (code & 1);
    code >>= 1;
  }
  return r;
};

/**
 * Builds a two-level decoding table (8-bit root, one sub-table per root slot whose codes
 * are longer) for `lengths[0..n)`. Entries: symbol << 16 | bits; a root entry that links
 * to a sub-table holds its offset << 16 | (16 + sub-table bits). The code must be complete
 * or a single symbol (as libwebp requires); that is checked before anything is allocated.
 */
function buildCode(
  lengths: Uint8Array,
  n: number,
  budget: DecodeBudget | undefined,
  validateOnly = false,
): Int32Array | undefined {
  const count = new Int32Array(maxCodeLength + 1);
  let symbols = 0;
  let only = 0;
  for (let s = 0; s < n; s++) {
    const len = lengths[s] as number;
    if (len > 0) {
      count[len] = (count[len] as number) + 1;
      symbols++;
      only = s;
    }
  }
  if (symbols === 0) refuse('corrupt', 'WebP lossless prefix code has no symbols');
  if (symbols === 1) {
    if (validateOnly) return undefined;
    budget?.allocate(4 << rootBits, 'WebP lossless prefix table');
    return new Int32Array(1 << rootBits).fill(only << 16);
  }
  let left = 1;
  for (let len = 1; len <= maxCodeLength; len++) {
    left = (left << 1) - (count[len] as number);
    if (left < 0) refuse('corrupt', 'WebP lossless prefix code is over-subscribed');
  }
  if (left !== 0) refuse('corrupt', 'WebP lossless prefix code is incomplete');
  if (validateOnly) return undefined;
  // Canonical codes (shorter first, then by symbol), bit-reversed for LSB-first reading.
  const next = new Int32Array(maxCodeLength + 1);
  count[0] = 0;
  for (let len = 1, code = 0; len <= maxCodeLength; len++) {
    code = (code + (count[len - 1] as number)) << 1;
    next[len] = code;
  }
  const codes = new Int32Array(n);
  const subBits = new Int32Array(1 << rootBits);
  for (let s = 0; s < n; s++) {
    const len = lengths[s] as number;
    if (len === 0) continue;
    const c = next[len] as number;
    next[len] = c + 1;
    const rev = reverseBits(c, len);
    codes[s] = rev;
    if (len > rootBits) {
      const slot = rev & ((1 << rootBits) - 1);
      subBits[slot] = Math.max(subBits[slot] as number, len - rootBits);
    }
  }
  let size = 1 << rootBits;
  const subStart = new Int32Array(1 << rootBits);
  for (let slot = 0; slot < 1 << rootBits; slot++) {
    const b = subBits[slot] as number;
    if (b > 0) {
      subStart[slot] = size;
      size += 1 << b;
    }
  }
  budget?.allocate(size * 4, 'WebP lossless prefix table');
  const table = new Int32Array(size);
  for (let slot = 0; slot < 1 << rootBits; slot++) {
    const b = subBits[slot] as number;
    if (b > 0) table[slot] = ((subStart[slot] as number) << 16) | (16 + b);
  }
  for (let s = 0; s < n; s++) {
    const len = lengths[s] as number;
    if (len === 0) continue;
    const rev = codes[s] as number;
    const entry = (s << 16) | len;
    if (len <= rootBits) {
      for (let i = rev; i < 1 << rootBits; i += 1 << len) table[i] = entry;
    } else {
      const slot = rev & ((1 << rootBits) - 1);
      const base = subStart[slot] as number;
      const width = 1 << (subBits[slot] as number);
      const subEntry = (s << 16) | (len - rootBits);
      for (let i = rev >>> rootBits; i < width; i += 1 << (len - rootBits)) table[base + i] = subEntry;
    }
  }
  return table;
}

interface Group {
  green: Int32Array;
  red: Int32Array;
  blue: Int32Array;
  alpha: Int32Array;
  distance: Int32Array;
}

interface TransformData {
  type: Transform;
  /** Width of the image this transform outputs (the full width for colour indexing). */
  xsize: number;
  bits: number;
  data: Uint32Array;
}

const subSampleSize = (size: number, bits: number) => (size + (1 << bits) - 1) >>> bits;

/** One VP8L decode: a bit reader and the budget it reserves memory in. */
class LosslessDecoder {
  readonly br: BitReader;
  private readonly lengths = new Uint8Array(numLiteralCodes + numLengthCodes + (1 << maxCacheBits));

  constructor(
    data: Uint8Array,
    start: number,
    end: number,
    private readonly budget: DecodeBudget,
  ) {
    this.br = new BitReader(data, start, end);
  }

  private truncated(): never {
    refuse('truncated', 'WebP lossless data ends early');
  }

  /** Reads one prefix code over `alphabet` symbols; builds its table unless `keep` is false. */
  private readCode(alphabet: number, keep: boolean): Int32Array | undefined {
    const br = this.br;
    const lengths = this.lengths;
    lengths.fill(0, 0, alphabet);
    if (br.read(1)) {
      // Simple code: one or two symbols of 1 bit (symbols past the alphabet are ignored, as
      // libwebp does).
      const two = br.read(1);
      const first = br.read(br.read(1) ? 8 : 1);
      if (first < alphabet) lengths[first] = 1;
      if (two) {
        const second = br.read(8);
        if (second < alphabet) lengths[second] = 1;
      }
    } else {
      const codeLengthLengths = new Uint8Array(codeLengthCodeOrder.length);
      const num = br.read(4) + 4;
      for (let i = 0; i < num; i++) codeLengthLengths[codeLengthCodeOrder[i] as number] = br.read(3);
      const lengthTable = buildCode(codeLengthLengths, codeLengthLengths.length, undefined) as Int32Array;
      let maxSymbol = alphabet;
      if (br.read(1)) {
        const bits = 2 + 2 * br.read(3);
        maxSymbol = 2 + br.read(bits);
        if (maxSymbol > alphabet) refuse('corrupt', 'WebP lossless code length count exceeds the alphabet');
      }
      let symbol = 0;
      let prev = defaultCodeLength;
      while (symbol < alphabet) {
        if (maxSymbol-- === 0) break;
        if (br.checkEnd()) this.truncated();
        const len = br.symbol(lengthTable);
        if (len < 16) {
          lengths[symbol++] = len;
          if (len !== 0) prev = len;
        } else {
          const repeat = len === 16 ? 3 + br.read(2) : len === 17 ? 3 + br.read(3) : 11 + br.read(7);
          if (symbol + repeat > alphabet)
            refuse('corrupt', 'WebP lossless code lengths overflow the alphabet');
          lengths.fill(len === 16 ? prev : 0, symbol, symbol + repeat);
          symbol += repeat;
        }
      }
    }
    if (br.checkEnd()) this.truncated();
    if (!keep) {
      // Checked like a kept code (an invalid unused code is still a broken file), no table.
      buildCode(lengths, alphabet, undefined, true);
      return undefined;
    }
    return buildCode(lengths, alphabet, this.budget);
  }

  private readGroup(cacheSize: number, keep: boolean): Group | undefined {
    const green = this.readCode(numLiteralCodes + numLengthCodes + cacheSize, keep);
    const red = this.readCode(numLiteralCodes, keep);
    const blue = this.readCode(numLiteralCodes, keep);
    const alpha = this.readCode(numLiteralCodes, keep);
    const distance = this.readCode(numDistanceCodes, keep);
    if (!green || !red || !blue || !alpha || !distance) return undefined;
    return { green, red, blue, alpha, distance };
  }

  /**
   * Decodes an image stream of `xsize` × `ysize` pixels (RFC 9649 §5). The main image
   * (`level0`) may carry transforms and meta prefix codes; the transforms are undone and
   * the result is xsize × ysize ARGB.
   */
  decodeImageStream(xsize: number, ysize: number, level0: boolean): Uint32Array {
    const br = this.br;
    const transforms: TransformData[] = [];
    let codedWidth = xsize;
    if (level0) {
      const seen = new Set<Transform>();
      while (br.read(1)) {
        const type = br.read(2) as Transform;
        if (seen.has(type)) refuse('corrupt', 'WebP lossless transform used twice');
        seen.add(type);
        const t: TransformData = { type, xsize: codedWidth, bits: 0, data: new Uint32Array(0) };
        if (type === Transform.predictor || type === Transform.crossColor) {
          t.bits = br.read(3) + 2;
          t.data = this.decodeImageStream(
            subSampleSize(codedWidth, t.bits),
            subSampleSize(ysize, t.bits),
            false,
          );
        } else if (type === Transform.colorIndexing) {
          const colours = br.read(8) + 1;
          t.bits = colours > 16 ? 0 : colours > 4 ? 1 : colours > 2 ? 2 : 3;
          const raw = this.decodeImageStream(colours, 1, false);
          // Palette entries are stored as differences to the previous one; the table is
          // padded with transparent black so that any index reads a defined colour.
          const palette = new Uint32Array(256);
          let prev = 0;
          for (let i = 0; i < colours; i++) {
            prev = addPixels(prev, raw[i] as number);
            palette[i] = prev;
          }
          t.data = palette;
          codedWidth = subSampleSize(codedWidth, t.bits);
        }
        transforms.push(t);
        if (br.checkEnd()) this.truncated();
      }
    }

    let cacheBits = 0;
    if (br.read(1)) {
      cacheBits = br.read(4);
      if (cacheBits < 1 || cacheBits > maxCacheBits)
        refuse('corrupt', `WebP lossless colour cache of ${cacheBits} bits`);
    }
    const cacheSize = cacheBits > 0 ? 1 << cacheBits : 0;

    // Meta prefix codes: an entropy image choosing a group of five codes per tile.
    let metaBits = 0;
    let metaImage: Uint32Array | undefined;
    let groupOf: Int32Array | undefined;
    const groups: Group[] = [];
    if (level0 && br.read(1)) {
      metaBits = br.read(3) + 2;
      const mw = subSampleSize(codedWidth, metaBits);
      const mh = subSampleSize(ysize, metaBits);
      metaImage = this.decodeImageStream(mw, mh, false);
      let numGroups = 0;
      for (let i = 0; i < metaImage.length; i++) {
        const g = ((metaImage[i] as number) >>> 8) & 0xffff;
        metaImage[i] = g;
        if (g >= numGroups) numGroups = g + 1;
      }
      // Groups no tile uses are read (to move past them) but get no tables.
      groupOf = new Int32Array(numGroups).fill(-1);
      for (let i = 0; i < metaImage.length; i++) groupOf[metaImage[i] as number] = 0;
      for (let g = 0; g < numGroups; g++) {
        if ((g & 63) === 0) this.budget.tick();
        const used = groupOf[g] === 0;
        const group = this.readGroup(cacheSize, used);
        if (group) {
          groupOf[g] = groups.length;
          groups.push(group);
        }
      }
      for (let i = 0; i < metaImage.length; i++) metaImage[i] = groupOf[metaImage[i] as number] as number;
    } else {
      groups.push(this.readGroup(cacheSize, true) as Group);
    }

    const pixels = codedWidth * ysize;
    this.budget.allocate(pixels * 4, 'WebP lossless pixels');
    const data = new Uint32Array(pixels);
    this.decodePixels(data, codedWidth, ysize, groups, metaImage, metaBits, cacheBits);
    if (!level0) return data;

    let image = data;
    for (let i = transforms.length - 1; i >= 0; i--) {
      const t = transforms[i] as TransformData;
      this.budget.tick();
      switch (t.type) {
        case Transform.predictor:
          inversePredictor(image, t.xsize, ysize, t.bits, t.data);
          break;
        case Transform.crossColor:
          inverseCrossColor(image, t.xsize, ysize, t.bits, t.data);
          break;
        case Transform.subtractGreen:
          addGreen(image);
          break;
        case Transform.colorIndexing: {
          if (t.bits === 0) {
            // One index per pixel: expand in place.
            for (let p = 0; p < image.length; p++)
              image[p] = t.data[((image[p] as number) >>> 8) & 0xff] as number;
          } else {
            this.budget.allocate(t.xsize * ysize * 4, 'WebP lossless palette expansion');
            const out = new Uint32Array(t.xsize * ysize);
            expandPacked(image, out, t.xsize, ysize, t.bits, t.data);
            image = out;
          }
          break;
        }
      }
    }
    return image;
  }

  /**
   * LZ77-coded ARGB with a colour cache (RFC 9649 §5.2). The bit reader's state is kept in
   * locals here (BitReader.symbol's steps written out): this loop is most of a decode.
   */
  private decodePixels(
    data: Uint32Array,
    width: number,
    height: number,
    groups: Group[],
    metaImage: Uint32Array | undefined,
    metaBits: number,
    cacheBits: number,
  ): void {
    const br = this.br;
    const bytes = br.data;
    const end = br.end;
    let pos = br.pos;
    let buf = br.buf;
    let count = br.count;
    const total = width * height;
    const cache = cacheBits > 0 ? new Uint32Array(1 << cacheBits) : undefined;
    const cacheShift = 32 - cacheBits;
    const metaWidth = metaImage ? subSampleSize(width, metaBits) : 0;
    const metaMask = metaImage ? (1 << metaBits) - 1 : -1;
    let group = groups[0] as Group;
    let x = 0;
    let y = 0;
    let p = 0;
    let cached = 0; // pixels before this one are in the cache
    let e = 0;
    let n = 0;
    const groupAt = (gx: number, gy: number): Group =>
      groups[
        (metaImage as Uint32Array)[(gy >>> metaBits) * metaWidth + (gx >>> metaBits)] as number
      ] as Group;
    if (metaImage) group = groupAt(0, 0);
    while (p < total) {
      if (metaImage && (x & metaMask) === 0) group = groupAt(x, y);
      if (count < 16) {
        while (count <= 24) {
          buf |= (pos < end ? (bytes[pos] as number) : 0) << count;
          pos++;
          count += 8;
        }
      }
      e = group.green[buf & 0xff] as number;
      n = e & 0xffff;
      if (n > 16) {
        buf >>>= rootBits;
        count -= rootBits;
        e = group.green[(e >>> 16) + (buf & ((1 << (n - 16)) - 1))] as number;
        n = e & 0xffff;
      }
      buf >>>= n;
      count -= n;
      const green = e >>> 16;
      if (green < numLiteralCodes) {
        if (count < 16) {
          while (count <= 24) {
            buf |= (pos < end ? (bytes[pos] as number) : 0) << count;
            pos++;
            count += 8;
          }
        }
        e = group.red[buf & 0xff] as number;
        n = e & 0xffff;
        if (n > 16) {
          buf >>>= rootBits;
          count -= rootBits;
          e = group.red[(e >>> 16) + (buf & ((1 << (n - 16)) - 1))] as number;
          n = e & 0xffff;
        }
        buf >>>= n;
        count -= n;
        const red = e >>> 16;
        if (count < 16) {
          while (count <= 24) {
            buf |= (pos < end ? (bytes[pos] as number) : 0) << count;
            pos++;
            count += 8;
          }
        }
        e = group.blue[buf & 0xff] as number;
        n = e & 0xffff;
        if (n > 16) {
          buf >>>= rootBits;
          count -= rootBits;
          e = group.blue[(e >>> 16) + (buf & ((1 << (n - 16)) - 1))] as number;
          n = e & 0xffff;
        }
        buf >>>= n;
        count -= n;
        const blue = e >>> 16;
        if (count < 16) {
          while (count <= 24) {
            buf |= (pos < end ? (bytes[pos] as number) : 0) << count;
            pos++;
            count += 8;
          }
        }
        e = group.alpha[buf & 0xff] as number;
        n = e & 0xffff;
        if (n > 16) {
          buf >>>= rootBits;
          count -= rootBits;
          e = group.alpha[(e >>> 16) + (buf & ((1 << (n - 16)) - 1))] as number;
          n = e & 0xffff;
        }
        buf >>>= n;
        count -= n;
        const alpha = e >>> 16;
        data[p++] = ((alpha << 24) | (red << 16) | (green << 8) | blue) >>> 0;
        if (++x === width) {
          x = 0;
          y++;
          if ((y & 15) === 0) this.budget.tick();
          br.pos = pos;
          br.buf = buf;
          br.count = count;
          if (br.checkEnd()) this.truncated();
        }
      } else if (green < numLiteralCodes + numLengthCodes) {
        br.pos = pos;
        br.buf = buf;
        br.count = count;
        const length = this.copyValue(green - numLiteralCodes);
        const distSymbol = br.symbol(group.distance);
        const distCode = this.copyValue(distSymbol);
        pos = br.pos;
        buf = br.buf;
        count = br.count;
        let dist: number;
        if (distCode > 120) dist = distCode - 120;
        else {
          const c = codeToPlane[distCode - 1] as number;
          dist = (c >> 4) * width + (8 - (c & 15));
          if (dist < 1) dist = 1;
        }
        if (dist > p || length > total - p) {
          br.pos = pos;
          br.buf = buf;
          br.count = count;
          if (br.checkEnd()) this.truncated();
          refuse('corrupt', 'WebP lossless back-reference outside the image');
        }
        if (dist >= length) data.copyWithin(p, p - dist, p - dist + length);
        else for (let i = 0; i < length; i++) data[p + i] = data[p + i - dist] as number;
        p += length;
        x += length;
        if (x >= width) {
          y += Math.floor(x / width);
          x %= width;
          this.budget.tick();
          br.pos = pos;
          br.buf = buf;
          br.count = count;
          if (br.checkEnd()) this.truncated();
        }
        if (metaImage && p < total) group = groupAt(x, y);
      } else {
        if (!cache) refuse('corrupt', 'WebP lossless colour cache symbol without a cache');
        const key = green - (numLiteralCodes + numLengthCodes);
        while (cached < p) {
          const v = data[cached++] as number;
          cache[Math.imul(v, 0x1e35a7bd) >>> cacheShift] = v;
        }
        data[p++] = cache[key] as number;
        if (++x === width) {
          x = 0;
          y++;
          if ((y & 15) === 0) this.budget.tick();
          br.pos = pos;
          br.buf = buf;
          br.count = count;
          if (br.checkEnd()) this.truncated();
        }
      }
      if (cache) {
        while (cached < p) {
          const v = data[cached++] as number;
          cache[Math.imul(v, 0x1e35a7bd) >>> cacheShift] = v;
        }
      }
    }
    br.pos = pos;
    br.buf = buf;
    br.count = count;
    if (br.checkEnd()) this.truncated();
  }

  /** Length or distance from its prefix symbol and extra bits (RFC 9649 §5.2.2). */
  private copyValue(symbol: number): number {
    if (symbol < 4) return symbol + 1;
    const extra = (symbol - 2) >> 1;
    const offset = (2 + (symbol & 1)) << extra;
    return offset + this.br.read(extra) + 1;
  }
}

// --- transforms (RFC 9649 §4) -------------------------------------------------------------

const addPixels = (a: number, b: number): number =>
  (((a & 0xff00ff00) + (b & 0xff00ff00)) & 0xff00ff00) | (((a & 0x00ff00ff) + (b & 0x00ff00ff)) & 0x00ff00ff);

const average2 = (a: number, b: number): number => (((a ^ b) & 0xfefefefe) >>> 1) + (a & b);

const clamp255 = (v: number): number => (v < 0 ? 0 : Math.min(v, 255));

function select(top: number, left: number, topLeft: number): number {
  let d = 0;
  for (let s = 0; s < 32; s += 8) {
    const t = (top >>> s) & 0xff;
    const l = (left >>> s) & 0xff;
    const tl = (topLeft >>> s) & 0xff;
    d += Math.abs(l - tl) - Math.abs(t - tl);
  }
  return d <= 0 ? top : left;
}

function clampAddSubtractFull(a: number, b: number, c: number): number {
  let out = 0;
  for (let s = 0; s < 32; s += 8)
    out |= clamp255(((a >>> s) & 0xff) + ((b >>> s) & 0xff) - ((c >>> s) & 0xff)) << s;
  return out;
}

function clampAddSubtractHalf(a: number, b: number): number {
  let out = 0;
  for (let s = 0; s < 32; s += 8) {
    const x = (a >>> s) & 0xff;
    const y = (b >>> s) & 0xff;
    out |= clamp255(x + Math.trunc((x - y) / 2)) << s;
  }
  return out;
}

function predict(mode: number, d: Uint32Array, p: number, width: number): number {
  const left = d[p - 1] as number;
  const top = d[p - width] as number;
  switch (mode) {
    case 1:
      return left;
    case 2:
      return top;
    case 3:
      return d[p - width + 1] as number;
    case 4:
      return d[p - width - 1] as number;
    case 5:
      return average2(average2(left, d[p - width + 1] as number), top);
    case 6:
      return average2(left, d[p - width - 1] as number);
    case 7:
      return average2(left, top);
    case 8:
      return average2(d[p - width - 1] as number, top);
    case 9:
      return average2(top, d[p - width + 1] as number);
    case 10:
      return average2(average2(left, d[p - width - 1] as number), average2(top, d[p - width + 1] as number));
    case 11:
      return select(top, left, d[p - width - 1] as number);
    case 12:
      return clampAddSubtractFull(left, top, d[p - width - 1] as number);
    case 13:
      return clampAddSubtractHalf(average2(left, top), d[p - width - 1] as number);
    default:
      // Modes 0, 14 and 15 (the last two are unassigned; libwebp treats them as 0).
      return 0xff000000;
  }
}

function inversePredictor(
  d: Uint32Array,
  width: number,
  height: number,
  bits: number,
  modes: Uint32Array,
): void {
  if (d.length === 0) return;
  d[0] = addPixels(d[0] as number, 0xff000000);
  for (let x = 1; x < width; x++) d[x] = addPixels(d[x] as number, d[x - 1] as number);
  const tilesPerRow = subSampleSize(width, bits);
  for (let y = 1; y < height; y++) {
    const row = y * width;
    d[row] = addPixels(d[row] as number, d[row - width] as number);
    const tileRow = (y >>> bits) * tilesPerRow;
    for (let x = 1; x < width; x++) {
      const mode = ((modes[tileRow + (x >>> bits)] as number) >>> 8) & 0xf;
      const p = row + x;
      d[p] = addPixels(d[p] as number, mode === 1 ? (d[p - 1] as number) : predict(mode, d, p, width));
    }
  }
}

const colorDelta = (t: number, c: number): number => (((t << 24) >> 24) * ((c << 24) >> 24)) >> 5;

function inverseCrossColor(
  d: Uint32Array,
  width: number,
  height: number,
  bits: number,
  codes: Uint32Array,
): void {
  const tilesPerRow = subSampleSize(width, bits);
  for (let y = 0; y < height; y++) {
    const tileRow = (y >>> bits) * tilesPerRow;
    for (let x = 0; x < width; x++) {
      const code = codes[tileRow + (x >>> bits)] as number;
      const greenToRed = code & 0xff;
      const greenToBlue = (code >>> 8) & 0xff;
      const redToBlue = (code >>> 16) & 0xff;
      const p = y * width + x;
      const argb = d[p] as number;
      const green = (argb >>> 8) & 0xff;
      const red = (((argb >>> 16) & 0xff) + colorDelta(greenToRed, green)) & 0xff;
      const blue = ((argb & 0xff) + colorDelta(greenToBlue, green) + colorDelta(redToBlue, red)) & 0xff;
      d[p] = ((argb & 0xff00ff00) | (red << 16) | blue) >>> 0;
    }
  }
}

function addGreen(d: Uint32Array): void {
  for (let p = 0; p < d.length; p++) {
    const argb = d[p] as number;
    const green = (argb >>> 8) & 0xff;
    const redBlue = ((argb & 0x00ff00ff) + ((green << 16) | green)) & 0x00ff00ff;
    d[p] = ((argb & 0xff00ff00) | redBlue) >>> 0;
  }
}

function expandPacked(
  src: Uint32Array,
  out: Uint32Array,
  width: number,
  height: number,
  bits: number,
  palette: Uint32Array,
): void {
  const packedWidth = subSampleSize(width, bits);
  const bitsPerPixel = 8 >>> bits;
  const mask = (1 << bitsPerPixel) - 1;
  const perByte = (1 << bits) - 1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const packed = ((src[y * packedWidth + (x >>> bits)] as number) >>> 8) & 0xff;
      out[y * width + x] = palette[(packed >>> (bitsPerPixel * (x & perByte))) & mask] as number;
    }
  }
}

// --- entry points -------------------------------------------------------------------------

export interface LosslessImage {
  width: number;
  height: number;
  /** Whether the header says alpha is used (a hint; the pixels carry their own alpha). */
  alphaHint: boolean;
  argb: Uint32Array;
}

export const vp8lSignature = 0x2f;

/** Reads the 5-byte VP8L header: signature, 14-bit width-1 and height-1, alpha hint, version. */
export function vp8lHeader(data: Uint8Array, start: number, end: number) {
  if (end - start < 5) refuse('truncated', 'WebP lossless header is cut short');
  if (data[start] !== vp8lSignature) refuse('corrupt', 'WebP lossless signature byte is wrong');
  const bits =
    ((data[start + 1] as number) |
      ((data[start + 2] as number) << 8) |
      ((data[start + 3] as number) << 16) |
      ((data[start + 4] as number) << 24)) >>>
    0;
  const width = (bits & 0x3fff) + 1;
  const height = ((bits >>> 14) & 0x3fff) + 1;
  const alphaHint = ((bits >>> 28) & 1) === 1;
  const version = bits >>> 29;
  if (version !== 0) refuse('unsupported', `WebP lossless version ${version}`);
  return { width, height, alphaHint };
}

/** Decodes a whole VP8L chunk payload (`data[start..end)`). */
export function decodeLossless(
  data: Uint8Array,
  start: number,
  end: number,
  budget: DecodeBudget,
): LosslessImage {
  const { width, height, alphaHint } = vp8lHeader(data, start, end);
  budget.checkSize(width, height, 'WebP lossless image');
  const decoder = new LosslessDecoder(data, start + 5, end, budget);
  const argb = decoder.decodeImageStream(width, height, true);
  return { width, height, alphaHint, argb };
}

/**
 * Decodes a headerless VP8L stream of `width` × `height` (an ALPH chunk's lossless
 * compression, RFC 9649 §2.7.1.3) and returns its green channel.
 */
export function decodeLosslessAlpha(
  data: Uint8Array,
  start: number,
  end: number,
  width: number,
  height: number,
  budget: DecodeBudget,
): Uint8Array {
  const decoder = new LosslessDecoder(data, start, end, budget);
  const argb = decoder.decodeImageStream(width, height, true);
  const out = budget.bytes(width * height, 'WebP alpha plane');
  for (let i = 0; i < out.length; i++) out[i] = ((argb[i] as number) >>> 8) & 0xff;
  return out;
}
