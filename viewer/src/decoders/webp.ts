/**
 * WebP (RFC 9649): the RIFF container, still images (VP8 lossy, VP8L lossless, VP8X with an
 * ALPH alpha plane) and animations (ANIM/ANMF) composed onto the canvas.
 *
 * Written here because no maintained pure-JS WebP decoder exists, and the WASM builds on
 * npm carry libwebp from before the fix for CVE-2023-4863 (see webp-lossless.ts). The
 * container is parsed as libwebp's demuxer does (webmproject/libwebp src/demux/demux.c):
 * chunk sizes are checked against the RIFF size and the data; ICCP, EXIF, XMP and unknown
 * chunks are skipped (EXIF is read only for the orientation); frames must lie inside the
 * canvas and match the size their bitstream declares.
 *
 * Animation follows libwebp's WebPAnimDecoder (src/demux/anim_decode.c), which sharp
 * (libvips) and browsers match: the canvas starts transparent, the background colour in
 * ANIM is a hint and not used, a frame disposed to background clears its rectangle to
 * transparent before the next frame, and blending is non-premultiplied "source over" with
 * libwebp's integer arithmetic.
 */
import { type DecodeBudget, refuse } from './budget.ts';
import { stillFrames } from './compose.ts';
import { readOrientation } from './jpeg.ts';
import type { DecodedImage, Frame } from './types.ts';
import { decodeLossless, decodeLosslessAlpha, vp8lHeader } from './webp-lossless.ts';
import { decodeLossy, vp8Header } from './webp-lossy.ts';

// --- wire layout -----------------------------------------------------------------------
const riffHeaderSize = 12; // "RIFF" size "WEBP"
const chunkHeaderSize = 8; // fourcc + 32-bit little-endian payload size
const vp8xPayloadSize = 10;
const animPayloadSize = 6;
const anmfHeaderSize = 16;
const alphHeaderSize = 1;
const vp8xAnimation = 0x02;
const vp8xAlpha = 0x10;
/** libwebp's largest accepted chunk payload (MAX_CHUNK_PAYLOAD): ~0u - 8 - 1. */
const maxChunkPayload = 0xffffffff - chunkHeaderSize - 1;

const fourcc = (b: Uint8Array, o: number) =>
  String.fromCharCode(b[o] as number, b[o + 1] as number, b[o + 2] as number, b[o + 3] as number);
const u32 = (b: Uint8Array, o: number) =>
  ((b[o] as number) |
    ((b[o + 1] as number) << 8) |
    ((b[o + 2] as number) << 16) |
    ((b[o + 3] as number) << 24)) >>>
  0;
const u24 = (b: Uint8Array, o: number) =>
  (b[o] as number) | ((b[o + 1] as number) << 8) | ((b[o + 2] as number) << 16);

export function isWebp(bytes: Uint8Array): boolean {
  return bytes.length >= riffHeaderSize && fourcc(bytes, 0) === 'RIFF' && fourcc(bytes, 8) === 'WEBP';
}

interface Chunk {
  tag: string;
  /** Payload start and end (end is the declared end, never past the data). */
  start: number;
  end: number;
}

/** Splits `bytes[from..to)` into chunks; a chunk running past `to` is refused as truncated. */
function readChunks(bytes: Uint8Array, from: number, to: number, what: string): Chunk[] {
  const chunks: Chunk[] = [];
  let pos = from;
  while (pos < to) {
    if (to - pos < chunkHeaderSize) refuse('truncated', `${what} ends inside a chunk header`);
    const size = u32(bytes, pos + 4);
    if (size > maxChunkPayload) refuse('corrupt', `${what} has a chunk of ${size} bytes`);
    const start = pos + chunkHeaderSize;
    if (size > to - start)
      refuse('truncated', `${what} ${fourcc(bytes, pos)} chunk runs past the end of the data`);
    chunks.push({ tag: fourcc(bytes, pos), start, end: start + size });
    pos = start + size + (size & 1);
  }
  return chunks;
}

