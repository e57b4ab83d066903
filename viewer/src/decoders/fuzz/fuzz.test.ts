import { describe, expect, it, vi } from 'vitest';
import { fixtures } from '../oracle.ts';
import { emptyCounts, inputFor, runIteration } from './campaign.ts';
import { loadSeeds } from './run.ts';

// Whole-corpus oracle runs: allow for a busy CI machine (they take seconds when idle).
vi.setConfig({ testTimeout: 120_000 });

// A short, fixed-count fuzzing pass on every decoder (the timed campaigns run in the
// `fuzz` phase of `./moat test` and with `./moat fuzz decoders`).
describe('decoders on mutated corpus files', () => {
  for (const [format, iterations] of [
    ['png', 3000],
    ['gif', 3000],
    ['jpeg', 300],
    ['bmp', 600],
    ['webp', 1500],
  ] as const) {
    it(`${format}: ${iterations} mutated inputs decode or are refused, none crashes or overruns`, () => {
      const seeds = loadSeeds(fixtures, format);
      const counts = emptyCounts();
      const findings = [];
      for (let i = 0; i < iterations; i++) {
        const finding = runIteration(seeds, 7, i, counts);
        if (finding) findings.push(finding);
      }
      expect(findings).toEqual([]);
      expect(counts.executions).toBe(iterations);
      expect(counts.decoded).toBeGreaterThan(0);
    });
  }

  it('rebuilds the same input from seed and iteration', () => {
    const seeds = loadSeeds(fixtures, 'gif');
    expect(inputFor(seeds, 3, 42)).toEqual(inputFor(seeds, 3, 42));
  });
});
