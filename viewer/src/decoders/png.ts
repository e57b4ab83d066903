/**
 * PNG and APNG decoder, written here rather than taken from npm: pngjs inflates with
 * node:zlib (native) and allocates from IHDR without bounds, fast-png and UPNG.js have no
 * limits and return APNG frames uncomposited or without budget checks
 * (pngjs 7.0.0 `lib/parser.js`, fast-png 8.0.0 `src/types.ts`, UPNG.js 2.1.0 `UPNG.js`). Inflate is ours (inflate.ts, pure TypeScript) into
 * buffers whose size is computed from IHDR/fcTL and reserved against the budget first, so
 * a small file cannot expand beyond what its header announced.
 *
 * Gamma (gAMA), chromaticities, sRGB and iCCP are ignored on purpose: samples are shown
 * as stored, which is what libvips does too, and it keeps colour management out of the
 * trusted path.
 */
import { type DecodeBudget, Refusal, refuse } from './budget.ts';
import { stillFrames } from './compose.ts';
import { crc32 } from './crc32.ts';
import { BoxDownscaler, downscaleStill } from './downscale.ts';
import { InflateError, inflateZlib, inflateZlibStreaming } from './inflate.ts';
import {
  chooseScale,
  type DecodedImage,
  type DecodeOptions,
  type Frame,
  type ScaleDenominator,
} from './types.ts';

// --- wire layout -----------------------------------------------------------------------
export const pngSignature = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);
const chunkHeaderSize = 8; // length (4) + type (4)
const chunkCrcSize = 4;
const maxChunkLength = 0x7fffffff;
const type = (s: string) =>
  ((s.charCodeAt(0) << 24) | (s.charCodeAt(1) << 16) | (s.charCodeAt(2) << 8) | s.charCodeAt(3)) >>> 0;
const IHDR = type('IHDR');
const PLTE = type('PLTE');
const tRNS = type('tRNS');
const IDAT = type('IDAT');
const IEND = type('IEND');
const acTL = type('acTL');
const fcTL = type('fcTL');
const fdAT = type('fdAT');
const ihdrLength = 13;
const fctlLength = 26;

enum ColourType {
  grey = 0,
  rgb = 2,
  palette = 3,
  greyAlpha = 4,
  rgba = 6,
}
const channelsOf: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
const allowedDepths: Record<number, readonly number[]> = {
  0: [1, 2, 4, 8, 16],
  2: [8, 16],
  3: [1, 2, 4, 8],
  4: [8, 16],
  6: [8, 16],
};
// Adam7 passes: first column, first row, column step, row step.
const adam7 = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
] as const;

enum Dispose {
  none = 0,
  background = 1,
  previous = 2,
}
enum Blend {
  source = 0,
  over = 1,
}

interface Header {
  width: number;
  height: number;
  depth: number;
  colourType: number;
  interlaced: boolean;
}

interface FrameControl {
  width: number;
  height: number;
  x: number;
  y: number;
  delayMs: number;
  dispose: number;
  blend: number;
  data: ChunkData;
}

/** What the colour conversion needs besides the header. */
interface Palette {
  /** RGBA per index, 256 entries; out-of-range indices read as opaque black. */
  rgba: Uint8Array;
  /** The same entries as 32-bit words (for little-endian stores). */
  rgba32: Uint32Array;
  /** tRNS key colour for grey/RGB images, at the image's bit depth (-1 when absent). */
  keyR: number;
  keyG: number;
  keyB: number;
}

export interface PngOptions extends DecodeOptions {
  /** Also return 16-bit samples (for tests comparing 16-bit files at 16-bit). */
  sixteenBit?: boolean;
}

export interface DecodedPng extends DecodedImage {
  /** The first frame at 16 bits per sample, when asked for and the file is 16-bit. */
  readonly rgba16?: Uint16Array;
}

/** Whether a Uint32Array store puts its low byte first (true on every platform we run on). */
const littleEndian = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

