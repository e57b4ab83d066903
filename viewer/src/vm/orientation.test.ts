import { describe, expect, it } from 'vitest';
import { displayMap } from './orientation.ts';

/** The displayed image as rows of stored pixel labels. */
function display(width: number, height: number, orientation: number, turns = 0): string[] {
  const m = displayMap(width, height, orientation, turns);
  const rows: string[] = [];
  for (let y = 0; y < m.height; y++) {
    let row = '';
    for (let x = 0; x < m.width; x++) {
      const sx = m.x0 + m.xx * x + m.xy * y;
      const sy = m.y0 + m.yx * x + m.yy * y;
      row += 'abcdef'[sy * width + sx];
    }
    rows.push(row);
  }
  return rows;
}

describe('EXIF orientation and quarter turns', () => {
  // Stored 3 × 2:  abc / def. What each orientation shows (TIFF 6.0 / EXIF 2.32 tag 274).
  it('shows each of the eight orientations as the EXIF table says', () => {
    expect(display(3, 2, 1)).toEqual(['abc', 'def']);
    expect(display(3, 2, 2)).toEqual(['cba', 'fed']);
    expect(display(3, 2, 3)).toEqual(['fed', 'cba']);
    expect(display(3, 2, 4)).toEqual(['def', 'abc']);
    expect(display(3, 2, 5)).toEqual(['ad', 'be', 'cf']);
    expect(display(3, 2, 6)).toEqual(['da', 'eb', 'fc']);
    expect(display(3, 2, 7)).toEqual(['fc', 'eb', 'da']);
    expect(display(3, 2, 8)).toEqual(['cf', 'be', 'ad']);
    expect(display(3, 2, 0)).toEqual(display(3, 2, 1));
  });

  it('turns clockwise and back', () => {
    expect(display(3, 2, 1, 1)).toEqual(display(3, 2, 6));
    expect(display(3, 2, 6, 3)).toEqual(['abc', 'def']);
    expect(display(3, 2, 1, -1)).toEqual(display(3, 2, 8));
    expect(display(3, 2, 2, 2)).toEqual(display(3, 2, 4));
  });
});