/** RGBA pixels of one VP8/VP8L bitstream, with its optional ALPH chunk. */
interface Still {
  width: number;
  height: number;
  rgba: Uint8Array;
  hasAlpha: boolean;
}

function decodeBitstream(
  bytes: Uint8Array,
  image: Chunk,
  alpha: Chunk | undefined,
  budget: DecodeBudget,
): Still {
  if (image.tag === 'VP8L') {
    const { width, height, argb } = decodeLossless(bytes, image.start, image.end, budget);
    return { width, height, rgba: argbToRgba(argb), hasAlpha: true };
  }
  const lossy = decodeLossy(bytes, image.start, image.end, budget);
  if (alpha) applyAlpha(bytes, alpha, lossy.rgba, lossy.width, lossy.height, budget);
  return { ...lossy, hasAlpha: alpha !== undefined };
}

/** Reorders ARGB words into RGBA bytes in place (the buffer is reused, no copy). */
function argbToRgba(argb: Uint32Array): Uint8Array {
  const out = new Uint8Array(argb.buffer, argb.byteOffset, argb.byteLength);
  for (let i = 0, o = 0; i < argb.length; i++, o += 4) {
    const p = argb[i] as number;
    out[o] = (p >>> 16) & 0xff;
    out[o + 1] = (p >>> 8) & 0xff;
    out[o + 2] = p & 0xff;
    out[o + 3] = p >>> 24;
  }
  return out;
}

// --- alpha (RFC 9649 §2.7.1.3 "Alpha") ---------------------------------------------------

enum AlphaFilter {
  none = 0,
  horizontal = 1,
  vertical = 2,
  gradient = 3,
}

function applyAlpha(
  bytes: Uint8Array,
  chunk: Chunk,
  rgba: Uint8Array,
  width: number,
  height: number,
  budget: DecodeBudget,
): void {
  if (chunk.end - chunk.start < alphHeaderSize) refuse('truncated', 'WebP ALPH chunk is empty');
  const header = bytes[chunk.start] as number;
  const compression = header & 3;
  const filter = (header >> 2) & 3;
  const preprocessing = (header >> 4) & 3;
  if (compression > 1 || preprocessing > 1 || header >> 6 !== 0)
    refuse('corrupt', `WebP ALPH header 0x${header.toString(16)} is invalid`);
  const start = chunk.start + alphHeaderSize;
  let plane: Uint8Array;
  if (compression === 0) {
    if (chunk.end - start < width * height) refuse('truncated', 'WebP raw alpha plane is cut short');
    plane = budget.bytes(width * height, 'WebP alpha plane');
    plane.set(bytes.subarray(start, start + width * height));
  } else {
    plane = decodeLosslessAlpha(bytes, start, chunk.end, width, height, budget);
  }
  unfilterAlpha(plane, width, height, filter);
  for (let i = 0; i < plane.length; i++) rgba[i * 4 + 3] = plane[i] as number;
}

/** Undoes the alpha plane's prediction filter in place (libwebp src/dsp/filters.c). */
export function unfilterAlpha(plane: Uint8Array, width: number, height: number, filter: AlphaFilter): void {
  if (filter === AlphaFilter.none) return;
  for (let y = 0; y < height; y++) {
    const row = y * width;
    if (y === 0 || filter === AlphaFilter.horizontal) {
      // The first pixel of a row is predicted from above (0 on the first row), the others
      // from the left; the first row is filtered horizontally whatever the filter.
      let left = y === 0 ? 0 : (plane[row - width] as number);
      for (let x = 0; x < width; x++) {
        left = (left + (plane[row + x] as number)) & 0xff;
        plane[row + x] = left;
      }
    } else if (filter === AlphaFilter.vertical) {
      for (let x = 0; x < width; x++)
        plane[row + x] = ((plane[row + x] as number) + (plane[row - width + x] as number)) & 0xff;
    } else {
      let left = plane[row - width] as number;
      let topLeft = left;
      for (let x = 0; x < width; x++) {
        const top = plane[row - width + x] as number;
        let pred = left + top - topLeft;
        pred = pred < 0 ? 0 : Math.min(pred, 255);
        left = (pred + (plane[row + x] as number)) & 0xff;
        plane[row + x] = left;
        topLeft = top;
      }
    }
  }
}

