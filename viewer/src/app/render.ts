/**
 * Draws the image part of the window into a BGRX buffer (the GUI agent's `format: 'bgrx'`:
 * bytes B, G, R, unused; as little-endian words 0x00RRGGBB). Only the visible part of the image
 * is resampled; the result is kept for the next frame while the view's scale, frame and source
 * stay the same, so panning a downscaled view is a copy.
 *
 * Transparency is composited over a checkerboard of 8-pixel squares, light grey #CCCCCC and
 * white #FFFFFF, the first (top-left) square light grey; the squares are fixed to the image's
 * top-left corner on screen, so they move with it. Per channel, with straight alpha a:
 * out = floor((c · a + k · (255 − a) + 127) / 255), exact integers (`compositeOverCheckerboard`
 * does the same to an RGBA buffer, for tests that compare with another decoder's pixels).
 */
import { displayedSize, type Transform } from './orientation.ts';
import {
  type AxisWeights,
  boxFactor,
  boxReduce,
  isOpaque,
  lanczosAxis,
  nearestAxis,
  type Pixels,
  resampleRect,
  resampleRectAcross,
} from './resample.ts';
import type { Surface } from './text.ts';

export const CHECKER_SQUARE = 8;
export const CHECKER_LIGHT = 0xcc;
export const CHECKER_WHITE = 0xff;
/** Window background around the image: #202020. */
export const BACKGROUND = 0x202020;

/** Checkerboard grey level at (x, y) from the image's top-left corner. */
export function checkerLevel(x: number, y: number): number {
  return (((x / CHECKER_SQUARE) | 0) + ((y / CHECKER_SQUARE) | 0)) & 1 ? CHECKER_WHITE : CHECKER_LIGHT;
}

/** Composites straight-alpha RGBA over the checkerboard as the window does; returns opaque RGBA. */
export function compositeOverCheckerboard(rgba: Uint8Array, width: number, height: number): Uint8Array {
  const out = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 4;
      const a = rgba[o + 3] as number;
      const k = checkerLevel(x, y) * (255 - a) + 127;
      out[o] = (((rgba[o] as number) * a + k) / 255) | 0;
      out[o + 1] = (((rgba[o + 1] as number) * a + k) / 255) | 0;
      out[o + 2] = (((rgba[o + 2] as number) * a + k) / 255) | 0;
      out[o + 3] = 255;
    }
  }
  return out;
}

/** What one render shows: a source image, its scale and orientation, and where it sits. */
export interface ImageView {
  /** The pixels to show (a decoded frame, maybe decoded at a reduced size), stored orientation. */
  readonly source: Pixels;
  /** Changes when `source`'s content changes although the array is the same (animation frames). */
  readonly sourceVersion: number;
  readonly transform: Transform;
  /** Size of the whole image on screen in stored orientation (before the transform's swap). */
  readonly scaledWidth: number;
  readonly scaledHeight: number;
  /**
   * The user turned the image an odd number of quarters: resample rows first, as sharp's
   * `rotate(90).resize()` does (rounding between the passes then matches it).
   */
  readonly turnedQuarter?: boolean;
  /** Window position of the displayed image's top-left corner (may be negative). */
  readonly left: number;
  readonly top: number;
}

interface Region {
  readonly turnedQuarter: boolean;
  readonly source: Pixels;
  readonly version: number;
  readonly scaledWidth: number;
  readonly scaledHeight: number;
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
}

interface Opacity {
  readonly source: Pixels;
  readonly version: number;
  readonly opaque: boolean;
}

interface Reduced {
  readonly source: Pixels;
  readonly version: number;
  readonly fx: number;
  readonly fy: number;
  readonly pixels: Pixels;
}

export class ImageRenderer {
  #region: Region | undefined;
  #reduced: Reduced | undefined;
  #opacity: Opacity | undefined;
  /** Renders that resampled (the rest reused the kept region or sampled the nearest pixel). */
  resamples = 0;

