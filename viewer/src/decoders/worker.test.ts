import { describe, expect, it, vi } from 'vitest';
import { decodeImage } from './decode.ts';
import { decodeInWorker } from './in-worker.ts';
import { composedFrames, firstFrame, readCorpus } from './oracle.ts';
import { pngSignature } from './png.ts';
import { writeGif } from './testing/gif-writer.ts';
import { pngChunk } from './testing/png-chunk.ts';

// Large generated files (millions of images, sub-blocks or chunks) go through both entries.
vi.setConfig({ testTimeout: 60_000 });

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

  it('passes the decode options on: a reduced size comes back from the worker', async () => {
    const bytes = readCorpus('jpeg/exif-orientation', 'Landscape_1.jpg'); // 1800×1200
    const result = await decodeInWorker(bytes, {}, { fit: { width: 1000, height: 1000 } });
    expect(result).toMatchObject({
      ok: true,
      image: { width: 900, height: 600, scaled: { denominator: 2, storedWidth: 1800, storedHeight: 1200 } },
    });
    const inThread = decodeImage(bytes, {}, { scale: 2 });
    if (!result.ok || !inThread.ok) throw new Error('refused');
    // Buffer.equals: toEqual on two million samples takes seconds.
    expect(Buffer.from(firstFrame(result.image)).equals(Buffer.from(firstFrame(inThread.image)))).toBe(true);
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

  it('decodes a GIF whose image data is 3 million one-byte sub-blocks in both', async () => {
    // Sub-blocks are read in place: one object each exhausted the worker's heap.
    const head = writeGif({ width: 1, height: 1, palette: [0, 0, 0, 255, 255, 255], images: [] });
    const count = 3_000_000;
    const bytes = new Uint8Array(head.length - 1 + 11 + 2 * count + 2);
    bytes.set(head.subarray(0, head.length - 1));
    let at = head.length - 1;
    bytes.set([0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2], at);
    at += 11;
    for (let i = 0; i < count; i++, at += 2) bytes.set([1, i === 0 ? 0x44 : 0], at);
    bytes.set([0, 0x3b], at);
    const inThread = decodeImage(bytes);
    const inWorker = await decodeInWorker(bytes);
    expect(inThread).toMatchObject({ ok: true, image: { width: 1, height: 1 } });
    expect(inWorker).toMatchObject({ ok: true, image: { width: 1, height: 1 } });
  });

  it('decodes a PNG of 3 million empty IDAT chunks in both', async () => {
    const chunk = pngChunk;
    const head = [...pngSignature, ...chunk('IHDR', [0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0])];
    // A 1×1 grey pixel, zlib-compressed, then IEND.
    const tail = [...chunk('IDAT', [0x78, 1, 0x63, 0x60, 0, 0, 0, 2, 0, 1]), ...chunk('IEND', [])];
    const empty = chunk('IDAT', []);
    const count = 3_000_000;
    const bytes = new Uint8Array(head.length + count * empty.length + tail.length);
    bytes.set(head);
    for (let i = 0; i < count; i++) bytes.set(empty, head.length + i * empty.length);
    bytes.set(tail, head.length + count * empty.length);
    const inThread = decodeImage(bytes);
    const inWorker = await decodeInWorker(bytes);
    expect(inThread).toMatchObject({ ok: true, image: { width: 1, height: 1 } });
    expect(inWorker).toMatchObject({ ok: true, image: { width: 1, height: 1 } });
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
