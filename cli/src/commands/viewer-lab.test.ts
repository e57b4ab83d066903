import { describe, expect, it } from 'vitest';
import { parseKeys } from './viewer-lab.ts';

describe('moat view --keys', () => {
  it('reads keysyms, wheel steps, frame counts and keys to settle after', () => {
    expect(parseKeys('r, plus,wheel-down,Left,frames:3,wheel-up,space~3000,period')).toEqual([
      { key: 'r' },
      { key: 'plus' },
      { wheel: 'down' },
      { key: 'Left' },
      { frames: 3 },
      { wheel: 'up' },
      { key: 'space', quietMs: 3000 },
      { key: 'period' },
    ]);
    expect(parseKeys(undefined)).toEqual([]);
  });

  it('refuses what is not a keysym name', () => {
    for (const bad of ['a b', 'frames:', 'x;rm', 'r,,R', 'frames:1000', 'space~', 'space~1234567'])
      expect(() => parseKeys(bad)).toThrow(/keysym/);
  });
});
