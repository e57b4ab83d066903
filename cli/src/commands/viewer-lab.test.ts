import { describe, expect, it } from 'vitest';
import { parseKeys } from './viewer-lab.ts';

describe('moat view --keys', () => {
  it('reads keysyms, wheel steps and frame counts', () => {
    expect(parseKeys('r, plus,wheel-down,Left,frames:3,wheel-up')).toEqual([
      { key: 'r' },
      { key: 'plus' },
      { wheel: 'down' },
      { key: 'Left' },
      { frames: 3 },
      { wheel: 'up' },
    ]);
    expect(parseKeys(undefined)).toEqual([]);
  });

  it('refuses what is not a keysym name', () => {
    for (const bad of ['a b', 'frames:', 'x;rm', 'r,,R', 'frames:1000'])
      expect(() => parseKeys(bad)).toThrow(/keysym/);
  });
});