const u32 = (b: Uint8Array, o: number) =>
  (((b[o] as number) << 24) |
    ((b[o + 1] as number) << 16) |
    ((b[o + 2] as number) << 8) |
    (b[o + 3] as number)) >>>
  0;
const u16 = (b: Uint8Array, o: number) => ((b[o] as number) << 8) | (b[o + 1] as number);

export function isPng(bytes: Uint8Array): boolean {
  if (bytes.length < 8) return false;
  for (let i = 0; i < 8; i++) if (bytes[i] !== pngSignature[i]) return false;
  return true;
}

function parseHeader(data: Uint8Array): Header {
  if (data.length !== ihdrLength) refuse('corrupt', `PNG IHDR chunk is ${data.length} bytes, not 13`);
  const width = u32(data, 0);
  const height = u32(data, 4);
  const depth = data[8] as number;
  const colourType = data[9] as number;
  if (width === 0 || height === 0 || width > maxChunkLength || height > maxChunkLength)
    refuse('corrupt', `PNG has invalid dimensions ${width}×${height}`);
  const depths = allowedDepths[colourType];
  if (!depths) refuse('corrupt', `PNG colour type ${colourType} does not exist`);
  if (!depths.includes(depth))
    refuse('corrupt', `PNG bit depth ${depth} is not allowed for colour type ${colourType}`);
  if (data[10] !== 0) refuse('corrupt', `PNG compression method ${data[10]} is unknown`);
  if (data[11] !== 0) refuse('corrupt', `PNG filter method ${data[11]} is unknown`);
  if (data[12] !== 0 && data[12] !== 1) refuse('corrupt', `PNG interlace method ${data[12]} is unknown`);
  return { width, height, depth, colourType, interlaced: data[12] === 1 };
}

/**
 * Decodes a PNG or APNG. Chunk CRCs are checked (a wrong CRC means a damaged file);
 * unknown ancillary chunks are skipped, unknown critical ones refused.
 */
