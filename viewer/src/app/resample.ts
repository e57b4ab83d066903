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
 * Lanczos-3 weights for output pixels [from, to) of an axis reduced from `source` to `output`
 * pixels (source ≥ output). Pixel centres line up as libvips' reduce does: output pixel x
 * covers source position (x + 0.5) · ratio − 0.5.
 */
export function lanczosAxis(source: number, output: number, from: number, to: number): AxisWeights {
  const ratio = source / output;
  const support = 3 * ratio;
  const taps = Math.ceil(2 * support) + 1;
  const n = to - from;
  const index = new Int32Array(n * taps);
  const weight = new Float32Array(n * taps);
  for (let i = 0; i < n; i++) {
    const centre = (from + i + 0.5) * ratio - 0.5;
    const first = Math.ceil(centre - support);
    let sum = 0;
    for (let t = 0; t < taps; t++) {
      const w = lanczos3((first + t - centre) / ratio);
      weight[i * taps + t] = w;
      sum += w;
      index[i * taps + t] = Math.min(source - 1, Math.max(0, first + t));
    }
    for (let t = 0; t < taps; t++) weight[i * taps + t] = (weight[i * taps + t] as number) / sum;
  }
  return { taps, index, weight };
}

/** One tap per output pixel: the source pixel whose square holds the output pixel's centre. */
export function nearestAxis(source: number, output: number, from: number, to: number): AxisWeights {
  const n = to - from;
  const index = new Int32Array(n);
  const ratio = source / output;
  for (let i = 0; i < n; i++) index[i] = Math.min(source - 1, Math.floor((from + i + 0.5) * ratio));
  return { taps: 1, index, weight: new Float32Array(n).fill(1) };
}

/** Integer box reduction factor libvips takes before its kernel, for a reduction by `ratio`. */
export function boxFactor(ratio: number): number {
  return Math.max(1, Math.floor(ratio / 2));
}

/**
 * Mean of each fx × fy box (alpha-weighted colours), output ceil(width / fx) × ceil(height / fy);
 * boxes past the right or bottom edge repeat the edge pixels (libvips' `ceil` shrink over an
 * image extended by copying).
 */
export function boxReduce(source: Pixels, fx: number, fy: number): Pixels {
  const { data, width, height } = source;
  const ow = Math.ceil(width / fx);
  const oh = Math.ceil(height / fy);
  const out = new Uint8Array(ow * oh * 4);
  const sums = new Float64Array(ow * 4);
  const count = fx * fy;
  for (let oy = 0; oy < oh; oy++) {
    sums.fill(0);
    for (let dy = 0; dy < fy; dy++) {
      const y = Math.min(height - 1, oy * fy + dy);
      const row = y * width * 4;
      for (let ox = 0, s = 0; ox < ow; ox++, s += 4) {
        let r = 0;
        let g = 0;
        let b = 0;
        let a = 0;
        for (let dx = 0; dx < fx; dx++) {
          const x = Math.min(width - 1, ox * fx + dx);
          const p = row + x * 4;
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

/** Output rows computed per strip: bounds the horizontal pass's float buffer. */
const STRIP_ROWS = 32;

/**
 * Resamples `source` as if to outWidth × outHeight, computing only the output rectangle
 * (x, y, w, h): horizontal pass over the source rows the strip needs, then vertical, in
 * premultiplied float. Returns w × h RGBA, straight alpha.
 */
export function resampleRect(
  source: Pixels,
  xs: AxisWeights,
  ys: AxisWeights,
  w: number,
  h: number,
): Uint8Array {
  const { data, width } = source;
  const out = new Uint8Array(w * h * 4);
  const hx = xs.taps;
  const hy = ys.taps;
  for (let strip = 0; strip < h; strip += STRIP_ROWS) {
    const stripEnd = Math.min(h, strip + STRIP_ROWS);
    // Source rows this strip reads.
    let first = Number.MAX_SAFE_INTEGER;
    let last = -1;
    for (let i = strip * hy; i < stripEnd * hy; i++) {
      const r = ys.index[i] as number;
      if (r < first) first = r;
      if (r > last) last = r;
    }
    const rows = last - first + 1;
    const temp = new Float32Array(rows * w * 4);
    for (let r = 0; r < rows; r++) {
      const row = (first + r) * width * 4;
      let o = r * w * 4;
      for (let x = 0; x < w; x++, o += 4) {
        let cr = 0;
        let cg = 0;
        let cb = 0;
        let ca = 0;
        for (let t = x * hx, end = t + hx; t < end; t++) {
          const wt = xs.weight[t] as number;
          const p = row + (xs.index[t] as number) * 4;
          const aw = (data[p + 3] as number) * wt;
          cr += (data[p] as number) * aw;
          cg += (data[p + 1] as number) * aw;
          cb += (data[p + 2] as number) * aw;
          ca += aw;
        }
        temp[o] = cr;
        temp[o + 1] = cg;
        temp[o + 2] = cb;
        temp[o + 3] = ca;
      }
    }
    for (let y = strip; y < stripEnd; y++) {
      let o = y * w * 4;
      for (let x = 0; x < w; x++, o += 4) {
        let cr = 0;
        let cg = 0;
        let cb = 0;
        let ca = 0;
        for (let t = y * hy, end = t + hy; t < end; t++) {
          const wt = ys.weight[t] as number;
          const p = (((ys.index[t] as number) - first) * w + x) * 4;
          cr += (temp[p] as number) * wt;
          cg += (temp[p + 1] as number) * wt;
          cb += (temp[p + 2] as number) * wt;
          ca += (temp[p + 3] as number) * wt;
        }
        if (ca < 0.5) continue; // rounds to alpha 0: left transparent black
        out[o] = clampByte(cr / ca);
        out[o + 1] = clampByte(cg / ca);
        out[o + 2] = clampByte(cb / ca);
        out[o + 3] = clampByte(ca);
      }
    }
  }
  return out;
}

function clampByte(v: number): number {
  return v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
}