// --- the file ------------------------------------------------------------------------------

export function decodeWebp(bytes: Uint8Array, budget: DecodeBudget): DecodedImage {
  if (bytes.length < riffHeaderSize + chunkHeaderSize) refuse('truncated', 'WebP ends inside its header');
  const riffSize = u32(bytes, 4);
  if (riffSize < 4 + chunkHeaderSize) refuse('corrupt', `WebP RIFF size ${riffSize} is too small`);
  if (riffSize > maxChunkPayload) refuse('corrupt', `WebP RIFF size ${riffSize} is too large`);
  if (riffSize > bytes.length - chunkHeaderSize)
    refuse('truncated', 'WebP file is shorter than its RIFF size');
  // Bytes after the RIFF payload are ignored, as libwebp does.
  const chunks = readChunks(bytes, riffHeaderSize, chunkHeaderSize + riffSize, 'WebP');
  const first = chunks[0] as Chunk;
  if (first.tag === 'VP8 ' || first.tag === 'VP8L') {
    const still = decodeBitstream(bytes, first, undefined, budget);
    return image(still.width, still.height, stillFrames(still.width, still.height, still.rgba), 1, 1);
  }
  if (first.tag !== 'VP8X')
    refuse('corrupt', `WebP starts with an unknown ${JSON.stringify(first.tag)} chunk`);
  if (first.end - first.start < vp8xPayloadSize) refuse('truncated', 'WebP VP8X chunk is cut short');
  const flags = bytes[first.start] as number;
  const canvasWidth = u24(bytes, first.start + 4) + 1;
  const canvasHeight = u24(bytes, first.start + 7) + 1;
  budget.checkSize(canvasWidth, canvasHeight, 'WebP canvas');
  let orientation = 1;
  const exif = chunks.find((c) => c.tag === 'EXIF');
  if (exif) orientation = exifOrientation(bytes.subarray(exif.start, exif.end));

  if (flags & vp8xAnimation)
    return decodeAnimation(bytes, chunks, canvasWidth, canvasHeight, orientation, budget);

  const { image: bitstream, alpha } = findBitstream(
    bytes,
    chunks.slice(1),
    canvasWidth,
    canvasHeight,
    'WebP image',
  );
  const still = decodeBitstream(bytes, bitstream, alpha, budget);
  void (flags & vp8xAlpha); // the flag is a hint; the pixels say whether there is alpha
  return image(canvasWidth, canvasHeight, stillFrames(canvasWidth, canvasHeight, still.rgba), 1, orientation);
}

function image(
  width: number,
  height: number,
  frames: Frame[],
  loopCount: number,
  orientation: number,
): DecodedImage {
  return { format: 'webp', width, height, orientation, bitDepth: 8, frames, loopCount };
}

function exifOrientation(payload: Uint8Array): number {
  const exifPrefix = [0x45, 0x78, 0x69, 0x66, 0, 0];
  if (exifPrefix.every((b, i) => payload[i] === b)) return readOrientation(payload) ?? 1;
  const withPrefix = new Uint8Array(payload.length + 6);
  withPrefix.set(exifPrefix);
  withPrefix.set(payload, 6);
  return readOrientation(withPrefix) ?? 1;
}

/**
 * The VP8 or VP8L chunk among `chunks` (and for VP8 the ALPH chunk before it; VP8L carries
 * its own alpha), checked to be `width` × `height` as the enclosing header says.
 */
function findBitstream(
  bytes: Uint8Array,
  chunks: Chunk[],
  width: number,
  height: number,
  what: string,
): { image: Chunk; alpha: Chunk | undefined } {
  const at = chunks.findIndex((c) => c.tag === 'VP8 ' || c.tag === 'VP8L');
  if (at < 0) refuse('corrupt', `${what} has no image data (no VP8 or VP8L chunk)`);
  const image = chunks[at] as Chunk;
  const alpha = image.tag === 'VP8 ' ? chunks.slice(0, at).find((c) => c.tag === 'ALPH') : undefined;
  const size = bitstreamSize(bytes, image);
  if (size.width !== width || size.height !== height)
    refuse('corrupt', `${what} is ${size.width}×${size.height} but its header says ${width}×${height}`);
  return { image, alpha };
}