export function decodePng(bytes: Uint8Array, budget: DecodeBudget, options: PngOptions = {}): DecodedPng {
  if (!isPng(bytes)) refuse('corrupt', 'PNG signature is damaged');
  let header: Header | undefined;
  let palette: Uint8Array | undefined;
  let transparency: Uint8Array | undefined;
  const idat = new ChunkData(bytes);
  let idatDone = false;
  let sawIend = false;
  // APNG state: frames in file order; `defaultIsFrame` when an fcTL precedes IDAT.
  let animation: { frames: number; plays: number } | undefined;
  let animationBroken = false;
  const frames: FrameControl[] = [];
  let defaultIsFrame = false;
  let nextSequence = 0;
  const warnings: string[] = [];

  let pos = 8;
  while (pos < bytes.length) {
    if (pos + chunkHeaderSize + chunkCrcSize > bytes.length)
      refuse('truncated', 'PNG ends inside a chunk header');
    const length = u32(bytes, pos);
    const kind = u32(bytes, pos + 4);
    if (length > maxChunkLength) refuse('corrupt', `PNG chunk length ${length} is out of range`);
    const dataStart = pos + chunkHeaderSize;
    const dataEnd = dataStart + length;
    if (dataEnd + chunkCrcSize > bytes.length)
      refuse('truncated', `PNG chunk ${chunkName(kind)} claims ${length} bytes but the file ends first`);
    const data = bytes.subarray(dataStart, dataEnd);
    pos = dataEnd + chunkCrcSize;
    if (crc32(bytes, dataStart - 4, dataEnd) !== u32(bytes, dataEnd)) {
      // As libpng by default (pngrutil.c png_crc_finish): a critical chunk with a wrong CRC
      // is an error, an ancillary one (tEXt, tIME, ... and APNG's chunks) is discarded with
      // a warning. IHDR is critical, so the header is never taken from a damaged chunk.
      if (!isAncillary(kind) || !header)
        refuse('corrupt', `PNG chunk ${chunkName(kind)} has a wrong CRC (damaged file)`);
      warnings.push(`PNG chunk ${chunkName(kind)} has a wrong CRC and was ignored`);
      if (kind === fcTL || kind === fdAT) animationBroken = true;
      continue;
    }

    if (header === undefined) {
      if (kind !== IHDR) refuse('corrupt', 'PNG does not start with an IHDR chunk');
      header = parseHeader(data);
      budget.checkSize(header.width, header.height, 'PNG image');
      continue;
    }
    if (kind === IEND) {
      sawIend = true;
      break;
    }
    if (kind === IDAT) {
      if (idatDone) refuse('corrupt', 'PNG IDAT chunks are not consecutive');
      idat.push(dataStart, dataEnd);
      if (frames.length === 1 && idat.length === 1 && animation) defaultIsFrame = true;
      continue;
    }
    if (idat.length > 0) idatDone = true;
    if (kind === PLTE) {
      if (idat.length > 0 || palette) refuse('corrupt', 'PNG PLTE chunk is misplaced or repeated');
      if (length % 3 !== 0 || length === 0 || length > 768)
        refuse('corrupt', `PNG palette has an invalid length ${length}`);
      palette = data;
    } else if (kind === tRNS) {
      if (idat.length === 0) transparency = data;
    } else if (kind === acTL) {
      if (idat.length > 0 || animation || length !== 8) animationBroken = true;
      else animation = { frames: u32(data, 0), plays: u32(data, 4) };
    } else if (kind === fcTL) {
      if (!animation || length !== fctlLength || u32(data, 0) !== nextSequence++) {
        animationBroken = true;
        continue;
      }
      const den = u16(data, 22);
      frames.push({
        width: u32(data, 4),
        height: u32(data, 8),
        x: u32(data, 12),
        y: u32(data, 16),
        delayMs: Math.round((u16(data, 20) * 1000) / (den === 0 ? 100 : den)),
        dispose: data[24] as number,
        blend: data[25] as number,
        data: new ChunkData(bytes),
      });
      budget.checkFrames(frames.length);
    } else if (kind === fdAT) {
      const frame = frames[frames.length - 1];
      if (!frame || idat.length === 0 || length < 4 || u32(data, 0) !== nextSequence++)
        animationBroken = true;
      else frame.data.push(dataStart + 4, dataEnd);
    } else if (!isAncillary(kind)) {
      // Bit 5 of the first type byte clear: a critical chunk we do not know.
      refuse('unsupported', `PNG has an unknown critical chunk ${chunkName(kind)}`);
    }
  }
  if (!header) refuse('truncated', 'PNG has no IHDR chunk');
  if (idat.length === 0) refuse('corrupt', 'PNG has no image data (IDAT)');
  // A missing IEND after complete image data is harmless; decoders commonly accept it.
  void sawIend;
  if (header.colourType === ColourType.palette && !palette)
    refuse('corrupt', 'PNG palette image has no PLTE chunk');

  const colours = buildPalette(header, palette, transparency);
  const canvasBytes = header.width * header.height * 4;
  const wantAnimation =
    animation !== undefined &&
    !animationBroken &&
    frames.length > 0 &&
    framesFit(header, frames, defaultIsFrame);

  if (wantAnimation && animation) {
    try {
      const out = animationLayers(header, colours, idat, frames, defaultIsFrame, budget);
      return {
        format: 'png',
        width: header.width,
        height: header.height,
        orientation: 1,
        bitDepth: header.depth,
        frames: out,
        loopCount: animation.plays,
        ...(warnings.length > 0 ? { warnings } : {}),
      };
    } catch (error) {
      // A broken animation falls back to the still image, as browsers do; limits and
      // deadlines still stop the decode.
      if (!(error instanceof Refusal) || error.kind === 'limit' || error.kind === 'deadline') throw error;
    }
  }
  const scale = chooseScale(header.width, header.height, options);
  if (scale > 1 && !header.interlaced) {
    const reduced = decodeRowsScaled(header, colours, idat, scale, budget);
    return {
      format: 'png',
      width: reduced.outWidth,
      height: reduced.outHeight,
      orientation: 1,
      bitDepth: header.depth,
      frames: stillFrames(reduced.outWidth, reduced.outHeight, reduced.output),
      loopCount: 1,
      scaled: { denominator: scale, storedWidth: header.width, storedHeight: header.height },
      ...(warnings.length > 0 ? { warnings } : {}),
    };
  }
  const rgba = budget.bytes(canvasBytes, 'PNG RGBA output');
  const rgba16 =
    options.sixteenBit && header.depth === 16 ? new Uint16Array(header.width * header.height * 4) : undefined;
  if (rgba16) budget.allocate(rgba16.byteLength, 'PNG 16-bit output');
  decodeSubImage(
    header,
    colours,
    idat,
    header.width,
    header.height,
    rgba,
    header.width,
    0,
    0,
    budget,
    rgba16,
  );
  const still: DecodedPng = {
    format: 'png',
    width: header.width,
    height: header.height,
    orientation: 1,
    bitDepth: header.depth,
    frames: stillFrames(header.width, header.height, rgba),
    loopCount: 1,
    ...(rgba16 ? { rgba16 } : {}),
    ...(warnings.length > 0 ? { warnings } : {}),
  };
  // Interlaced: the passes scatter rows over the image, so they are decoded whole first.
  return scale > 1 ? downscaleStill(still, scale, budget) : still;
}

