/**
 * BMP decoder, written here: bmp-js is unmaintained and returns ABGR without limits,
 * fast-bmp reads V5 headers only (its README, npm fast-bmp 4.0.1). Covers OS/2 1.x/2.x
 * and Windows INFO/V2/V3/V4/V5 headers; 1, 2, 4, 8 bpp palettes; 16/24/32 bpp with default
 * or BITFIELDS/ALPHABITFIELDS masks; RLE4, RLE8 and OS/2 RLE24; bottom-up and top-down
 * rows; PNG and JPEG embedded as the pixel data (decoded by our PNG/JPEG decoders).
 *
 * Choices where readers differ: pixels that RLE skips (delta, early end of line or file)
 * stay transparent; palette indices past the palette show as opaque black; the fourth
 * byte of BI_RGB 32-bit pixels is padding (alpha only comes from an alpha mask).
 */
import { type DecodeBudget, refuse } from './budget.ts';
import { stillFrames } from './compose.ts';
import { decodeJpeg } from './jpeg.ts';
import { decodePng } from './png.ts';
import type { DecodedImage } from './types.ts';

// --- wire layout -----------------------------------------------------------------------
const fileHeaderSize = 14;
const coreHeaderSize = 12; // OS/2 1.x BITMAPCOREHEADER
const infoHeaderSize = 40;
const os2HeaderSizes = new Set([16, 64]); // OS/2 2.x, possibly truncated
const knownHeaderSizes = new Set([12, 16, 40, 52, 56, 64, 108, 124]);
enum Compression {
  rgb = 0,
  rle8 = 1,
  rle4 = 2,
  bitfields = 3,
  jpeg = 4,
  png = 5,
  alphaBitfields = 6,
}
const os2Huffman = 3;
const os2Rle24 = 4;

interface Mask {
  mask: number;
  shift: number;
  bits: number;
}

const u16 = (b: Uint8Array, o: number) => (b[o] as number) | ((b[o + 1] as number) << 8);
const u32 = (b: Uint8Array, o: number) => (u16(b, o) | (u16(b, o + 2) << 16)) >>> 0;
const i32 = (b: Uint8Array, o: number) => u32(b, o) | 0;

function maskOf(mask: number): Mask {
  if (mask === 0) return { mask: 0, shift: 0, bits: 0 };
  let shift = 0;
  while (((mask >>> shift) & 1) === 0) shift++;
  let bits = 0;
  while (shift + bits < 32 && ((mask >>> (shift + bits)) & 1) === 1) bits++;
  return { mask, shift, bits };
}

/**
 * Reads one mask field scaled to 8 bits by bit replication (a 5-bit 0b10011 becomes
 * 0b10011100), as Pillow and browsers do; fields wider than 8 bits keep their top 8.
 */
function channel(px: number, m: Mask): number {
  if (m.bits === 0) return 0;
  const v = ((px & m.mask) >>> m.shift) & ((2 ** m.bits - 1) >>> 0);
  if (m.bits >= 8) return v >>> (m.bits - 8);
  let out = 0;
  for (let fill = 8 - m.bits; fill > -m.bits; fill -= m.bits) out |= fill >= 0 ? v << fill : v >>> -fill;
  return out & 0xff;
}