function bitstreamSize(bytes: Uint8Array, chunk: Chunk): { width: number; height: number } {
  return chunk.tag === 'VP8L'
    ? vp8lHeader(bytes, chunk.start, chunk.end)
    : vp8Header(bytes, chunk.start, chunk.end);
}

// --- animation -----------------------------------------------------------------------------

interface AnimFrame {
  x: number;
  y: number;
  width: number;
  height: number;
  durationMs: number;
  blend: boolean;
  disposeToBackground: boolean;
  image: Chunk;
  alpha: Chunk | undefined;
}

function decodeAnimation(
  bytes: Uint8Array,
  chunks: Chunk[],
  width: number,
  height: number,
  orientation: number,
  budget: DecodeBudget,
): DecodedImage {
  const anim = chunks.find((c) => c.tag === 'ANIM');
  if (!anim) refuse('corrupt', 'animated WebP has no ANIM chunk');
  if (anim.end - anim.start < animPayloadSize) refuse('truncated', 'WebP ANIM chunk is cut short');
  const loopCount = (bytes[anim.start + 4] as number) | ((bytes[anim.start + 5] as number) << 8);

  // Pass 1: every frame header, checked, before any pixel memory.
  const frames: AnimFrame[] = [];
  for (const c of chunks) {
    if (c.tag !== 'ANMF') continue;
    budget.checkFrames(frames.length + 1);
    if (c.end - c.start < anmfHeaderSize) refuse('truncated', 'WebP ANMF chunk is cut short');
    const x = u24(bytes, c.start) * 2;
    const y = u24(bytes, c.start + 3) * 2;
    const w = u24(bytes, c.start + 6) + 1;
    const h = u24(bytes, c.start + 9) + 1;
    const flags = bytes[c.start + 15] as number;
    if (x + w > width || y + h > height)
      refuse('corrupt', `WebP frame ${frames.length + 1} (${w}×${h} at ${x},${y}) lies outside the canvas`);
    const inner = readChunks(bytes, c.start + anmfHeaderSize, c.end, 'WebP ANMF');
    const { image: imageChunk, alpha } = findBitstream(bytes, inner, w, h, `WebP frame ${frames.length + 1}`);
    frames.push({
      x,
      y,
      width: w,
      height: h,
      durationMs: u24(bytes, c.start + 12),
      blend: (flags & 2) === 0,
      disposeToBackground: (flags & 1) === 1,
      image: imageChunk,
      alpha,
    });
  }
  if (frames.length === 0) refuse('corrupt', 'animated WebP has no frames');

  // Frames are composed here, on one canvas, with libwebp's arithmetic; each is kept as a
  // layer of its own size holding its composed rectangle (blend "source"), plus its
  // disposal, which any compositor replays exactly (see FrameCompositor).
  let layerBytes = 0;
  for (const f of frames) layerBytes += f.width * f.height * 4;
  budget.ensure(width * height * 4 + layerBytes, 'WebP animation layers and canvas');
  // The canvas after the previous frame and its disposal (libwebp's prev_frame_disposed),
  // and the one being drawn.
  const disposed = budget.bytes(width * height * 4, 'WebP canvas');
  const canvas = budget.bytes(width * height * 4, 'WebP canvas');
  const out: Frame[] = [];
  let previous: AnimFrame | undefined;
  let previousWasKey = false;
  for (const f of frames) {
    budget.tick();
    const key = isKeyFrame(f, previous, previousWasKey, width, height, bytes);
    if (key) canvas.fill(0);
    else canvas.set(disposed);
    const still = decodeBitstream(bytes, f.image, f.alpha, budget);
    for (let y = 0; y < f.height; y++) {
      const s = y * f.width * 4;
      canvas.set(still.rgba.subarray(s, s + f.width * 4), ((f.y + y) * width + f.x) * 4);
    }
    if (previous && f.blend && !key) blendFrame(canvas, disposed, width, f, previous);
    const pixels = budget.bytes(f.width * f.height * 4, 'WebP frame layer');
    for (let y = 0; y < f.height; y++) {
      const row = ((f.y + y) * width + f.x) * 4;
      pixels.set(canvas.subarray(row, row + f.width * 4), y * f.width * 4);
    }
    out.push({
      delayMs: f.durationMs,
      layers: [
        {
          x: f.x,
          y: f.y,
          width: f.width,
          height: f.height,
          pixels,
          blend: 'source',
          dispose: f.disposeToBackground ? 'background' : 'none',
        },
      ],
    });
    disposed.set(canvas);
    if (f.disposeToBackground)
      for (let y = f.y; y < f.y + f.height; y++)
        disposed.fill(0, (y * width + f.x) * 4, (y * width + f.x + f.width) * 4);
    previous = f;
    previousWasKey = key;
  }
  return image(width, height, out, out.length > 1 ? loopCount : 1, orientation);
}

