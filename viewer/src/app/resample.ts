/**
 * Downscaling for display. The filter is Lanczos-3 (a windowed sinc, 3 lobes), applied as
 * libvips' `vips_resize` does for sharp's default `resize` kernel: first an integer box
 * reduction by floor(ratio / 2) on each axis (vips_shrink, with `gap` 2.0 the default), then
 * Lanczos-3 over the residual ratio (2 to 4, or the whole ratio below 4), the kernel stretched
 * by that ratio so it low-passes below the new Nyquist frequency. Why this filter: a
 * point-sampling or bilinear reduction of a large photo aliases (moiré on fine textures,
 * jagged edges); a box filter alone blurs and still leaks high frequencies; Lanczos-3 keeps
 * edges sharp with little ringing and is what sharp (the reference the proof compares with)
 * uses, so a fitted view matches `sharp.resize(w, h, { kernel: 'lanczos3' })`. Colours are
 * weighted by alpha (premultiplied) so transparent pixels do not bleed dark fringes, as sharp
 * premultiplies before resizing. Upscaling and 1:1 use the nearest pixel (a zoomed-in view
 * shows each image pixel as a square, and 1:1 is exact); those go through `nearestAxis`.
 *
 * Everything is typed arrays and plain loops (no per-pixel closures): the lab runs JS 4-14×
 * slower than the host.
 */

export interface Pixels {
  /** width × height RGBA, straight alpha. */
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
}

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
 * copying). Opaque images: vertical then horizontal, each rounded as libvips' 8-bit
 * shrinkv/shrinkh ((sum + f/2) · ⌊2³² / (256 f)⌋ >> 24). Otherwise colours weighted by alpha.
 */
