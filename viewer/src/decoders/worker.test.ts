import { describe, expect, it, vi } from 'vitest';

vi.setConfig({ testTimeout: 60_000 });

import { decodeImage } from './decode.ts';
import { decodeInWorker } from './in-worker.ts';
import { composedFrames, firstFrame, readCorpus } from './oracle.ts';
import { writeGif } from './testing/gif-writer.ts';

describe('decoding in a worker under a deadline', () => {
  it('returns the same image as an in-thread decode', async () => {
    const result = await decodeInWorker(readCorpus('png/pngsuite', 'basn6a08.png'));
    expect(result.ok).toBe(true);
    if (result.ok) {
      expect(result.image).toMatchObject({ format: 'png', width: 32, height: 32 });
      expect(firstFrame(result.image).length).toBe(32 * 32 * 4);
    }
  });

  it('brings every frame of an animation back from the worker', async () => {
    const result = await decodeInWorker(readCorpus('gif/pygif', 'animation.gif'));
    expect(result.ok).toBe(true);
    if (result.ok) {
      expect(composedFrames(result.image).map((f) => f.length)).toEqual([16, 16, 16, 16]);
      expect(result.image.frames.map((f) => f.delayMs)).toEqual([500, 500, 500, 500]);
    }
  });

  it('terminates a decoder that never returns when the deadline passes', async () => {
    const result = await decodeInWorker(
      new Uint8Array(8),
      { deadlineMs: 300 },
      {
        workerUrl: new URL('./testing/spin-worker.ts', import.meta.url),
      },
    );
    expect(result).toMatchObject({ ok: false, kind: 'deadline' });
  });

  it('passes refusals through with their reason', async () => {
    const result = await decodeInWorker(new TextEncoder().encode('hello'));
    expect(result).toMatchObject({ ok: false, kind: 'unknown-format' });
  });
});

/** A GIF of `count` 1×1 images (15 bytes each), with or without a looping extension. */
function tinyImages(count: number, loop: boolean): Uint8Array {
  const head = writeGif({
    width: 1,
    height: 1,
    palette: [0, 0, 0, 255, 255, 255],
    images: [],
    ...(loop ? { loop: 0 } : {}),
  });
  // Descriptor at (0, 0), 1×1, no local table; LZW minimum code size 2; codes clear (4),
  // 0, end (5) in 3 bits each: 0x44 0x01.
  const image = Uint8Array.of(0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 0x01, 0);
  const out = new Uint8Array(head.length - 1 + count * image.length + 1);
  out.set(head.subarray(0, head.length - 1));
  for (let i = 0; i < count; i++) out.set(image, head.length - 1 + i * image.length);
  out[out.length - 1] = 0x3b;
  return out;
}

describe('the same answer in the calling thread and in a worker', () => {
  for (const loop of [true, false])
    it(`refuses a GIF of a million 1×1 images ${loop ? 'with' : 'without'} a looping extension at the frame limit in both`, async () => {
      const bytes = tinyImages(1_000_000, loop);
      const inThread = decodeImage(bytes);
      const inWorker = await decodeInWorker(bytes);
      expect(inThread).toEqual({
        ok: false,
        kind: 'limit',
        reason: 'the animation has more than 1000 frames',
      });
      expect(inWorker).toEqual(inThread);
    });

  it('decodes the same file to the same frames in both', async () => {
    const bytes = tinyImages(50, true);
    const inThread = decodeImage(bytes);
    const inWorker = await decodeInWorker(bytes);
    if (!inThread.ok || !inWorker.ok) throw new Error('refused');
    expect(inThread.image.frames.length).toBe(50);
    expect(composedFrames(inWorker.image)).toEqual(composedFrames(inThread.image));
  });
});