const coversCanvas = (f: AnimFrame, width: number, height: number) =>
  f.width === width && f.height === height;

/** Whether the frame is drawn on a cleared canvas (libwebp anim_decode.c IsKeyFrame). */
function isKeyFrame(
  f: AnimFrame,
  previous: AnimFrame | undefined,
  previousWasKey: boolean,
  width: number,
  height: number,
  bytes: Uint8Array,
): boolean {
  if (!previous) return true;
  if ((!frameHasAlpha(f, bytes) || !f.blend) && coversCanvas(f, width, height)) return true;
  return previous.disposeToBackground && (coversCanvas(previous, width, height) || previousWasKey);
}

/** A frame has alpha when it has an ALPH chunk or its VP8L header says so (as the demuxer reports it). */
function frameHasAlpha(f: AnimFrame, bytes: Uint8Array): boolean {
  if (f.image.tag === 'VP8L') return vp8lHeader(bytes, f.image.start, f.image.end).alphaHint;
  return f.alpha !== undefined;
}

/**
 * Blends the frame's non-opaque pixels over the previous canvas, non-premultiplied "source
 * over" with libwebp's integer arithmetic (BlendPixelNonPremult). Pixels inside the previous
 * frame's rectangle when it was disposed to background are left as decoded, as libwebp does.
 */
function blendFrame(
  canvas: Uint8Array,
  disposed: Uint8Array,
  width: number,
  f: AnimFrame,
  previous: AnimFrame,
): void {
  for (let y = f.y; y < f.y + f.height; y++) {
    const skipRow = previous.disposeToBackground && y >= previous.y && y < previous.y + previous.height;
    for (let x = f.x; x < f.x + f.width; x++) {
      if (skipRow && x >= previous.x && x < previous.x + previous.width) continue;
      const d = (y * width + x) * 4;
      const srcA = canvas[d + 3] as number;
      if (srcA === 255) continue;
      if (srcA === 0) {
        canvas[d] = disposed[d] as number;
        canvas[d + 1] = disposed[d + 1] as number;
        canvas[d + 2] = disposed[d + 2] as number;
        canvas[d + 3] = disposed[d + 3] as number;
        continue;
      }
      // dst_factor_a ≈ dst_a × (255 − src_a) / 255; each channel is the alpha-weighted mean,
      // scaled by 2^24 / blend_a.
      const dstA = disposed[d + 3] as number;
      const dstFactorA = (dstA * (256 - srcA)) >> 8;
      const blendA = srcA + dstFactorA;
      const scale = Math.floor((1 << 24) / blendA);
      for (let c = 0; c < 3; c++) {
        const v = (canvas[d + c] as number) * srcA + (disposed[d + c] as number) * dstFactorA;
        canvas[d + c] = Math.floor((v * scale) / 2 ** 24);
      }
      canvas[d + 3] = blendA;
    }
  }
}
