/**
 * Host-side test support: corpus paths and the sharp (libvips) reference decoder.
 * Imported only by tests; sharp never ships in a VM.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { FrameCompositor } from './compose.ts';
import type { DecodedImage } from './types.ts';

export const fixtures: string = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'fixtures');

export function corpusFiles(folder: string, ext: string): string[] {
  return readdirSync(join(fixtures, folder))
    .filter((f) => f.toLowerCase().endsWith(ext))
    .sort();
}

export function readCorpus(folder: string, name: string): Uint8Array {
  return new Uint8Array(readFileSync(join(fixtures, folder, name)));
}

export interface Reference {
  width: number;
  height: number;
  data: Uint8Array | Uint16Array;
}

/** sharp's RGBA decode of the first frame, 8- or 16-bit, ICC profile ignored. */
export async function sharpRgba(bytes: Uint8Array, depth: 8 | 16 = 8): Promise<Reference> {
  const image = sharp(bytes, { failOn: 'none', limitInputPixels: false })
    .ensureAlpha()
    .toColourspace(depth === 16 ? 'rgb16' : 'srgb');
  const { data, info } = await image
    .raw(depth === 16 ? { depth: 'ushort' } : {})
    .toBuffer({ resolveWithObject: true });
  const out =
    depth === 16
      ? new Uint16Array(data.buffer, data.byteOffset, data.length / 2)
      : new Uint8Array(data.buffer, data.byteOffset, data.length);
  return { width: info.width, height: info.height, data: out };
}

/** Number of samples whose absolute difference exceeds `tolerance`, and the largest difference. */
export function compareSamples(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  tolerance = 0,
): { over: number; max: number; mean: number } {
  let over = 0;
  let max = 0;
  let sum = 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = Math.abs((a[i] as number) - (b[i] as number));
    sum += d;
    if (d > max) max = d;
    if (d > tolerance) over++;
  }
  return { over: over + Math.abs(a.length - b.length), max, mean: n ? sum / n : 0 };
}

/** Every frame of `image` composed (a copy each): for tests, where frames × canvas is small. */
export function composedFrames(image: DecodedImage): Uint8Array[] {
  const compositor = new FrameCompositor(image);
  return image.frames.map((_, i) => compositor.frame(i).slice());
}

/** The first frame composed: a still image's pixels. */
export function firstFrame(image: DecodedImage): Uint8Array {
  return new FrameCompositor(image).frame(0);
}
