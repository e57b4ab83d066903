import { describe, expect, it } from 'vitest';
import { FrameQueue } from './frame-queue.ts';
import { frame } from './test-support.ts';

describe('frame queue', () => {
  it('keeps frames and metadata in order across wrap-around, and refuses when full', () => {
    const q = new FrameQueue(10_000, 8);
    const out: number[] = [];
    let seed = 0;
    for (let round = 0; round < 50; round++) {
      while (
        q.push(frame(1000 + (seed % 7) * 300, seed), 0, 1000 + (seed % 7) * 300, {
          csumBlank: seed % 2 === 0,
          dataValidated: false,
          gsoType: seed % 3,
          gsoSize: seed,
        })
      )
        seed++;
      expect(q.queuedBytes).toBeLessThanOrEqual(10_000);
      for (let k = 0; k < 2 && q.length > 0; k++) {
        const len = q.peekLength();
        const s = out.length;
        expect(q.store.subarray(q.peekOffset(), q.peekOffset() + len)).toEqual(
          frame(1000 + (s % 7) * 300, s),
        );
        expect(q.peekCsumBlank()).toBe(s % 2 === 0);
        expect(q.peekGsoType()).toBe(s % 3);
        expect(q.peekGsoSize()).toBe(s);
        out.push(s);
        q.pop();
      }
    }
    expect(out.length).toBe(100);
    expect(q.push(new Uint8Array(20_000), 0, 20_000, undefined)).toBe(false);
  });
});