/** Inflate window: DEFLATE's 32 KiB of history plus room for what is handed over. */
const inflateWindowSize = 128 * 1024;

/**
 * A non-interlaced image reduced by `scale` as its rows are inflated: memory is the inflate
 * window, two rows and the reduced output, not the image.
 */
function decodeRowsScaled(
  header: Header,
  colours: Palette,
  idat: ChunkData,
  scale: ScaleDenominator,
  budget: DecodeBudget,
): BoxDownscaler {
  const { width, height } = header;
  const rowBytes = rowBytesOf(header, width);
  const stride = rowBytes + 1;
  const bpp = Math.max(1, ((channelsOf[header.colourType] as number) * header.depth) >> 3);
  const rows = budget.bytes(2 * stride, 'PNG rows');
  const rgbaRow = budget.bytes(width * 4, 'PNG RGBA row');
  const rgbaRow32 = littleEndian ? new Uint32Array(rgbaRow.buffer) : undefined;
  const window = budget.bytes(inflateWindowSize, 'PNG inflate window');
  const downscaler = new BoxDownscaler(width, height, scale, budget);
  let row = 0;
  let filled = 0;
  const takeRows = (inflated: Uint8Array, from: number, to: number): boolean => {
    let p = from;
    while (p < to && row < height) {
      const slot = (row & 1) * stride;
      const n = Math.min(stride - filled, to - p);
      rows.set(inflated.subarray(p, p + n), slot + filled);
      filled += n;
      p += n;
      if (filled < stride) break;
      budget.tick();
      const prior = row === 0 ? -1 : ((row - 1) & 1) * stride + 1;
      unfilter(rows, rows[slot] as number, slot + 1, prior, rowBytes, bpp);
      writeRow(header, colours, rows, slot + 1, width, rgbaRow, 0, 4, rgbaRow32);
      downscaler.addRow(rgbaRow);
      row++;
      filled = 0;
    }
    return row >= height;
  };
  try {
    inflateZlibStreaming(idat.join(budget), window, takeRows, () => budget.tick());
  } catch (error) {
    if (!(error instanceof InflateError)) throw error;
    refuse('corrupt', `PNG image data does not inflate: ${error.message}`);
  }
  if (row < height) refuse('truncated', `PNG image data is short: ${row} of ${height} rows`);
  return downscaler;
}

/** Bit 5 of the first type byte: set for ancillary chunks, clear for critical ones. */
const isAncillary = (kind: number) => (kind & 0x20000000) !== 0;