export function boxReduce(
  source: Pixels,
  fx: number,
  fy: number,
  opaque: boolean = isOpaque(source),
): Pixels {
  if (!opaque) return boxReduceAlpha(source, fx, fy);
  const tall = boxVertical(source, fy);
  return boxHorizontal(tall, fx);
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

function boxReduceAlpha(source: Pixels, fx: number, fy: number): Pixels {
  const { data, width, height } = source;
  const ow = Math.ceil(width / fx);
  const oh = Math.ceil(height / fy);
  const out = new Uint8Array(ow * oh * 4);
  const sums = new Float64Array(ow * 4);
  const count = fx * fy;
  for (let oy = 0; oy < oh; oy++) {
    sums.fill(0);
    for (let dy = 0; dy < fy; dy++) {
      const row = Math.min(height - 1, oy * fy + dy) * width * 4;
      for (let ox = 0, s = 0; ox < ow; ox++, s += 4) {
        let r = 0;
        let g = 0;
        let b = 0;
        let a = 0;
        for (let dx = 0; dx < fx; dx++) {
          const p = row + Math.min(width - 1, ox * fx + dx) * 4;
          const alpha = data[p + 3] as number;
          r += (data[p] as number) * alpha;
          g += (data[p + 1] as number) * alpha;
          b += (data[p + 2] as number) * alpha;
          a += alpha;
        }
        sums[s] = (sums[s] as number) + r;
        sums[s + 1] = (sums[s + 1] as number) + g;
        sums[s + 2] = (sums[s + 2] as number) + b;
        sums[s + 3] = (sums[s + 3] as number) + a;
      }
    }
    for (let ox = 0, s = 0, o = oy * ow * 4; ox < ow; ox++, s += 4, o += 4) {
      const a = sums[s + 3] as number;
      if (a === 0) continue;
      out[o] = Math.round((sums[s] as number) / a);
      out[o + 1] = Math.round((sums[s + 1] as number) / a);
      out[o + 2] = Math.round((sums[s + 2] as number) / a);
      out[o + 3] = Math.round(a / count);
    }
  }
  return { data: out, width: ow, height: oh };
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
 * from `xs` and `ys`: vertical pass, then horizontal, one output row at a time (libvips' order:
 * reducev, then reduceh). Opaque images are resampled as libvips does 8-bit ones (fixed-point
 * weights, each pass rounded and clamped to 0-255), so sharp's output is met closely; images
 * with transparency in premultiplied floating point (sharp premultiplies them). Returns w × h
 * RGBA, straight alpha.
 */
export function resampleRect(
  source: Pixels,
  xs: AxisWeights,
  ys: AxisWeights,
  w: number,
  h: number,
  opaque: boolean = isOpaque(source),
): Uint8Array {
  // Source columns the output columns read.
  let first = Number.MAX_SAFE_INTEGER;
  let last = -1;
  for (let i = 0; i < xs.index.length; i++) {
    const c = xs.index[i] as number;
    if (c < first) first = c;
    if (c > last) last = c;
  }
  const columns = last - first + 1;
  const out = new Uint8Array(w * h * 4);
  if (opaque) resampleOpaque(source, xs, ys, w, h, first, columns, out);
  else resampleAlpha(source, xs, ys, w, h, first, columns, out);
  return out;
}

function resampleOpaque(
  source: Pixels,
  xs: AxisWeights,
  ys: AxisWeights,
  w: number,
  h: number,
  first: number,
  columns: number,
  out: Uint8Array,
): void {
  const { data, width } = source;
  const fx = fixedWeights(xs);
  const fy = fixedWeights(ys);
  const hx = xs.taps;
  const hy = ys.taps;
  const row = new Uint8Array(columns * 4);
  const sums = new Int32Array(columns * 4);
  const span = columns * 4;
  for (let y = 0; y < h; y++) {
    // Vertical: one row of the needed columns, rounded and clamped as libvips' reducev; tap by
    // tap over contiguous bytes, the loop the JIT makes fastest.
    sums.fill(FIXED_HALF);
    for (let t = y * hy, end = t + hy; t < end; t++) {
      const k = fy[t] as number;
      const from = ((ys.index[t] as number) * width + first) * 4;
      for (let i = 0; i < span; i++) sums[i] = (sums[i] as number) + (data[from + i] as number) * k;
    }
    for (let i = 0; i < span; i++) {
      const v = (sums[i] as number) >> FIXED_SHIFT;
      row[i] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
    // Horizontal.
    for (let x = 0, o = y * w * 4; x < w; x++, o += 4) {
      let r = FIXED_HALF;
      let g = FIXED_HALF;
      let b = FIXED_HALF;
      for (let t = x * hx, end = t + hx; t < end; t++) {
        const k = fx[t] as number;
        const p = ((xs.index[t] as number) - first) * 4;
        r += (row[p] as number) * k;
        g += (row[p + 1] as number) * k;
        b += (row[p + 2] as number) * k;
      }
      out[o] = clampFixed(r);
      out[o + 1] = clampFixed(g);
      out[o + 2] = clampFixed(b);
      out[o + 3] = 255;
    }
  }
}

function resampleAlpha(
  source: Pixels,
  xs: AxisWeights,
  ys: AxisWeights,
  w: number,
  h: number,
  first: number,
  columns: number,
  out: Uint8Array,
): void {
  const { data, width } = source;
  const hx = xs.taps;
  const hy = ys.taps;
  const row = new Float32Array(columns * 4);
  for (let y = 0; y < h; y++) {
    for (let c = 0, o = 0; c < columns; c++, o += 4) {
      const column = (first + c) * 4;
      let r = 0;
      let g = 0;
      let b = 0;
      let a = 0;
      for (let t = y * hy, end = t + hy; t < end; t++) {
        const k = ys.weight[t] as number;
        const p = (ys.index[t] as number) * width * 4 + column;
        const ak = ((data[p + 3] as number) * k) / 255;
        r += (data[p] as number) * ak;
        g += (data[p + 1] as number) * ak;
        b += (data[p + 2] as number) * ak;
        a += (data[p + 3] as number) * k;
      }
      row[o] = r;
      row[o + 1] = g;
      row[o + 2] = b;
      row[o + 3] = a;
    }
    for (let x = 0, o = y * w * 4; x < w; x++, o += 4) {
      let r = 0;
      let g = 0;
      let b = 0;
      let a = 0;
      for (let t = x * hx, end = t + hx; t < end; t++) {
        const k = xs.weight[t] as number;
        const p = ((xs.index[t] as number) - first) * 4;
        r += (row[p] as number) * k;
        g += (row[p + 1] as number) * k;
        b += (row[p + 2] as number) * k;
        a += (row[p + 3] as number) * k;
      }
      if (a < 0.5) continue; // rounds to alpha 0: transparent black
      const unpremultiply = 255 / a;
      out[o] = clampByte(r * unpremultiply);
      out[o + 1] = clampByte(g * unpremultiply);
      out[o + 2] = clampByte(b * unpremultiply);
      out[o + 3] = clampByte(a);
    }
  }
}

function clampFixed(sum: number): number {
  const v = sum >> FIXED_SHIFT;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

function clampByte(v: number): number {
  return v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
}