  /** Drops the kept region and box-reduced copy (a new source, or memory to give back). */
  forget(): void {
    this.#region = undefined;
    this.#reduced = undefined;
    this.#opacity = undefined;
  }

  /** Fills `surface` with the background and draws `view` on it. */
  render(surface: Surface, view: ImageView): void {
    const { pixels, width: winW, height: winH } = surface;
    pixels.fill(BACKGROUND);
    const { transform: t, scaledWidth: sw, scaledHeight: sh, left, top } = view;
    const [dw, dh] = displayedSize(t, sw, sh);
    // Visible part of the displayed image, in displayed-image coordinates.
    const x0 = Math.max(0, -left);
    const x1 = Math.min(dw, winW - left);
    const y0 = Math.max(0, -top);
    const y1 = Math.min(dh, winH - top);
    if (x0 >= x1 || y0 >= y1) return;
    // The same rectangle in stored orientation: u, v are the flipped displayed coordinates.
    const u0 = t.flipX ? dw - x1 : x0;
    const u1 = t.flipX ? dw - x0 : x1;
    const v0 = t.flipY ? dh - y1 : y0;
    const v1 = t.flipY ? dh - y0 : y1;
    const rx0 = t.swap ? v0 : u0;
    const rx1 = t.swap ? v1 : u1;
    const ry0 = t.swap ? u0 : v0;
    const ry1 = t.swap ? u1 : v1;
    const { data, colOffset, rowOffset } = this.#sample(view, rx0, rx1, ry0, ry1, winW, winH);

    // Per displayed row: the stored pixel index moves by a constant step per displayed pixel.
    const aligned = data.byteOffset % 4 === 0 ? data : data.slice();
    const src32 = new Int32Array(aligned.buffer, aligned.byteOffset, aligned.length >> 2);
    for (let y = y0; y < y1; y++) {
      const v = t.flipY ? dh - 1 - y : y;
      let out = (top + y) * winW + left + x0;
      for (let x = x0; x < x1; x++, out++) {
        const u = t.flipX ? dw - 1 - x : x;
        const sx = t.swap ? v : u;
        const sy = t.swap ? u : v;
        const p = (rowOffset[sy - ry0] as number) + (colOffset[sx - rx0] as number);
        const word = src32[p] as number; // A<<24 | B<<16 | G<<8 | R
        const a = word >>> 24;
        if (a === 255) {
          pixels[out] = ((word & 0xff) << 16) | (word & 0xff00) | ((word >>> 16) & 0xff);
          continue;
        }
        const k = ((((x >> 3) + (y >> 3)) & 1 ? CHECKER_WHITE : CHECKER_LIGHT) * (255 - a) + 127) | 0;
        const r = (((word & 0xff) * a + k) / 255) | 0;
        const g = ((((word >>> 8) & 0xff) * a + k) / 255) | 0;
        const b = ((((word >>> 16) & 0xff) * a + k) / 255) | 0;
        pixels[out] = (r << 16) | (g << 8) | b;
      }
    }
  }