function chunkName(kind: number): string {
  let s = '';
  for (let i = 24; i >= 0; i -= 8) {
    const c = (kind >>> i) & 0xff;
    s += c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : '?';
  }
  return s;
}

function framesFit(header: Header, frames: readonly FrameControl[], defaultIsFrame: boolean): boolean {
  for (const [i, f] of frames.entries()) {
    if (f.width === 0 || f.height === 0) return false;
    if (f.x + f.width > header.width || f.y + f.height > header.height) return false;
    if (f.dispose > 2 || f.blend > 1) return false;
    if (
      i === 0 &&
      defaultIsFrame &&
      (f.x !== 0 || f.y !== 0 || f.width !== header.width || f.height !== header.height)
    )
      return false;
    if (i > 0 || !defaultIsFrame) {
      if (f.data.length === 0) return false;
    }
  }
  return true;
}

function buildPalette(header: Header, plte: Uint8Array | undefined, trns: Uint8Array | undefined): Palette {
  const rgba = new Uint8Array(256 * 4);
  for (let i = 0; i < 256; i++) rgba[i * 4 + 3] = 255;
  if (plte) {
    for (let i = 0; i * 3 < plte.length; i++) {
      rgba[i * 4] = plte[i * 3] as number;
      rgba[i * 4 + 1] = plte[i * 3 + 1] as number;
      rgba[i * 4 + 2] = plte[i * 3 + 2] as number;
    }
  }
  let keyR = -1;
  let keyG = -1;
  let keyB = -1;
  if (trns) {
    if (header.colourType === ColourType.palette) {
      for (let i = 0; i < trns.length && i < 256; i++) rgba[i * 4 + 3] = trns[i] as number;
    } else if (header.colourType === ColourType.grey && trns.length >= 2) {
      keyR = keyG = keyB = u16(trns, 0);
    } else if (header.colourType === ColourType.rgb && trns.length >= 6) {
      keyR = u16(trns, 0);
      keyG = u16(trns, 2);
      keyB = u16(trns, 4);
    }
  }
  return { rgba, rgba32: new Uint32Array(rgba.buffer), keyR, keyG, keyB };
}

/**
 * The payloads of a run of chunks (the IDATs, or one frame's fdATs) as offsets into the file:
 * 8 bytes per chunk rather than an object each, so that a file of millions of tiny chunks
 * cannot exhaust a worker's heap before the budget sees anything.
 */
class ChunkData {
  private ranges = new Uint32Array(16);
  length = 0;
  constructor(private readonly bytes: Uint8Array) {}

  push(start: number, end: number): void {
    if (this.length * 2 + 2 > this.ranges.length) {
      const bigger = new Uint32Array(this.ranges.length * 2);
      bigger.set(this.ranges);
      this.ranges = bigger;
    }
    this.ranges[this.length * 2] = start;
    this.ranges[this.length * 2 + 1] = end;
    this.length++;
  }

  /** One buffer: the only payload in place, or the payloads joined (reserved in the budget). */
  join(budget: DecodeBudget): Uint8Array {
    const r = this.ranges;
    if (this.length === 1) return this.bytes.subarray(r[0] as number, r[1] as number);
    let total = 0;
    for (let i = 0; i < this.length; i++) total += (r[i * 2 + 1] as number) - (r[i * 2] as number);
    const out = budget.bytes(total, 'PNG compressed data');
    let o = 0;
    for (let i = 0; i < this.length; i++) {
      out.set(this.bytes.subarray(r[i * 2] as number, r[i * 2 + 1] as number), o);
      o += (r[i * 2 + 1] as number) - (r[i * 2] as number);
    }
    return out;
  }
}

function rowBytesOf(header: Header, width: number): number {
  return Math.ceil((width * (channelsOf[header.colourType] as number) * header.depth) / 8);
}

/**
 * Inflates and unfilters one image (the IDAT image or an APNG frame) of w×h and writes it
 * as RGBA into `out` (stride `outWidth` pixels) at (ox, oy).
 */
