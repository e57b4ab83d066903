import { describe, expect, it } from 'vitest';
import { vchanDirection } from './bench-vchan.ts';

describe('bench vchan figures', () => {
  it('takes the median of the per-round ratios, so one disturbed round of either variant does not decide', () => {
    // The dom0 -> domU rounds of an idle run: C's first round ran unusually fast.
    const d = vchanDirection([1.655, 0.8407, 0.9669], [1.258, 0.9691, 1.11], [0.8789, 1.23, 1.068]);
    expect(d.roundRatios).toEqual([0.76, 1.15, 1.15]);
    expect(d.ratio).toBe(1.15);
    expect(d.bestRatio).toBe(0.76);
    expect(d.c).toBe(1.655);
    expect(d.ours).toBe(1.258);
    expect(d.unbufferedRatio).toBe(1.1);
  });
});
