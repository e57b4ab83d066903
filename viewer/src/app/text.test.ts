import { describe, expect, it } from 'vitest';
import { drawText, GLYPH_HEIGHT, GLYPH_WIDTH, type Surface, textWidth, wrapText } from './text.ts';

function surface(width: number, height: number): Surface {
  return { pixels: new Int32Array(width * height), width, height };
}

function picture(s: Surface): string[] {
  const rows: string[] = [];
  for (let y = 0; y < s.height; y++) {
    let row = '';
    for (let x = 0; x < s.width; x++) row += s.pixels[y * s.width + x] ? '#' : '.';
    rows.push(row);
  }
  return rows;
}

describe('bitmap text', () => {
  it('draws misc-fixed 6x13 glyphs', () => {
    const s = surface(GLYPH_WIDTH, GLYPH_HEIGHT);
    drawText(s, 0, 0, 'A', 1);
    expect(picture(s)).toEqual([
      '......',
      '......',
      '..#...',
      '.#.#..',
      '#...#.',
      '#...#.',
      '#...#.',
      '#####.',
      '#...#.',
      '#...#.',
      '#...#.',
      '......',
      '......',
    ]);
  });

  it('draws characters outside printable ASCII as ?', () => {
    const a = surface(GLYPH_WIDTH, GLYPH_HEIGHT);
    const b = surface(GLYPH_WIDTH, GLYPH_HEIGHT);
    drawText(a, 0, 0, '\u00e9', 1);
    drawText(b, 0, 0, '?', 1);
    expect(a.pixels).toEqual(b.pixels);
  });

  it('clips at the surface edges', () => {
    const s = surface(8, 8);
    drawText(s, -3, -5, 'WW', 7);
    drawText(s, 6, 6, 'W', 7);
    expect(s.pixels.some((p) => p === 7)).toBe(true);
    expect(textWidth('abc')).toBe(18);
  });
});

describe('wrapping', () => {
  it('breaks at spaces, cuts long words and keeps newlines', () => {
    expect(wrapText('the quick brown fox', 10)).toEqual(['the quick', 'brown fox']);
    expect(wrapText('abcdefghijkl xy', 5)).toEqual(['abcde', 'fghij', 'kl xy']);
    expect(wrapText('one\n\ntwo', 20)).toEqual(['one', '', 'two']);
  });
});
