import { describe, expect, it } from 'vitest';
import { formatZoom, imageTitle, MAX_DISPLAY_NAME, sanitiseDisplayName } from './title.ts';

describe('display names', () => {
  it('keeps printable ASCII as it is', () => {
    expect(sanitiseDisplayName('holiday photo (1).jpg')).toBe('holiday photo (1).jpg');
  });

  it('replaces control characters, DEL and each non-ASCII character with one underscore', () => {
    expect(sanitiseDisplayName('a\nb\tc\x7fd\x1b[31m.png')).toBe('a_b_c_d_[31m.png');
    expect(sanitiseDisplayName('caf\u00e9-\u{1f600}.gif')).toBe('caf_-_.gif');
    // Right-to-left override used to disguise an extension.
    expect(sanitiseDisplayName('invoice\u202egpj.exe')).toBe('invoice_gpj.exe');
  });

  it('names an empty or blank name "image"', () => {
    expect(sanitiseDisplayName('')).toBe('image');
    expect(sanitiseDisplayName('   ')).toBe('image');
  });

  it('shortens long names keeping the start and the extension', () => {
    const name = `${'a'.repeat(300)}.jpeg`;
    const safe = sanitiseDisplayName(name);
    expect(safe.length).toBe(MAX_DISPLAY_NAME);
    expect(safe.startsWith('aaa')).toBe(true);
    expect(safe.endsWith('a.jpeg')).toBe(true);
    expect(safe).toContain('...');
  });
});

describe('titles', () => {
  it('reads name - WxH - zoom%', () => {
    expect(imageTitle('cat.png', 640, 480, 1)).toBe('cat.png - 640x480 - 100%');
    expect(imageTitle('big.jpg', 6000, 4000, 0.288)).toBe('big.jpg - 6000x4000 - 29%');
    expect(imageTitle('tiny.gif', 16, 16, 16)).toBe('tiny.gif - 16x16 - 1600%');
  });

  it('keeps one decimal below 10%', () => {
    expect(formatZoom(0.0567)).toBe('5.7%');
    expect(formatZoom(0.0001)).toBe('0.1%');
  });
});
