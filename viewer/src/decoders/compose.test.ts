import sharp from 'sharp';
import { describe, expect, it, vi } from 'vitest';
import { DecodeBudget } from './budget.ts';
import { FrameCompositor } from './compose.ts';
import { decodeGif } from './gif.ts';
import { readCorpus } from './oracle.ts';
import { type GifImage, writeGif } from './testing/gif-writer.ts';
import { defaultDecodeLimits } from './types.ts';

vi.setConfig({ testTimeout: 120_000 });

const palette = Array.from({ length: 16 }, (_, i) => [i * 16, 255 - i * 16, (i * 77) & 255]).flat();

/** 500×400, 700 frames, each a whole-screen image (the worst case for memory). */
function longAnimation(): Uint8Array {
  const width = 500;
  const height = 400;
  const patterns = Array.from({ length: 16 }, (_, i) => {
    const indices = new Uint8Array(width * height);
    for (let y = 0; y < height; y++)
      for (let x = 0; x < width; x++) indices[y * width + x] = ((x >> 5) + (y >> 4) + i) & 15;
    return indices;
  });
  const images: GifImage[] = [];
  for (let i = 0; i < 700; i++) {
    images.push({ left: 0, top: 0, width, height, indices: patterns[i % 16] as Uint8Array, delayCs: 4 });
    // Every tenth frame also draws a small transparent-keyed square that is disposed to
    // background, so that disposal and blending are exercised across the whole run.
    if (i % 10 === 9)
      images.push({
        left: 40 + i / 10,
        top: 30,
        width: 20,
        height: 20,
        indices: new Uint8Array(400).map((_, k) => (k % 3 === 0 ? 5 : 9)),
        transparent: 5,
        disposal: 2,
        delayCs: 4,
      });
  }
  return writeGif({ width, height, palette, images: images.slice(0, 700), loop: 0 });
}

async function sharpFrame(bytes: Uint8Array, page: number): Promise<Uint8Array> {
  const { data } = await sharp(bytes, { animated: true, page, pages: 1, limitInputPixels: false })
    .ensureAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return new Uint8Array(data.buffer, data.byteOffset, data.length);
}

describe('animations are stored as layers and composed on demand', () => {
  it('decodes a 500×400 GIF of 700 frames within the default budget, frames as sharp composes them', async () => {
    const bytes = longAnimation();
    const budget = new DecodeBudget(defaultDecodeLimits);
    const image = decodeGif(bytes, budget);
    expect(image.frames.length).toBe(700);
    // Kept as 1 byte per pixel per image plus one canvas: about 140 MB, where whole RGBA
    // canvases per frame needed 700 × 800,000 = 560 MB, over the 512 MiB budget.
    expect(budget.bytesAllocated).toBeLessThan(150_000_000);
    const compositor = new FrameCompositor(image);
    for (const page of [0, 1, 9, 10, 349, 699]) {
      const want = await sharpFrame(bytes, page);
      expect(Buffer.from(compositor.frame(page)).equals(Buffer.from(want)), `frame ${page}`).toBe(true);
    }
  });

  it('gives the same canvas for a frame reached in order, by jumping, or by going back', () => {
    const bytes = readCorpus('gif/gif-test-suite', 'animated_loop.gif');
    const image = decodeGif(bytes, new DecodeBudget(defaultDecodeLimits));
    expect(image.frames.length).toBeGreaterThan(2);
    const inOrder = new FrameCompositor(image);
    const frames = image.frames.map((_, i) => inOrder.frame(i).slice());
    const jumping = new FrameCompositor(image);
    for (const i of [2, 0, image.frames.length - 1, 1]) expect(jumping.frame(i)).toEqual(frames[i]);
  });

  it('refuses a frame index that does not exist', () => {
    const image = decodeGif(readCorpus('gif/pygif', 'animation.gif'), new DecodeBudget(defaultDecodeLimits));
    expect(() => new FrameCompositor(image).frame(image.frames.length)).toThrow(RangeError);
  });
});
