import { describe, expect, it } from 'vitest';
import { decodeImage } from '../decode.ts';
import { composedFrames } from '../oracle.ts';
import { animationFixture } from './animations.ts';

describe('animation fixtures (the viewer tests’ animated GIF, APNG and WebP)', () => {
  for (const format of ['gif', 'apng', 'webp'] as const) {
    it(`${format}: four different frames, 600 ms each, looping; our decoder gives the reference of each`, async () => {
      const fixture = await animationFixture(format, { width: 40, height: 24, delayMs: 600, frames: 4 });
      const result = decodeImage(new Uint8Array(fixture.file));
      if (!result.ok) throw new Error(`${result.kind}: ${result.reason}`);
      const { image } = result;
      expect(image.frames.map((f) => f.delayMs)).toEqual([600, 600, 600, 600]);
      expect(image.loopCount).toBe(0);
      const frames = composedFrames(image);
      expect(new Set(fixture.frames.map((f) => Buffer.from(f).toString('hex'))).size).toBe(4);
      frames.forEach((f, i) => {
        expect(Buffer.from(f).equals(Buffer.from(fixture.frames[i]!)), `frame ${i}`).toBe(true);
      });
    });
  }
});