export function decodeBmp(bytes: Uint8Array, budget: DecodeBudget): DecodedImage {
  if (bytes.length < fileHeaderSize + 4) refuse('truncated', 'BMP ends inside its headers');
  const pixelOffset = u32(bytes, 10);
  const headerSize = u32(bytes, fileHeaderSize);
  if (!knownHeaderSizes.has(headerSize))
    refuse('unsupported', `BMP header of ${headerSize} bytes is not a known kind`);
  const h0 = fileHeaderSize;
  if (bytes.length < h0 + headerSize) refuse('truncated', 'BMP ends inside its info header');
  const core = headerSize === coreHeaderSize;
  const os2 = os2HeaderSizes.has(headerSize);
  const width = core ? u16(bytes, h0 + 4) : i32(bytes, h0 + 4);
  const rawHeight = core ? u16(bytes, h0 + 6) : i32(bytes, h0 + 8);
  const bpp = core ? u16(bytes, h0 + 10) : u16(bytes, h0 + 14);
  const compression = core || headerSize < 20 ? 0 : u32(bytes, h0 + 16);
  const coloursUsed = core || headerSize < 36 ? 0 : u32(bytes, h0 + 32);
  const topDown = rawHeight < 0;
  const height = Math.abs(rawHeight);
  if (width <= 0 || height === 0) refuse('corrupt', `BMP has invalid dimensions ${width}×${rawHeight}`);

  if (!os2 && (compression === Compression.png || compression === Compression.jpeg)) {
    // The pixel data is a whole PNG or JPEG file.
    if (pixelOffset >= bytes.length) refuse('truncated', 'BMP embedded image is missing');
    const inner = bytes.subarray(pixelOffset);
    const image = compression === Compression.png ? decodePng(inner, budget) : decodeJpeg(inner, budget);
    return { ...image, format: 'bmp' };
  }
  budget.checkSize(width, height, 'BMP image');
  if (os2 && compression === os2Huffman)
    refuse('unsupported', 'OS/2 Huffman-compressed BMP is not supported');
  const rle24 = os2 && compression === os2Rle24;
  if (![1, 2, 4, 8, 16, 24, 32].includes(bpp))
    refuse('unsupported', `BMP with ${bpp} bits per pixel is not supported`);

  // Masks: in the header from V2 (52 bytes) on, or just after a 40-byte header.
  let masks: [number, number, number, number] | undefined;
  let afterHeader = h0 + headerSize;
  if (compression === Compression.bitfields || compression === Compression.alphaBitfields) {
    if (os2) refuse('unsupported', 'OS/2 BMP with bit fields is not supported');
    if (bpp !== 16 && bpp !== 32)
      refuse('corrupt', `BMP bit fields need 16 or 32 bits per pixel, not ${bpp}`);
    const at = headerSize >= 52 ? h0 + infoHeaderSize : afterHeader;
    const withAlpha = headerSize >= 56 || compression === Compression.alphaBitfields;
    if (at + (withAlpha ? 16 : 12) > bytes.length) refuse('truncated', 'BMP ends inside its bit masks');
    masks = [u32(bytes, at), u32(bytes, at + 4), u32(bytes, at + 8), withAlpha ? u32(bytes, at + 12) : 0];
    if (headerSize === infoHeaderSize) afterHeader += withAlpha ? 16 : 12;
  } else if (compression !== Compression.rgb && !(compression === Compression.rle8 && bpp === 8)) {
    if (!(compression === Compression.rle4 && bpp === 4) && !rle24)
      refuse('unsupported', `BMP compression ${compression} with ${bpp} bits per pixel is not supported`);
  }

  // Palette.
  const palette = new Uint8Array(256 * 4);
  for (let i = 0; i < 256; i++) palette[i * 4 + 3] = 255; // missing entries: opaque black
  if (bpp <= 8) {
    const entrySize = core ? 3 : 4;
    const max = 1 << bpp;
    let count = coloursUsed > 0 && coloursUsed < max ? coloursUsed : max;
    const room = Math.floor((Math.min(pixelOffset, bytes.length) - afterHeader) / entrySize);
    count = Math.max(0, Math.min(count, room));
    for (let i = 0; i < count; i++) {
      const p = afterHeader + i * entrySize;
      palette[i * 4] = bytes[p + 2] as number;
      palette[i * 4 + 1] = bytes[p + 1] as number;
      palette[i * 4 + 2] = bytes[p] as number;
    }
  }

  if (pixelOffset > bytes.length) refuse('truncated', 'BMP pixel data starts past the end of the file');
  const out = budget.bytes(width * height * 4, 'BMP RGBA output');
  const data = bytes.subarray(pixelOffset);
  // Row r of the file goes to output row `rowAt(r)`.
  const rowAt = (r: number) => (topDown ? r : height - 1 - r);

  if (compression === Compression.rle8 || compression === Compression.rle4 || rle24) {
    decodeRle(
      data,
      compression === Compression.rle4 ? 4 : rle24 ? 24 : 8,
      width,
      height,
      rowAt,
      palette,
      out,
      budget,
    );
  } else {
    const stride = Math.ceil((bpp * width) / 32) * 4;
    const rows = Math.min(height, Math.floor(data.length / stride));
    if (rows < height && data.length - rows * stride <= 0 && rows === 0)
      refuse('truncated', 'BMP has no pixel data');
    const m = masks ?? (bpp === 16 ? [0x7c00, 0x3e0, 0x1f, 0] : [0xff0000, 0xff00, 0xff, 0]);
    const [mr, mg, mb, ma] = m.map(maskOf) as [Mask, Mask, Mask, Mask];
    for (let r = 0; r < height; r++) {
      budget.tick();
      const o = rowAt(r) * width * 4;
      const start = r * stride;
      if (start + stride > data.length) break; // short file: the rest stays transparent
      writeRow(data, start, bpp, width, palette, out, o, mr, mg, mb, ma, masks !== undefined);
    }
  }
  return {
    format: 'bmp',
    width,
    height,
    orientation: 1,
    bitDepth: bpp,
    frames: stillFrames(width, height, out),
    loopCount: 1,
  };
}

