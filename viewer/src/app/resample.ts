/**
 * Downscaling for display. The filter is Lanczos-3 (a windowed sinc, 3 lobes), applied as
 * libvips' `vips_resize` does for sharp's default `resize` kernel: first an integer box
 * reduction by floor(ratio / 2) on each axis (vips_shrink, with `gap` 2.0 the default), then
 * Lanczos-3 over the residual ratio (2 to 4, or the whole ratio below 4), the kernel stretched
 * by that ratio so it low-passes below the new Nyquist frequency. Why this filter: a
 * point-sampling or bilinear reduction of a large photo aliases (moiré on fine textures,
 * jagged edges); a box filter alone blurs and still leaks high frequencies; Lanczos-3 keeps
 * edges sharp with little ringing and is what sharp (the reference the proof compares with)
 * uses, so a fitted view matches `sharp.resize(w, h, { kernel: 'lanczos3' })`: the same
 * taps, libvips' 8-bit fixed-point arithmetic and its rounding at each step. Colours are
 * weighted by alpha (premultiplied) so transparent pixels do not bleed dark fringes, as sharp
 * premultiplies before resizing. Upscaling and 1:1 use the nearest pixel (a zoomed-in view
 * shows each image pixel as a square, and 1:1 is exact); those go through `nearestAxis`.
 *
 * Everything is typed arrays and plain loops (no per-pixel closures): the lab runs JS 4-14×
 * slower than the host.
 */

export interface Pixels {
  /** width × height RGBA: straight alpha, or premultiplied when `premultiplied`. */
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
  /** Colours already multiplied by alpha (a box-reduced copy of a transparent image). */
  readonly premultiplied?: boolean;
  /** Known to be opaque (or known not to be), saving a scan. */
  readonly opaque?: boolean;
}

/** floor(c · a / 255) for index (a << 8) | c: libvips' premultiply (float) cast back to 8 bits (truncating), as sharp does. */
const PREMULTIPLY = new Uint8Array(65536);
for (let a = 0; a < 256; a++)
  for (let c = 0; c < 256; c++) PREMULTIPLY[(a << 8) | c] = Math.floor((c * a) / 255);

/**
 * Which source pixels make each output pixel along one axis, with their weights: `taps`
 * entries per output pixel in `index` (source coordinates, clamped to the edge as libvips
 * extends images by copying the edge) and `weight` (summing to 1).
 */
export interface AxisWeights {
  readonly taps: number;
  readonly index: Int32Array;
  readonly weight: Float32Array;
}

function lanczos3(x: number): number {
  if (x === 0) return 1;
  if (x <= -3 || x >= 3) return 0;
  const px = Math.PI * x;
  return (3 * Math.sin(px) * Math.sin(px / 3)) / (px * px);
}

/**
 * Lanczos-3 weights for output pixels [from, to) of an axis of `source` pixels reduced by
 * `ratio` (> 1), laid out as libvips 8.17's reduceh/reducev: output pixel x is centred on
 * source position c = (x + 0.5) · ratio − 0.5; its 2·round(3·ratio) + 1 taps are the source
 * pixels round(c) − round(3·ratio) … round(c) + round(3·ratio) (clamped to the edge); the
 * kernel is evaluated at (tap − c) / ratio with c's fraction rounded to 1/128 (libvips'
 * coefficient tables), then normalised to sum 1. After a box step the ratio is the overall
 * ratio divided by the box factor (libvips keeps it so, although the boxed size was rounded up).
 */
export function lanczosAxis(source: number, ratio: number, from: number, to: number): AxisWeights {
  const reach = Math.round(3 * ratio);
  const taps = 2 * reach + 1;
  const n = to - from;
  const index = new Int32Array(n * taps);
  const weight = new Float32Array(n * taps);
  for (let i = 0; i < n; i++) {
    const position = (from + i + 0.5) * ratio; // c + 0.5
    const whole = Math.floor(position);
    const fraction = ((((position * 256) | 0) & 255) + 1) >> 1; // in 1/128ths, as libvips' tables
    const half = fraction / 128 + reach - 0.5;
    let sum = 0;
    for (let t = 0; t < taps; t++) {
      const w = lanczos3((t - half) / ratio);
      weight[i * taps + t] = w;
      sum += w;
      index[i * taps + t] = Math.min(source - 1, Math.max(0, whole - reach + t));
    }
    for (let t = 0; t < taps; t++) weight[i * taps + t] = (weight[i * taps + t] as number) / sum;
  }
  return { taps, index, weight };
}

