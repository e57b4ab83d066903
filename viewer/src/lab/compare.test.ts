import { describe, expect, it } from 'vitest';
import { playedInOrder, shownFrame } from './compare.ts';

describe('playedInOrder', () => {
  it('takes frames forwards, repeated or (with maxSkip) skipped, wrapping', () => {
    expect(playedInOrder([0, 1, 1, 2, 0], 3)).toBe(true);
    // Seen on real Xen with three frames: frame 0's update read after frame 1 was drawn.
    expect(playedInOrder([0, 1, 2, 1, 1], 3)).toBe(false);
    expect(playedInOrder([4, 5, 1, 1, 2], 6, 1)).toBe(true);
  });

  it('refuses a step backwards, a skip longer than allowed and a screenshot of no frame', () => {
    expect(playedInOrder([2, 1], 6, 1)).toBe(false);
    expect(playedInOrder([0, 3], 6, 1)).toBe(false);
    expect(playedInOrder([0, -1], 6, 1)).toBe(false);
  });
});

describe('shownFrame', () => {
  it('names the frame found pixel for pixel in the screenshot, or -1', () => {
    const frame = (v: number) => ({ width: 1, height: 1, rgba: new Uint8Array([v, v, v, 255]) });
    const shot = { width: 2, height: 1, rgba: new Uint8Array([9, 9, 9, 255, 7, 7, 7, 255]) };
    expect(shownFrame(shot, [frame(1), frame(7)])).toBe(1);
    expect(shownFrame(shot, [frame(1), frame(2)])).toBe(-1);
  });
});
