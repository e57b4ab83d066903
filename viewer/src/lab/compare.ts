/**
 * Comparing a viewer window's screenshot with a reference image, for the host and lab tests:
 * where (if anywhere) the reference appears exactly, where the image area is, and how far a
 * resampled view is from a reference resize.
 */
import { BACKGROUND } from '../app/render.ts';

export interface Rgba {
  readonly width: number;
  readonly height: number;
  /** width × height × 4 bytes (alpha ignored). */
  readonly rgba: Uint8Array;
}

function rowMatches(
  shot: Rgba,
  sx: number,
  sy: number,
  ref: Rgba,
  ry: number,
  rx0: number,
  count: number,
): boolean {
  for (let i = 0; i < count; i++) {
    const s = ((sy * shot.width + sx + i) * 4) | 0;
    const r = ((ry * ref.width + rx0 + i) * 4) | 0;
    if (
      shot.rgba[s] !== ref.rgba[r] ||
      shot.rgba[s + 1] !== ref.rgba[r + 1] ||
      shot.rgba[s + 2] !== ref.rgba[r + 2]
    )
      return false;
  }
  return true;
}

/** Where `ref` appears, pixel for pixel, in the screenshot (its top-left corner), or undefined. */
export function findExact(shot: Rgba, ref: Rgba): { x: number; y: number } | undefined {
  for (let y = 0; y + ref.height <= shot.height; y++) {
    for (let x = 0; x + ref.width <= shot.width; x++) {
      let all = true;
      for (let ry = 0; ry < ref.height && all; ry++) all = rowMatches(shot, x, y + ry, ref, ry, 0, ref.width);
      if (all) return { x, y };
    }
  }
  return undefined;
}

/** The bounding box of pixels that are not the window background (#202020): the image area. */
export function imageArea(shot: Rgba): { x: number; y: number; width: number; height: number } {
  const bg = [(BACKGROUND >> 16) & 0xff, (BACKGROUND >> 8) & 0xff, BACKGROUND & 0xff];
  let x0 = shot.width;
  let y0 = shot.height;
  let x1 = -1;
  let y1 = -1;
  for (let y = 0; y < shot.height; y++) {
    for (let x = 0; x < shot.width; x++) {
      const i = (y * shot.width + x) * 4;
      if (shot.rgba[i] === bg[0] && shot.rgba[i + 1] === bg[1] && shot.rgba[i + 2] === bg[2]) continue;
      x0 = Math.min(x0, x);
      y0 = Math.min(y0, y);
      x1 = Math.max(x1, x);
      y1 = Math.max(y1, y);
    }
  }
  return x1 < 0
    ? { x: 0, y: 0, width: 0, height: 0 }
    : { x: x0, y: y0, width: x1 - x0 + 1, height: y1 - y0 + 1 };
}

/** Per-channel mean and maximum |difference| of the screenshot's area at (x, y) against `ref`. */
export function delta(shot: Rgba, at: { x: number; y: number }, ref: Rgba): { mean: number; max: number } {
  let sum = 0;
  let max = 0;
  for (let y = 0; y < ref.height; y++) {
    for (let x = 0; x < ref.width; x++) {
      const s = ((at.y + y) * shot.width + at.x + x) * 4;
      const r = (y * ref.width + x) * 4;
      for (let c = 0; c < 3; c++) {
        const d = Math.abs((shot.rgba[s + c] ?? 0) - (ref.rgba[r + c] ?? 0));
        sum += d;
        if (d > max) max = d;
      }
    }
  }
  return { mean: sum / (ref.width * ref.height * 3), max };
}

/** Which of `frames` the screenshot shows pixel for pixel (its index), or -1 for none. */
export function shownFrame(shot: Rgba, frames: readonly Rgba[]): number {
  return frames.findIndex((frame) => findExact(shot, frame) !== undefined);
}

/**
 * Whether the frames seen (indices from `shownFrame`) are an animation of `count` frames played
 * forwards: each the one before or up to `maxSkip` + 1 frames after it, wrapping. Frames can
 * repeat and be skipped: the daemon copies the shared buffer when it reads an update, so under
 * emulation it may read one after the VM drew the next frame (seen on real Xen: an APNG's 0, 1,
 * 2, then 1, 1 of three frames, frame 0's update read after frame 1 was drawn). With `count`
 * above 2 × (`maxSkip` + 1), a step backwards is still told from one forwards.
 */
export function playedInOrder(seen: readonly number[], count: number, maxSkip = 0): boolean {
  if (seen.some((f) => f < 0 || f >= count)) return false;
  return seen.every((f, i) => i === 0 || (f - seen[i - 1]! + count) % count <= maxSkip + 1);
}