  /**
   * Pixels for the stored-orientation rectangle [rx0, rx1) × [ry0, ry1) of the scaled image:
   * `data` RGBA, and for each column and row of the rectangle its pixel offset in `data`.
   */
  #sample(
    view: ImageView,
    rx0: number,
    rx1: number,
    ry0: number,
    ry1: number,
    winW: number,
    winH: number,
  ): { data: Uint8Array; colOffset: Int32Array; rowOffset: Int32Array } {
    const { source, scaledWidth: sw, scaledHeight: sh } = view;
    if (sw >= source.width && sh >= source.height) {
      // 1:1 or larger: nearest pixel straight from the source.
      const cols = nearestAxis(source.width, source.width / sw, rx0, rx1).index;
      const rows = nearestAxis(source.height, source.height / sh, ry0, ry1).index;
      for (let i = 0; i < rows.length; i++) rows[i] = (rows[i] as number) * source.width;
      return { data: source.data, colOffset: cols, rowOffset: rows };
    }
    const region = this.#regionFor(view, rx0, rx1, ry0, ry1, winW, winH);
    const cols = new Int32Array(rx1 - rx0);
    for (let i = 0; i < cols.length; i++) cols[i] = rx0 + i - region.x;
    const rows = new Int32Array(ry1 - ry0);
    for (let i = 0; i < rows.length; i++) rows[i] = (ry0 + i - region.y) * region.width;
    return { data: region.data, colOffset: cols, rowOffset: rows };
  }

  #regionFor(
    view: ImageView,
    rx0: number,
    rx1: number,
    ry0: number,
    ry1: number,
    winW: number,
    winH: number,
  ): Region {
    const { source, sourceVersion, scaledWidth: sw, scaledHeight: sh } = view;
    const kept = this.#region;
    const sameView =
      kept !== undefined &&
      kept.source === source &&
      kept.version === sourceVersion &&
      kept.turnedQuarter === (view.turnedQuarter ?? false) &&
      kept.scaledWidth === sw &&
      kept.scaledHeight === sh;
    if (
      kept &&
      sameView &&
      rx0 >= kept.x &&
      ry0 >= kept.y &&
      rx1 <= kept.x + kept.width &&
      ry1 <= kept.y + kept.height
    )
      return kept;
    // A new zoom or frame: just what is visible (the next step may be another zoom). The same
    // view panned past the kept region: half a window more on each side, so that further
    // panning reuses it for a while.
    const marginX = sameView ? winW >> 1 : 0;
    const marginY = sameView ? winH >> 1 : 0;
    const x = Math.max(0, rx0 - marginX);
    const y = Math.max(0, ry0 - marginY);
    const width = Math.min(sw, rx1 + marginX) - x;
    const height = Math.min(sh, ry1 + marginY) - y;
    this.#region = undefined; // let the old one go before the new one is allocated
    const fx = boxFactor(source.width / sw);
    const fy = boxFactor(source.height / sh);
    const reduced = this.#reducedFor(source, sourceVersion, fx, fy);
    const xs = axis(reduced.width, source.width / sw / fx, x, x + width);
    const ys = axis(reduced.height, source.height / sh / fy, y, y + height);
    // sharp.rotate(90).resize() turns before resizing: its vertical pass runs along our rows.
    // (An EXIF orientation it applies after resizing, so those views keep the stored order.)
    const data = view.turnedQuarter
      ? resampleRectAcross(reduced, xs, ys, width, height)
      : resampleRect(reduced, xs, ys, width, height);
    this.resamples++;
    const region: Region = {
      turnedQuarter: view.turnedQuarter ?? false,
      source,
      version: sourceVersion,
      scaledWidth: sw,
      scaledHeight: sh,
      x,
      y,
      width,
      height,
      data,
    };
    this.#region = region;
    return region;
  }

  /** `source` with whether it is opaque, scanned once per source and frame. */
  #isOpaque(source: Pixels, version: number): boolean {
    const kept = this.#opacity;
    if (kept && kept.source === source && kept.version === version) return kept.opaque;
    const opaque = source.opaque ?? isOpaque(source);
    this.#opacity = { source, version, opaque };
    return opaque;
  }

  /** The source after libvips' integer box step for this scale (the source itself when 1 × 1). */
  #reducedFor(source: Pixels, version: number, fx: number, fy: number): Pixels {
    const opaque = this.#isOpaque(source, version);
    if (fx === 1 && fy === 1) return { ...source, opaque };
    const kept = this.#reduced;
    if (kept && kept.source === source && kept.version === version && kept.fx === fx && kept.fy === fy)
      return kept.pixels;
    this.#reduced = undefined;
    const pixels = boxReduce({ ...source, opaque }, fx, fy);
    this.#reduced = { source, version, fx, fy, pixels };
    return pixels;
  }
}

/** Lanczos-3 for a reduction, the nearest pixel for 1:1 or an enlargement (`ratio` ≤ 1). */
function axis(source: number, ratio: number, from: number, to: number): AxisWeights {
  return ratio > 1 ? lanczosAxis(source, ratio, from, to) : nearestAxis(source, ratio, from, to);
}
