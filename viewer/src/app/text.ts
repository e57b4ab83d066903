/**
 * Text for the error window and the key help: the 6×13 misc-fixed bitmap font (ASCII 32-126),
 * drawn into a BGRX buffer. Other characters are drawn as `?`.
 */
import { FIRST_CHAR, GLYPH_HEIGHT, GLYPH_ROWS_HEX, GLYPH_WIDTH, LAST_CHAR } from './font/font-6x13.ts';

export { GLYPH_HEIGHT, GLYPH_WIDTH };

const glyphRows = new Uint8Array(GLYPH_ROWS_HEX.length / 2);
for (let i = 0; i < glyphRows.length; i++)
  glyphRows[i] = Number.parseInt(GLYPH_ROWS_HEX.slice(2 * i, 2 * i + 2), 16);

/** A BGRX buffer as 32-bit words (little-endian: 0x00RRGGBB). */
export interface Surface {
  readonly pixels: Int32Array;
  readonly width: number;
  readonly height: number;
}

/** 0xRRGGBB as the word a BGRX buffer holds on a little-endian machine. */
export function rgb(r: number, g: number, b: number): number {
  return (r << 16) | (g << 8) | b;
}

export function textWidth(text: string): number {
  return text.length * GLYPH_WIDTH;
}

/** Draws one line at (x, y) (top-left of the first cell), clipped to the surface. */
export function drawText(surface: Surface, x: number, y: number, text: string, colour: number): void {
  const { pixels, width, height } = surface;
  for (let i = 0; i < text.length; i++) {
    let code = text.charCodeAt(i);
    if (code < FIRST_CHAR || code > LAST_CHAR) code = 0x3f; // '?'
    const glyph = (code - FIRST_CHAR) * GLYPH_HEIGHT;
    const left = x + i * GLYPH_WIDTH;
    if (left >= width) break;
    for (let row = 0; row < GLYPH_HEIGHT; row++) {
      const py = y + row;
      if (py < 0 || py >= height) continue;
      const bits = glyphRows[glyph + row] as number;
      if (bits === 0) continue;
      const base = py * width;
      for (let col = 0; col < GLYPH_WIDTH; col++) {
        const px = left + col;
        if (px >= 0 && px < width && (bits & (1 << (GLYPH_WIDTH - 1 - col))) !== 0)
          pixels[base + px] = colour;
      }
    }
  }
}

/** Fills a rectangle (clipped). */
export function fillRect(surface: Surface, x: number, y: number, w: number, h: number, colour: number): void {
  const x0 = Math.max(0, x);
  const x1 = Math.min(surface.width, x + w);
  for (let py = Math.max(0, y); py < Math.min(surface.height, y + h); py++)
    surface.pixels.fill(colour, py * surface.width + x0, py * surface.width + x1);
}

/** Darkens a rectangle to a quarter of its brightness (clipped), behind an overlay's text. */
export function dimRect(surface: Surface, x: number, y: number, w: number, h: number): void {
  const { pixels, width } = surface;
  const x0 = Math.max(0, x);
  const x1 = Math.min(width, x + w);
  for (let py = Math.max(0, y); py < Math.min(surface.height, y + h); py++) {
    for (let i = py * width + x0, end = py * width + x1; i < end; i++)
      pixels[i] = ((pixels[i] as number) >> 2) & 0x3f3f3f;
  }
}

/**
 * Splits `text` into lines of at most `columns` characters, at spaces where it can (words
 * longer than a line are cut). Newlines in `text` end lines.
 */
export function wrapText(text: string, columns: number): string[] {
  const width = Math.max(1, columns);
  const lines: string[] = [];
  for (const paragraph of text.split('\n')) {
    let line = '';
    for (let word of paragraph.split(' ')) {
      while (word.length > width) {
        if (line) lines.push(line);
        lines.push(word.slice(0, width));
        word = word.slice(width);
        line = '';
      }
      if (line === '') line = word;
      else if (line.length + 1 + word.length <= width) line += ` ${word}`;
      else {
        lines.push(line);
        line = word;
      }
    }
    lines.push(line);
  }
  return lines;
}
