import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { decodeImage } from './decode.ts';
import { corpusFiles, firstFrame, fixtures, readCorpus } from './oracle.ts';

// Whole-corpus oracle runs: allow for a busy CI machine (they take seconds when idle).
vi.setConfig({ testTimeout: 120_000 });

/**
 * Oracles: Pillow (Debian python3-pil, via /usr/bin/python3) first, GraphicsMagick (Debian
 * graphicsmagick, `gm convert … rgba:-`) where Pillow refuses the file, and for RLE files
 * (Pillow 9.4 mis-decodes RLE4). Both are installed by `./moat test` (unit phase).
 *
 * Where readers legitimately differ, the comparison says so:
 * - fields narrower than 8 bits (e.g. 5-bit 555/565, 4-bit, 1-bit) are scaled differently
 *   (we and Pillow replicate bits, gm shifts): compared at the field's own precision, i.e.
 *   a difference of at most 2^(8 − bits);
 * - pixels RLE leaves undefined are transparent for us, filled by gm: compared only where
 *   we decoded a pixel;
 * - Pillow opens alpha-mask files without alpha (mode RGB): alpha not compared then.
 */
const dir = 'bmp/image-rs';
const fieldTolerance: Record<string, number> = {
  // 5-bit fields (6-bit green differs less)
  'Info_X1_R5_G5_B5.bmp': 8,
  'Info_X1_R5_G5_B5_Top_Down.bmp': 8,
  'V3_A1_R5_G5_B5.bmp': 8,
  'V3_R5_G6_B5.bmp': 8,
  'V4_R5_G6_B5.bmp': 8,
  'V5_A1_R5_G5_B5.bmp': 8,
  'rgb16.bmp': 8,
  'rgb16-565.bmp': 8,
  // 4-bit fields
  'V3_A4_R4_G4_B4.bmp': 16,
  'V3_X4_R4_G4_B4.bmp': 16,
  'rgba32-61754.bmp': 16,
  // 1-, 2- and 3-bit fields
  'rgb16-231.bmp': 128,
  'rgba16-1924.bmp': 128,
  // 10/11-bit fields: we keep the top 8 bits, gm rounds
  'rgb32-111110.bmp': 1,
};
/** Files neither oracle reads, checked against a sibling holding the same picture. */
const siblings: Record<string, string> = {
  'V3_A1_R5_G5_B5_Top_Down.bmp': 'V3_A1_R5_G5_B5.bmp',
  'V3_A4_R4_G4_B4_Top_Down.bmp': 'V3_A4_R4_G4_B4.bmp',
  'V3_R5_G6_B5_Top_Down.bmp': 'V3_R5_G6_B5.bmp',
  'V3_X4_R4_G4_B4_Top_Down.bmp': 'V3_X4_R4_G4_B4.bmp',
  'V3_X8_R8_G8_B8_Top_Down.bmp': 'V3_X8_R8_G8_B8.bmp',
  'rgb24rle24.bmp': 'pal8v4.bmp', // BMP Suite's RLE24 file holds the pal8 picture
  'rgba32abf.bmp': 'rgba32.bmp',
  'pal4rlecut.bmp': 'pal4rle.bmp',
};
/** Decoded, but no reader agrees on the pixels: 2-bit palettes (neither oracle reads
 *  them) and an out-of-range palette index (gm refuses, Pillow invents a colour). */
const decodeOnly = new Set(['pal2.bmp', 'pal2color.bmp', 'pal8badindex.bmp']);

