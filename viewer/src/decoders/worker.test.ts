import { describe, expect, it } from 'vitest';
import { decodeInWorker } from './in-worker.ts';
import { composedFrames, firstFrame, readCorpus } from './oracle.ts';

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
