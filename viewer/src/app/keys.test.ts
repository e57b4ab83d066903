import { describe, expect, it } from 'vitest';
import { commandForKey, HELP_LINES } from './keys.ts';
import { MIN_WINDOW_HEIGHT, MIN_WINDOW_WIDTH } from './layout.ts';
import { GLYPH_HEIGHT, GLYPH_WIDTH } from './text.ts';

describe('keys', () => {
  it('maps X keysyms to commands', () => {
    expect(commandForKey('plus')).toBe('zoom-in');
    expect(commandForKey('KP_Subtract')).toBe('zoom-out');
    expect(commandForKey('R')).toBe('rotate-anticlockwise');
    expect(commandForKey('F1')).toBe('help');
    expect(commandForKey('x')).toBeUndefined();
    expect(commandForKey(undefined)).toBeUndefined();
  });

  it('has a help box that fits the smallest window', () => {
    const width = Math.max(...HELP_LINES.map((l) => l.length)) * GLYPH_WIDTH + 20;
    const height = HELP_LINES.length * (GLYPH_HEIGHT + 2) + 20;
    expect(width).toBeLessThanOrEqual(MIN_WINDOW_WIDTH);
    expect(height).toBeLessThanOrEqual(MIN_WINDOW_HEIGHT);
  });
});