/** One tap per output pixel: the source pixel whose square holds the output pixel's centre. */
export function nearestAxis(source: number, ratio: number, from: number, to: number): AxisWeights {
  const n = to - from;
  const index = new Int32Array(n);
  for (let i = 0; i < n; i++) index[i] = Math.min(source - 1, Math.floor((from + i + 0.5) * ratio));
  return { taps: 1, index, weight: new Float32Array(n).fill(1) };
}

/** Integer box reduction factor libvips takes before its kernel, for a reduction by `ratio`. */
export function boxFactor(ratio: number): number {
  return Math.max(1, Math.floor(ratio / 2));
}

/**
 * Mean of each fx × fy box, output ceil(width / fx) × ceil(height / fy); boxes past the right
 * or bottom edge repeat the edge pixels (libvips' `ceil` shrink over an image extended by
 * copying). Vertical then horizontal, each rounded as libvips' 8-bit shrinkv/shrinkh
 * ((sum + f/2) · ⌊2³² / (256 f)⌋ >> 24); a transparent image is premultiplied first (and the
 * result stays premultiplied for the Lanczos step).
 */
export function boxReduce(source: Pixels, fx: number, fy: number): Pixels {
  const opaque = source.opaque ?? isOpaque(source);
  const input = opaque || source.premultiplied ? source : premultiplied(source);
  const tall = boxVertical(input, fy);
  const reduced = boxHorizontal(tall, fx);
  return { data: reduced.data, width: reduced.width, height: reduced.height, opaque, premultiplied: !opaque };
}

/** A premultiplied 8-bit copy (the box step reads every pixel anyway). */
function premultiplied(source: Pixels): Pixels {
  const out = new Uint8Array(source.data.length);
  premultiplyInto(source.data, 0, out, out.length);
  return { ...source, data: out, premultiplied: true };
}

/** `length` bytes of RGBA from `data[from]` into `out`, colours multiplied by alpha as sharp does. */
function premultiplyInto(data: Uint8Array, from: number, out: Uint8Array, length: number): void {
  for (let i = 0; i < length; i += 4) {
    const a = (data[from + i + 3] as number) << 8;
    out[i] = PREMULTIPLY[a | (data[from + i] as number)] as number;
    out[i + 1] = PREMULTIPLY[a | (data[from + i + 1] as number)] as number;
    out[i + 2] = PREMULTIPLY[a | (data[from + i + 2] as number)] as number;
    out[i + 3] = a >> 8;
  }
}

function boxVertical(source: Pixels, f: number): Pixels {
  const { data, width, height } = source;
  if (f === 1) return source;
  const oh = Math.ceil(height / f);
  const out = new Uint8Array(width * oh * 4);
  const sums = new Uint32Array(width * 4);
  const amend = f >> 1;
  const multiplier = Math.floor(2 ** 32 / (256 * f));
  for (let oy = 0; oy < oh; oy++) {
    sums.fill(0);
    for (let dy = 0; dy < f; dy++) {
      const row = Math.min(height - 1, oy * f + dy) * width * 4;
      for (let i = 0; i < width * 4; i++) sums[i] = (sums[i] as number) + (data[row + i] as number);
    }
    const o = oy * width * 4;
    for (let i = 0; i < width * 4; i++)
      out[o + i] = Math.floor((((sums[i] as number) + amend) * multiplier) / 2 ** 24);
  }
  return { data: out, width, height: oh };
}

function boxHorizontal(source: Pixels, f: number): Pixels {
  const { data, width, height } = source;
  if (f === 1) return source;
  const ow = Math.ceil(width / f);
  const out = new Uint8Array(ow * height * 4);
  const amend = f >> 1;
  const multiplier = Math.floor(2 ** 32 / (256 * f));
  for (let y = 0; y < height; y++) {
    const row = y * width * 4;
    for (let ox = 0, o = y * ow * 4; ox < ow; ox++, o += 4) {
      let r = amend;
      let g = amend;
      let b = amend;
      let a = amend;
      for (let dx = 0; dx < f; dx++) {
        const p = row + Math.min(width - 1, ox * f + dx) * 4;
        r += data[p] as number;
        g += data[p + 1] as number;
        b += data[p + 2] as number;
        a += data[p + 3] as number;
      }
      out[o] = Math.floor((r * multiplier) / 2 ** 24);
      out[o + 1] = Math.floor((g * multiplier) / 2 ** 24);
      out[o + 2] = Math.floor((b * multiplier) / 2 ** 24);
      out[o + 3] = Math.floor((a * multiplier) / 2 ** 24);
    }
  }
  return { data: out, width: ow, height };
}

