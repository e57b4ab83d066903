/**
 * A short, fixed-count pass of the ring fuzz target (the timed campaign runs in the `fuzz`
 * phase of `./moat test` and with `./moat fuzz netif`).
 */
import { describe, expect, it } from 'vitest';
import { fuzzNetif } from './fuzz.ts';

describe('ring requests and responses, generated and mutated', () => {
  for (const target of ['netback', 'netfront'] as const) {
    it(`${target}: 3000 cases deliver frames or name a reason, none throws or breaks an invariant`, () => {
      const r = fuzzNetif({ target, seed: 7, iterations: 3000 });
      expect(r.findings).toEqual([]);
      expect(r.executions).toBe(3000);
      expect(r.framesDelivered).toBeGreaterThan(1000);
      // Mutations do get caught (several different reasons).
      expect(Object.keys(r.cuts).length).toBeGreaterThan(3);
    });
  }
});