function decodeSubImage(
  header: Header,
  colours: Palette,
  parts: ChunkData,
  w: number,
  h: number,
  out: Uint8Array,
  outWidth: number,
  ox: number,
  oy: number,
  budget: DecodeBudget,
  out16?: Uint16Array,
): void {
  const passes = header.interlaced ? adam7 : ([[0, 0, 1, 1]] as const);
  let rawSize = 0;
  const sizes: [number, number][] = [];
  for (const [x0, y0, dx, dy] of passes) {
    const pw = w > x0 ? Math.ceil((w - x0) / dx) : 0;
    const ph = h > y0 ? Math.ceil((h - y0) / dy) : 0;
    sizes.push([pw, ph]);
    if (pw > 0 && ph > 0) rawSize += ph * (rowBytesOf(header, pw) + 1);
  }
  const raw = budget.bytes(rawSize, 'PNG decompressed data');
  const compressed = parts.join(budget);
  let inflated = 0;
  try {
    inflated = inflateZlib(compressed, raw, () => budget.tick());
  } catch (error) {
    if (!(error instanceof InflateError)) throw error;
    refuse('corrupt', `PNG image data does not inflate: ${error.message}`);
  }
  if (inflated < rawSize) refuse('truncated', `PNG image data is short: ${inflated} of ${rawSize} bytes`);

  const bpp = Math.max(1, ((channelsOf[header.colourType] as number) * header.depth) >> 3);
  // Whole pixels at once where the platform allows it (see writeRow).
  const out32 =
    littleEndian && out.byteOffset % 4 === 0
      ? new Uint32Array(out.buffer, out.byteOffset, out.length >> 2)
      : undefined;
  let offset = 0;
  for (let p = 0; p < passes.length; p++) {
    const [x0, y0, dx, dy] = passes[p] as readonly [number, number, number, number];
    const [pw, ph] = sizes[p] as [number, number];
    if (pw === 0 || ph === 0) continue;
    const rowBytes = rowBytesOf(header, pw);
    for (let r = 0; r < ph; r++) {
      budget.tick();
      const start = offset + 1;
      const filter = raw[offset] as number;
      const prior = r === 0 ? -1 : start - rowBytes - 1;
      unfilter(raw, filter, start, prior, rowBytes, bpp);
      writeRow(
        header,
        colours,
        raw,
        start,
        pw,
        out,
        ((oy + y0 + r * dy) * outWidth + ox + x0) * 4,
        dx * 4,
        out32,
        out16,
      );
      offset += rowBytes + 1;
    }
  }
}

/** Reverses one row's filter in place. `prior` is the previous row's start, -1 for none. */
function unfilter(
  raw: Uint8Array,
  filter: number,
  start: number,
  prior: number,
  n: number,
  bpp: number,
): void {
  const end = start + n;
  switch (filter) {
    case 0:
      return;
    case 1: // Sub
      for (let i = start + bpp; i < end; i++) raw[i] = ((raw[i] as number) + (raw[i - bpp] as number)) & 0xff;
      return;
    case 2: // Up
      if (prior < 0) return;
      for (let i = 0; i < n; i++)
        raw[start + i] = ((raw[start + i] as number) + (raw[prior + i] as number)) & 0xff;
      return;
    case 3: // Average
      if (prior < 0) {
        for (let i = start + bpp; i < end; i++)
          raw[i] = ((raw[i] as number) + ((raw[i - bpp] as number) >> 1)) & 0xff;
        return;
      }
      for (let i = 0; i < bpp; i++)
        raw[start + i] = ((raw[start + i] as number) + ((raw[prior + i] as number) >> 1)) & 0xff;
      for (let i = bpp; i < n; i++) {
        const avg = ((raw[start + i - bpp] as number) + (raw[prior + i] as number)) >> 1;
        raw[start + i] = ((raw[start + i] as number) + avg) & 0xff;
      }
      return;
    case 4: // Paeth
      if (prior < 0) {
        // No row above: Paeth predicts from the left byte only (same as Sub).
        for (let i = start + bpp; i < end; i++)
          raw[i] = ((raw[i] as number) + (raw[i - bpp] as number)) & 0xff;
        return;
      }
      for (let i = 0; i < bpp; i++)
        raw[start + i] = ((raw[start + i] as number) + (raw[prior + i] as number)) & 0xff;
      for (let i = bpp; i < n; i++) {
        const a = raw[start + i - bpp] as number;
        const b = raw[prior + i] as number;
        const c = raw[prior + i - bpp] as number;
        let pa = b - c;
        let pb = a - c;
        let pc = pa + pb;
        if (pa < 0) pa = -pa;
        if (pb < 0) pb = -pb;
        if (pc < 0) pc = -pc;
        const pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
        raw[start + i] = ((raw[start + i] as number) + pred) & 0xff;
      }
      return;
    default:
      refuse('corrupt', `PNG row uses unknown filter type ${filter}`);
  }
}