function pillow(path: string): { mode: string; rgba: Uint8Array } | undefined {
  const script =
    'import sys\nfrom PIL import Image\nim=Image.open(sys.argv[1]);im.load()\n' +
    'sys.stdout.buffer.write(im.mode.ljust(8).encode()+im.convert("RGBA").tobytes())';
  try {
    const out = execFileSync('/usr/bin/python3', ['-c', script, path], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    return { mode: out.subarray(0, 8).toString().trim(), rgba: new Uint8Array(out.subarray(8)) };
  } catch {
    return undefined;
  }
}

function graphicsMagick(path: string): Uint8Array | undefined {
  try {
    return new Uint8Array(
      execFileSync('gm', ['convert', path, '-depth', '8', 'rgba:-'], { stdio: ['ignore', 'pipe', 'ignore'] }),
    );
  } catch {
    return undefined;
  }
}

function differences(
  ours: Uint8Array,
  ref: Uint8Array,
  tolerance: number,
  alpha: boolean,
  onlyOpaque: boolean,
): number {
  if (ours.length !== ref.length) return Number.POSITIVE_INFINITY;
  let bad = 0;
  for (let i = 0; i < ours.length; i += 4) {
    if (onlyOpaque && ours[i + 3] === 0) continue;
    for (let c = 0; c < (alpha ? 4 : 3); c++)
      if (Math.abs((ours[i + c] as number) - (ref[i + c] as number)) > tolerance) bad++;
  }
  return bad;
}

function ours(name: string): Uint8Array {
  const result = decodeImage(readCorpus(dir, name));
  if (!result.ok) throw new Error(`${name}: ${result.reason}`);
  return firstFrame(result.image);
}

describe('BMP against Pillow and GraphicsMagick on the image-rs BMP set', () => {
  it('has both oracles installed (Debian python3-pil and graphicsmagick)', () => {
    expect(pillow(join(fixtures, dir, 'rgb24.bmp'))).toBeDefined();
    expect(graphicsMagick(join(fixtures, dir, 'rgb24.bmp'))).toBeDefined();
  });

  it('decodes every file like the oracles, within the documented differences', () => {
    const names = corpusFiles(dir, '.bmp');
    expect(names.length).toBe(58);
    const failures: string[] = [];
    const byOracle = { pillow: 0, gm: 0, sibling: 0, decodeOnly: 0 };
    for (const name of names) {
      const path = join(fixtures, dir, name);
      const mine = ours(name);
      const tolerance = fieldTolerance[name] ?? 0;
      const rle = /rle/.test(name) || name.startsWith('imagemagick_invalid_run_length');
      if (decodeOnly.has(name)) {
        byOracle.decodeOnly++;
        continue;
      }
      const sibling = siblings[name];
      if (sibling) {
        byOracle.sibling++;
        if (differences(mine, ours(sibling), 0, true, name === 'pal4rlecut.bmp') > 0)
          failures.push(`${name}: differs from ${sibling}`);
        continue;
      }
      const pil = rle ? undefined : pillow(path);
      if (pil) {
        byOracle.pillow++;
        const bad = differences(mine, pil.rgba, tolerance, pil.mode.includes('A'), false);
        if (bad > 0) failures.push(`${name}: ${bad} samples differ from Pillow`);
        continue;
      }
      const gm = graphicsMagick(path);
      if (!gm) {
        failures.push(`${name}: no oracle`);
        continue;
      }
      byOracle.gm++;
      const bad = differences(mine, gm, tolerance, true, rle);
      if (bad > 0) failures.push(`${name}: ${bad} samples differ from GraphicsMagick`);
    }
    expect(failures).toEqual([]);
    expect(byOracle).toEqual({ pillow: 32, gm: 15, sibling: 8, decodeOnly: 3 });
  });
});

describe('BMP limits and damage', () => {
  it('refuses a header announcing more pixels than the limit before allocating', () => {
    const bytes = readCorpus(dir, 'rgb24.bmp').slice();
    new DataView(bytes.buffer).setInt32(18, 100_000, true);
    new DataView(bytes.buffer).setInt32(22, -100_000, true);
    expect(decodeImage(bytes)).toMatchObject({ ok: false, kind: 'limit' });
  });

  it('never throws on a BMP cut at any length', () => {
    const whole = readCorpus(dir, 'pal8rle.bmp');
    for (let cut = 0; cut < whole.length; cut += 97) {
      const result = decodeImage(whole.subarray(0, cut));
      if (!result.ok) expect(['truncated', 'corrupt', 'unknown-format']).toContain(result.kind);
    }
  });
});

describe('BMP with an embedded PNG or JPEG', () => {
  /** A BITMAPINFOHEADER file whose pixel data is `inner` (compression 4 = JPEG, 5 = PNG). */
  function wrap(inner: Uint8Array, width: number, height: number, compression: number): Uint8Array {
    const out = new Uint8Array(54 + inner.length);
    const view = new DataView(out.buffer);
    out.set([0x42, 0x4d]);
    view.setUint32(2, out.length, true);
    view.setUint32(10, 54, true);
    view.setUint32(14, 40, true);
    view.setInt32(18, width, true);
    view.setInt32(22, height, true);
    view.setUint16(26, 1, true);
    view.setUint16(30, 0, true);
    view.setUint32(30, compression, true);
    view.setUint32(34, inner.length, true);
    out.set(inner, 54);
    return out;
  }

  it('decodes the embedded image with the PNG and JPEG decoders and reports BMP', () => {
    for (const [folder, name, compression] of [
      ['png/pngsuite', 'basn6a08.png', 5],
      ['jpeg/jpeg-js-fixtures', 'redbox.jpg', 4],
    ] as const) {
      const inner = readCorpus(folder, name);
      const direct = decodeImage(inner);
      if (!direct.ok) throw new Error(direct.reason);
      const wrapped = decodeImage(wrap(inner, direct.image.width, direct.image.height, compression));
      if (!wrapped.ok) throw new Error(wrapped.reason);
      expect(wrapped.image.format).toBe('bmp');
      expect(firstFrame(wrapped.image)).toEqual(firstFrame(direct.image));
    }
  });
});