function writeRow(
  data: Uint8Array,
  p: number,
  bpp: number,
  width: number,
  palette: Uint8Array,
  out: Uint8Array,
  o: number,
  mr: Mask,
  mg: Mask,
  mb: Mask,
  ma: Mask,
  hasMasks: boolean,
): void {
  if (bpp <= 8) {
    const mask = (1 << bpp) - 1;
    for (let x = 0; x < width; x++, o += 4) {
      const bit = x * bpp;
      const index = ((data[p + (bit >> 3)] as number) >> (8 - bpp - (bit & 7))) & mask;
      out[o] = palette[index * 4] as number;
      out[o + 1] = palette[index * 4 + 1] as number;
      out[o + 2] = palette[index * 4 + 2] as number;
      out[o + 3] = 255;
    }
    return;
  }
  if (bpp === 24 || (bpp === 32 && !hasMasks)) {
    const step = bpp >> 3;
    for (let x = 0; x < width; x++, o += 4, p += step) {
      out[o] = data[p + 2] as number;
      out[o + 1] = data[p + 1] as number;
      out[o + 2] = data[p] as number;
      out[o + 3] = 255;
    }
    return;
  }
  const step = bpp >> 3;
  for (let x = 0; x < width; x++, o += 4, p += step) {
    const px = step === 2 ? u16(data, p) : u32(data, p);
    out[o] = channel(px, mr);
    out[o + 1] = channel(px, mg);
    out[o + 2] = channel(px, mb);
    out[o + 3] = ma.bits === 0 ? 255 : channel(px, ma);
  }
}

/** RLE4/RLE8/RLE24: runs and absolute blocks; pixels never written stay transparent. */
function decodeRle(
  data: Uint8Array,
  bits: 4 | 8 | 24,
  width: number,
  height: number,
  rowAt: (r: number) => number,
  palette: Uint8Array,
  out: Uint8Array,
  budget: DecodeBudget,
): void {
  let x = 0;
  let r = 0;
  let p = 0;
  const put = (value: number, g = 0, b = 0) => {
    if (x < width && r < height) {
      const o = (rowAt(r) * width + x) * 4;
      if (bits === 24) {
        out[o] = value; // red
        out[o + 1] = g;
        out[o + 2] = b;
      } else {
        out[o] = palette[value * 4] as number;
        out[o + 1] = palette[value * 4 + 1] as number;
        out[o + 2] = palette[value * 4 + 2] as number;
      }
      out[o + 3] = 255;
    }
    x++;
  };
  let steps = 0;
  while (p + 1 < data.length && r < height) {
    if ((++steps & 0xfff) === 0) budget.tick();
    const count = data[p] as number;
    const value = data[p + 1] as number;
    p += 2;
    if (count > 0) {
      // Encoded run: `count` pixels of one value (RLE4: two alternating nibbles).
      if (bits === 24) {
        if (p + 1 > data.length) return;
        const g = data[p] as number;
        const rr = data[p + 1] as number;
        p += 2;
        for (let i = 0; i < count && x < width; i++) put(rr, g, value); // bytes are B, G, R
      } else if (bits === 8) {
        for (let i = 0; i < count && x < width; i++) put(value);
      } else {
        for (let i = 0; i < count && x < width; i++) put(i & 1 ? value & 15 : value >> 4);
      }
      continue;
    }
    if (value === 0) {
      x = 0;
      r++;
    } else if (value === 1) {
      return;
    } else if (value === 2) {
      if (p + 2 > data.length) return;
      x += data[p] as number;
      r += data[p + 1] as number;
      p += 2;
    } else {
      // Absolute block of `value` pixels, padded to a 16-bit boundary.
      const n = value;
      const size = bits === 24 ? n * 3 : bits === 8 ? n : Math.ceil(n / 2);
      if (p + size > data.length) return;
      for (let i = 0; i < n; i++) {
        if (bits === 24)
          put(data[p + i * 3 + 2] as number, data[p + i * 3 + 1] as number, data[p + i * 3] as number);
        else if (bits === 8) put(data[p + i] as number);
        else {
          const byte = data[p + (i >> 1)] as number;
          put(i & 1 ? byte & 15 : byte >> 4);
        }
      }
      p += size + (size & 1);
    }
  }
}