/** Converts `count` pixels of one unfiltered row to RGBA8 (and RGBA16 when asked). */
function writeRow(
  header: Header,
  colours: Palette,
  raw: Uint8Array,
  start: number,
  count: number,
  out: Uint8Array,
  o: number,
  step: number,
  out32: Uint32Array | undefined,
  out16?: Uint16Array,
): void {
  const d = header.depth;
  const pal = colours.rgba;
  if (out32 && d === 8) {
    // The common 8-bit cases, one 32-bit store per pixel (RGBA bytes on a little-endian
    // platform) instead of four byte stores.
    const step32 = step >> 2;
    let q = o >> 2;
    if (header.colourType === ColourType.rgb && colours.keyR < 0) {
      for (let p = start, end = start + count * 3; p < end; p += 3, q += step32)
        out32[q] =
          (0xff000000 |
            ((raw[p + 2] as number) << 16) |
            ((raw[p + 1] as number) << 8) |
            (raw[p] as number)) >>>
          0;
      return;
    }
    if (header.colourType === ColourType.palette) {
      const pal32 = colours.rgba32;
      for (let p = start, end = start + count; p < end; p++, q += step32)
        out32[q] = pal32[raw[p] as number] as number;
      return;
    }
  }
  switch (header.colourType) {
    case ColourType.grey: {
      if (d === 16) {
        for (let i = 0; i < count; i++, o += step) {
          const v = u16(raw, start + i * 2);
          const v8 = v >> 8;
          const a = v === colours.keyR ? 0 : 255;
          out[o] = v8;
          out[o + 1] = v8;
          out[o + 2] = v8;
          out[o + 3] = a;
          if (out16) {
            out16[o] = v;
            out16[o + 1] = v;
            out16[o + 2] = v;
            out16[o + 3] = a * 257;
          }
        }
      } else {
        const mask = (1 << d) - 1;
        const scale = 255 / mask;
        for (let i = 0; i < count; i++, o += step) {
          const bit = i * d;
          const v = ((raw[start + (bit >> 3)] as number) >> (8 - d - (bit & 7))) & mask;
          const v8 = Math.round(v * scale);
          out[o] = v8;
          out[o + 1] = v8;
          out[o + 2] = v8;
          out[o + 3] = v === colours.keyR ? 0 : 255;
        }
      }
      return;
    }
    case ColourType.rgb: {
      if (d === 16) {
        for (let i = 0; i < count; i++, o += step) {
          const p = start + i * 6;
          const r = u16(raw, p);
          const g = u16(raw, p + 2);
          const b = u16(raw, p + 4);
          const a = r === colours.keyR && g === colours.keyG && b === colours.keyB ? 0 : 255;
          out[o] = r >> 8;
          out[o + 1] = g >> 8;
          out[o + 2] = b >> 8;
          out[o + 3] = a;
          if (out16) {
            out16[o] = r;
            out16[o + 1] = g;
            out16[o + 2] = b;
            out16[o + 3] = a * 257;
          }
        }
      } else {
        const keyed = colours.keyR >= 0;
        for (let i = 0; i < count; i++, o += step) {
          const p = start + i * 3;
          const r = raw[p] as number;
          const g = raw[p + 1] as number;
          const b = raw[p + 2] as number;
          out[o] = r;
          out[o + 1] = g;
          out[o + 2] = b;
          out[o + 3] = keyed && r === colours.keyR && g === colours.keyG && b === colours.keyB ? 0 : 255;
        }
      }
      return;
    }
    case ColourType.palette: {
      const mask = (1 << d) - 1;
      for (let i = 0; i < count; i++, o += step) {
        const bit = i * d;
        const index =
          d === 8
            ? (raw[start + i] as number)
            : ((raw[start + (bit >> 3)] as number) >> (8 - d - (bit & 7))) & mask;
        const q = index * 4;
        out[o] = pal[q] as number;
        out[o + 1] = pal[q + 1] as number;
        out[o + 2] = pal[q + 2] as number;
        out[o + 3] = pal[q + 3] as number;
      }
      return;
    }
    case ColourType.greyAlpha: {
      if (d === 16) {
        for (let i = 0; i < count; i++, o += step) {
          const p = start + i * 4;
          const v = u16(raw, p);
          const a = u16(raw, p + 2);
          out[o] = v >> 8;
          out[o + 1] = v >> 8;
          out[o + 2] = v >> 8;
          out[o + 3] = a >> 8;
          if (out16) {
            out16[o] = v;
            out16[o + 1] = v;
            out16[o + 2] = v;
            out16[o + 3] = a;
          }
        }
      } else {
        for (let i = 0; i < count; i++, o += step) {
          const p = start + i * 2;
          const v = raw[p] as number;
          out[o] = v;
          out[o + 1] = v;
          out[o + 2] = v;
          out[o + 3] = raw[p + 1] as number;
        }
      }
      return;
    }
    default: {
      if (d === 16) {
        for (let i = 0; i < count; i++, o += step) {
          const p = start + i * 8;
          for (let c = 0; c < 4; c++) {
            const v = u16(raw, p + c * 2);
            out[o + c] = v >> 8;
            if (out16) out16[o + c] = v;
          }
        }
      } else if (step === 4) {
        out.set(raw.subarray(start, start + count * 4), o);
      } else {
        for (let i = 0; i < count; i++, o += step) {
          const p = start + i * 4;
          out[o] = raw[p] as number;
          out[o + 1] = raw[p + 1] as number;
          out[o + 2] = raw[p + 2] as number;
          out[o + 3] = raw[p + 3] as number;
        }
      }
    }
  }
}

