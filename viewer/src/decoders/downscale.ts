/**
 * Reduced-size decoding of row-based formats: source rows stream in, in order, and each
 * `scale`×`scale` box of pixels becomes one output pixel (the mean, with colours weighted by
 * alpha so that transparent pixels do not darken edges). Memory: one row of sums and the
 * output. Boxes at the right and bottom edges hold what is left (output size is
 * ceil(size / scale), as libjpeg's).
 */
import type { DecodeBudget } from './budget.ts';
import { FrameCompositor, stillFrames } from './compose.ts';
import type { DecodedImage, ScaleDenominator } from './types.ts';

export class BoxDownscaler {
  readonly outWidth: number;
  readonly outHeight: number;
  /** The reduced image, outWidth × outHeight RGBA. */
  readonly output: Uint8Array;
  /** Per output pixel of the band being summed: r·a, g·a, b·a, a (≤ 64 · 255 · 255). */
  private readonly sums: Uint32Array;
  private row = 0;

  constructor(
    readonly width: number,
    readonly height: number,
    readonly scale: ScaleDenominator,
    budget: DecodeBudget,
  ) {
    this.outWidth = Math.ceil(width / scale);
    this.outHeight = Math.ceil(height / scale);
    this.output = budget.bytes(this.outWidth * this.outHeight * 4, 'downscaled output');
    budget.allocate(this.outWidth * 16, 'downscaler sums');
    this.sums = new Uint32Array(this.outWidth * 4);
  }

  /** Adds the next source row: `width` RGBA pixels at `rgba[offset]`. */
  addRow(rgba: Uint8Array, offset = 0): void {
    if (this.row >= this.height) return;
    const { sums, scale, width } = this;
    for (let x = 0, o = offset; x < width; x++, o += 4) {
      const a = rgba[o + 3] as number;
      if (a === 0) continue;
      const s = ((x / scale) | 0) * 4;
      sums[s] = (sums[s] as number) + (rgba[o] as number) * a;
      sums[s + 1] = (sums[s + 1] as number) + (rgba[o + 1] as number) * a;
      sums[s + 2] = (sums[s + 2] as number) + (rgba[o + 2] as number) * a;
      sums[s + 3] = (sums[s + 3] as number) + a;
    }
    this.row++;
    if (this.row % scale === 0 || this.row === this.height) this.emitBand();
  }

  private emitBand(): void {
    const { sums, scale, width, output } = this;
    const outY = Math.ceil(this.row / scale) - 1;
    const rows = this.row - outY * scale;
    for (let ox = 0; ox < this.outWidth; ox++) {
      const s = ox * 4;
      const count = rows * Math.min(scale, width - ox * scale);
      const alpha = sums[s + 3] as number;
      const o = (outY * this.outWidth + ox) * 4;
      if (alpha > 0) {
        output[o] = Math.round((sums[s] as number) / alpha);
        output[o + 1] = Math.round((sums[s + 1] as number) / alpha);
        output[o + 2] = Math.round((sums[s + 2] as number) / alpha);
        output[o + 3] = Math.round(alpha / count);
      }
    }
    sums.fill(0);
  }
}

/**
 * A still image decoded at full size, reduced row by row: a single layer's rows (palette
 * indices looked up one row at a time, so a GIF never needs a full RGBA canvas), or the
 * composed canvas otherwise.
 */
export function downscaleStill(
  image: DecodedImage,
  scale: ScaleDenominator,
  budget: DecodeBudget,
): DecodedImage {
  if (scale === 1 || image.frames.length !== 1) return image;
  const { width, height } = image;
  const downscaler = new BoxDownscaler(width, height, scale, budget);
  const layers = image.frames[0]?.layers ?? [];
  const only = layers[0];
  if (
    layers.length === 1 &&
    only &&
    only.x === 0 &&
    only.y === 0 &&
    only.width === width &&
    only.height === height
  ) {
    const palette = only.palette;
    const row = palette ? budget.bytes(width * 4, 'downscaler row') : only.pixels;
    for (let y = 0; y < height; y++) {
      budget.tick();
      if (!palette) {
        downscaler.addRow(row, y * width * 4);
        continue;
      }
      for (let x = 0, i = y * width; x < width; x++, i++) {
        const q = (only.pixels[i] as number) * 4;
        row[x * 4] = palette[q] as number;
        row[x * 4 + 1] = palette[q + 1] as number;
        row[x * 4 + 2] = palette[q + 2] as number;
        row[x * 4 + 3] = palette[q + 3] as number;
      }
      downscaler.addRow(row);
    }
  } else {
    const canvas = new FrameCompositor(image).frame(0);
    for (let y = 0; y < height; y++) downscaler.addRow(canvas, y * width * 4);
  }
  return {
    ...image,
    width: downscaler.outWidth,
    height: downscaler.outHeight,
    frames: stillFrames(downscaler.outWidth, downscaler.outHeight, downscaler.output),
    scaled: { denominator: scale, storedWidth: width, storedHeight: height },
  };
}
