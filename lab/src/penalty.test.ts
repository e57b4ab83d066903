import { describe, expect, it } from 'vitest';
import { measureHostPenalty, penaltyFigures } from './penalty.ts';

describe('the emulation-penalty workload', () => {
  it('computes the same hash in C and in JS', async () => {
    const run = await measureHostPenalty(100_000, 1);
    expect(run.cHash).toBe(run.jsHash);
    expect(run.cMs).toHaveLength(1);
  });

  it('reports guest over host from the fastest runs', () => {
    const host = { iterations: 1, jsMs: [2, 1], jsHash: 7, cMs: [1, 0.5], cHash: 7 };
    const guest = { iterations: 1, jsMs: [100, 150], jsHash: 7, cMs: [40], cHash: 7 };
    const f = penaltyFigures(host, guest);
    expect(f.slowdown).toEqual({ c: 80, js: 100 });
    expect(f.hashesAgree).toBe(true);
    expect(penaltyFigures(host, { ...guest, cHash: 8 }).hashesAgree).toBe(false);
  });
});