/**
 * Decodes every APNG frame into a layer of its own size; `FrameCompositor` applies blend and
 * dispose when the animation is played.
 */
function animationLayers(
  header: Header,
  colours: Palette,
  idat: ChunkData,
  controls: readonly FrameControl[],
  defaultIsFrame: boolean,
  budget: DecodeBudget,
): Frame[] {
  const out: Frame[] = [];
  for (const [i, f] of controls.entries()) {
    budget.tick();
    const pixels = budget.bytes(f.width * f.height * 4, 'APNG frame');
    decodeSubImage(
      header,
      colours,
      i === 0 && defaultIsFrame ? idat : f.data,
      f.width,
      f.height,
      pixels,
      f.width,
      0,
      0,
      budget,
    );
    // Dispose "previous" on the first frame means "background" (APNG spec, fcTL).
    const dispose = i === 0 && f.dispose === Dispose.previous ? Dispose.background : f.dispose;
    out.push({
      delayMs: f.delayMs,
      layers: [
        {
          x: f.x,
          y: f.y,
          width: f.width,
          height: f.height,
          pixels,
          blend: f.blend === Blend.source ? 'source' : 'over',
          dispose:
            dispose === Dispose.background
              ? 'background'
              : dispose === Dispose.previous
                ? 'previous'
                : 'none',
        },
      ],
    });
  }
  budget.allocate(header.width * header.height * 4, 'APNG canvas for playing the animation');
  return out;
}