/** libvips' fixed-point coefficients for 8-bit images: weights × 4096, truncated (VIPS_INTERPOLATE_SHIFT 12). */
const FIXED_SHIFT = 12;
const FIXED_SCALE = 1 << FIXED_SHIFT;
const FIXED_HALF = FIXED_SCALE >> 1;

function fixedWeights(axis: AxisWeights): Int32Array {
  const fixed = new Int32Array(axis.weight.length);
  for (let i = 0; i < fixed.length; i++) fixed[i] = Math.trunc((axis.weight[i] as number) * FIXED_SCALE);
  return fixed;
}

/** True when every pixel is opaque (then sharp resizes 8-bit values, not premultiplied floats). */
export function isOpaque(source: Pixels): boolean {
  const { data } = source;
  for (let i = 3; i < data.length; i += 4) if (data[i] !== 255) return false;
  return true;
}

/**
 * Resamples `source` for the output rectangle `w` × `h` whose columns and rows take their taps
 * from `xs` and `ys`, as sharp's resize does 8-bit images: colours premultiplied by alpha and
 * truncated to 8 bits (images with transparency), then libvips' reducev and reduceh with
 * fixed-point weights, each pass rounded and clamped to 0-255, then unpremultiplied (factor
 * 255 / alpha, truncated). Works one output row at a time: the vertical pass over the source
 * columns the row needs, then the horizontal one. Returns w × h RGBA, straight alpha.
 */
export function resampleRect(
  source: Pixels,
  xs: AxisWeights,
  ys: AxisWeights,
  w: number,
  h: number,
): Uint8Array {
  const opaque = source.opaque ?? isOpaque(source);
  const premultiply = !opaque && !source.premultiplied;
  const { data, width } = source;
  // Source columns the output columns read.
  let first = Number.MAX_SAFE_INTEGER;
  let last = -1;
  for (let i = 0; i < xs.index.length; i++) {
    const c = xs.index[i] as number;
    if (c < first) first = c;
    if (c > last) last = c;
  }
  const span = (last - first + 1) * 4;
  const fx = fixedWeights(xs);
  const fy = fixedWeights(ys);
  const hx = xs.taps;
  const hy = ys.taps;
  // Pixel index of each horizontal tap in the row the vertical pass makes.
  const offsets = new Int32Array(xs.index.length);
  for (let i = 0; i < offsets.length; i++) offsets[i] = (xs.index[i] as number) - first;
  const out = new Uint8Array(w * h * 4);
  const row = new Uint8Array(span);
  const row32 = new Int32Array(row.buffer);
  const sums = new Int32Array(span);
  const outSums = new Int32Array(w * 4);
  // Premultiplied source rows, kept while the taps of the next output rows still use them.
  const ringSize = 2 * hy + 2;
  const ringRows = new Int32Array(ringSize).fill(-1);
  const ring = premultiply ? Array.from({ length: ringSize }, () => new Uint8Array(span)) : [];
  for (let y = 0; y < h; y++) {
    sums.fill(FIXED_HALF);
    for (let t = y * hy, end = t + hy; t < end; t++) {
      const k = fy[t] as number;
      const r = ys.index[t] as number;
      let line: Uint8Array;
      let at = 0;
      if (premultiply) {
        const slot = r % ringSize;
        line = ring[slot] as Uint8Array;
        if (ringRows[slot] !== r) {
          ringRows[slot] = r;
          premultiplyInto(data, (r * width + first) * 4, line, span);
        }
      } else {
        line = data;
        at = (r * width + first) * 4;
      }
      for (let i = 0; i < span; i++) sums[i] = (sums[i] as number) + (line[at + i] as number) * k;
    }
    for (let i = 0; i < span; i++) row[i] = clampFixed(sums[i] as number);
    for (let x = 0, o = 0; x < w; x++, o += 4) {
      let r = FIXED_HALF;
      let g = FIXED_HALF;
      let b = FIXED_HALF;
      let a = FIXED_HALF;
      // One 32-bit read per tap (R | G << 8 | B << 16 | A << 24 on little-endian machines).
      for (let t = x * hx, end = t + hx; t < end; t++) {
        const k = fx[t] as number;
        const word = row32[offsets[t] as number] as number;
        r += (word & 0xff) * k;
        g += ((word >>> 8) & 0xff) * k;
        b += ((word >>> 16) & 0xff) * k;
        a += (word >>> 24) * k;
      }
      outSums[o] = r;
      outSums[o + 1] = g;
      outSums[o + 2] = b;
      outSums[o + 3] = a;
    }
    writeRow(outSums, out, y * w * 4, w, opaque);
  }
  return out;
}

