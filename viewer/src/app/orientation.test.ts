import { describe, expect, it } from 'vitest';
import { displayedSize, IDENTITY, rotate, type Transform, transformForOrientation } from './orientation.ts';

/** Where stored pixel (sx, sy) of a w × h image lands on screen under `t` (by brute force). */
function place(t: Transform, w: number, h: number): Map<string, string> {
  const [dw, dh] = displayedSize(t, w, h);
  const map = new Map<string, string>();
  for (let y = 0; y < dh; y++)
    for (let x = 0; x < dw; x++) {
      const u = t.flipX ? dw - 1 - x : x;
      const v = t.flipY ? dh - 1 - y : y;
      const [sx, sy] = t.swap ? [v, u] : [u, v];
      map.set(`${sx},${sy}`, `${x},${y}`);
    }
  return map;
}

describe('orientation transforms', () => {
  // A 3×2 image; where its top-left (0,0) and top-right (2,0) pixels appear for each EXIF value
  // (Exif 2.32 §4.6.4 A, Orientation: the 0th row and 0th column of the stored image).
  const cases: [number, string, string][] = [
    [1, '0,0', '2,0'],
    [2, '2,0', '0,0'],
    [3, '2,1', '0,1'],
    [4, '0,1', '2,1'],
    [5, '0,0', '0,2'],
    [6, '1,0', '1,2'],
    [7, '1,2', '1,0'],
    [8, '0,2', '0,0'],
  ];
  for (const [orientation, topLeft, topRight] of cases) {
    it(`shows EXIF orientation ${orientation} upright`, () => {
      const map = place(transformForOrientation(orientation), 3, 2);
      expect(map.get('0,0')).toBe(topLeft);
      expect(map.get('2,0')).toBe(topRight);
    });
  }

  it('treats invalid orientations as 1', () => {
    for (const o of [0, 9, -1, 2.5, Number.NaN]) expect(transformForOrientation(o)).toEqual(IDENTITY);
  });

  it('turns a quarter clockwise: the top-left pixel goes to the top-right corner', () => {
    const map = place(rotate(IDENTITY, 1), 3, 2);
    expect(map.get('0,0')).toBe('1,0');
    expect(rotate(IDENTITY, 1)).toEqual(transformForOrientation(6));
    expect(rotate(IDENTITY, -1)).toEqual(transformForOrientation(8));
  });

  it('composes: four turns are none, and a turn back undoes a turn', () => {
    for (let o = 1; o <= 8; o++) {
      const t = transformForOrientation(o);
      let r = t;
      for (let i = 0; i < 4; i++) r = rotate(r, 1);
      expect(r).toEqual(t);
      expect(rotate(rotate(t, 1), -1)).toEqual(t);
      expect(rotate(rotate(t, 1), 1)).toEqual(rotate(rotate(t, -1), -1));
    }
    expect(rotate(transformForOrientation(6), -1)).toEqual(IDENTITY);
  });

  it('swaps the displayed size for the transposing orientations', () => {
    expect(displayedSize(transformForOrientation(6), 1800, 1200)).toEqual([1200, 1800]);
    expect(displayedSize(transformForOrientation(3), 1800, 1200)).toEqual([1800, 1200]);
  });
});