/**
 * As `resampleRect`, horizontal pass first: what sharp computes for an image it rotates by a
 * quarter turn before resizing (its reducev then runs along the stored rows), so a rotated
 * view rounds between the passes as sharp's does.
 */
export function resampleRectAcross(
  source: Pixels,
  xs: AxisWeights,
  ys: AxisWeights,
  w: number,
  h: number,
): Uint8Array {
  const opaque = source.opaque ?? isOpaque(source);
  const premultiply = !opaque && !source.premultiplied;
  const { data, width } = source;
  const fx = fixedWeights(xs);
  const fy = fixedWeights(ys);
  const hx = xs.taps;
  const hy = ys.taps;
  const out = new Uint8Array(w * h * 4);
  const span = w * 4;
  const sums = new Int32Array(span);
  // Horizontally resampled source rows, kept while the next output rows' taps still use them.
  const ringSize = 2 * hy + 2;
  const ringRows = new Int32Array(ringSize).fill(-1);
  const ring = Array.from({ length: ringSize }, () => new Uint8Array(span));
  for (let y = 0; y < h; y++) {
    sums.fill(FIXED_HALF);
    for (let t = y * hy, end = t + hy; t < end; t++) {
      const r = ys.index[t] as number;
      const slot = r % ringSize;
      const line = ring[slot] as Uint8Array;
      if (ringRows[slot] !== r) {
        ringRows[slot] = r;
        const base = r * width * 4;
        for (let x = 0, o = 0; x < w; x++, o += 4) {
          let cr = FIXED_HALF;
          let cg = FIXED_HALF;
          let cb = FIXED_HALF;
          let ca = FIXED_HALF;
          for (let u = x * hx, stop = u + hx; u < stop; u++) {
            const k = fx[u] as number;
            const p = base + (xs.index[u] as number) * 4;
            const a = data[p + 3] as number;
            if (premultiply) {
              cr += (PREMULTIPLY[(a << 8) | (data[p] as number)] as number) * k;
              cg += (PREMULTIPLY[(a << 8) | (data[p + 1] as number)] as number) * k;
              cb += (PREMULTIPLY[(a << 8) | (data[p + 2] as number)] as number) * k;
            } else {
              cr += (data[p] as number) * k;
              cg += (data[p + 1] as number) * k;
              cb += (data[p + 2] as number) * k;
            }
            ca += a * k;
          }
          line[o] = clampFixed(cr);
          line[o + 1] = clampFixed(cg);
          line[o + 2] = clampFixed(cb);
          line[o + 3] = clampFixed(ca);
        }
      }
      const k = fy[t] as number;
      for (let i = 0; i < span; i++) sums[i] = (sums[i] as number) + (line[i] as number) * k;
    }
    writeRow(sums, out, y * span, w, opaque);
  }
  return out;
}

/** One output row from its fixed-point sums: rounded, clamped, unpremultiplied unless opaque. */
function writeRow(sums: Int32Array, out: Uint8Array, at: number, w: number, opaque: boolean): void {
  for (let x = 0, i = 0, o = at; x < w; x++, i += 4, o += 4) {
    if (opaque) {
      out[o] = clampFixed(sums[i] as number);
      out[o + 1] = clampFixed(sums[i + 1] as number);
      out[o + 2] = clampFixed(sums[i + 2] as number);
      out[o + 3] = 255;
      continue;
    }
    const alpha = clampFixed(sums[i + 3] as number);
    if (alpha === 0) continue;
    const factor = 255 / alpha;
    out[o] = Math.min(255, Math.trunc(clampFixed(sums[i] as number) * factor));
    out[o + 1] = Math.min(255, Math.trunc(clampFixed(sums[i + 1] as number) * factor));
    out[o + 2] = Math.min(255, Math.trunc(clampFixed(sums[i + 2] as number) * factor));
    out[o + 3] = alpha;
  }
}

function clampFixed(sum: number): number {
  return Math.min(255, Math.max(0, sum >> FIXED_SHIFT));
}
