import sharp from 'sharp';
import { describe, expect, it, vi } from 'vitest';
import { DecodeBudget } from './budget.ts';
import { decodeImage } from './decode.ts';
import { decodeJpeg, jpegMemoryNeed, readJpegHeader } from './jpeg.ts';
import { compareSamples, corpusFiles, firstFrame, readCorpus, sharpRgba } from './oracle.ts';
import { resolveLimits } from './types.ts';

// Whole-corpus oracle runs: allow for a busy CI machine (they take seconds when idle).
vi.setConfig({ testTimeout: 120_000 });

/**
 * Against sharp (libvips + libjpeg-turbo): our decoder follows libjpeg's integer IDCT,
 * colour conversion and fancy upsampling, so every non-CMYK file must match EXACTLY
 * (measured: 0 differing samples on all of them). CMYK/YCCK: sharp converts through a CMYK
 * ICC profile, we with the Adobe-convention formula R = C·K/255 (what browsers do), so only
 * the mean difference is bounded: at most 30 (measured 6–28).
 */
const cmykMean = 30;

async function compareWithSharp(folder: string, name: string): Promise<string | undefined> {
  const bytes = readCorpus(folder, name);
  const ours = decodeImage(bytes);
  if (!ours.ok) return `${name}: refused: ${ours.reason}`;
  const { frame } = readJpegHeader(bytes);
  const rgba = firstFrame(ours.image);
  const ref = await sharpRgba(bytes);
  if (ref.width !== ours.image.width || ref.height !== ours.image.height) return `${name}: size differs`;
  const diff = compareSamples(rgba, ref.data);
  if (frame.components === 4)
    return diff.mean > cmykMean ? `${name}: CMYK mean difference ${diff.mean.toFixed(2)}` : undefined;
  return diff.over > 0 ? `${name}: ${diff.over} samples differ, max ${diff.max}` : undefined;
}

describe('JPEG against sharp on jpegsuite (baseline, extended, progressive Huffman)', () => {
  for (const folder of ['baseline', 'extended_huffman', 'progressive_huffman']) {
    it(`decodes every 8-bit ${folder} file exactly like sharp (CMYK: documented mean) and refuses 12-bit ones cleanly`, async () => {
      const dir = `jpeg/jpegsuite/${folder}`;
      const failures: string[] = [];
      let compared = 0;
      for (const name of corpusFiles(dir, '.jpg')) {
        if (/x12_/.test(name)) {
          const result = decodeImage(readCorpus(dir, name));
          if (result.ok || result.kind !== 'unsupported')
            failures.push(`${name}: 12-bit not refused as unsupported`);
          continue;
        }
        if (name.includes('_dnl')) continue; // sharp refuses DNL: tested against its sibling below
        compared++;
        const failure = await compareWithSharp(dir, name);
        if (failure) failures.push(failure);
      }
      expect(compared).toBeGreaterThan(25);
      expect(failures).toEqual([]);
    });
  }

  it('decodes DNL files (height after the scan) like their sibling without DNL', () => {
    for (const folder of ['baseline', 'extended_huffman', 'progressive_huffman']) {
      const dir = `jpeg/jpegsuite/${folder}`;
      const dnl = decodeImage(readCorpus(dir, '32x32x8_dnl.jpg'));
      const plain = decodeImage(readCorpus(dir, '32x32x8_grayscale.jpg'));
      if (!dnl.ok || !plain.ok) throw new Error(`${folder}: DNL or sibling refused`);
      expect(dnl.image.height).toBe(32);
      expect(compareSamples(firstFrame(dnl.image), firstFrame(plain.image)).max).toBe(0);
    }
  });

  it('refuses lossless and arithmetic-coded files as unsupported, with the reason', () => {
    for (const [folder, reason] of [
      ['lossless_huffman', /lossless JPEG is not supported/],
      ['extended_arithmetic', /arithmetic-coded JPEG is not supported/],
    ] as const) {
      const names = corpusFiles(`jpeg/jpegsuite/${folder}`, '.jpg');
      expect(names.length).toBe(10);
      for (const name of names) {
        const result = decodeImage(readCorpus(`jpeg/jpegsuite/${folder}`, name));
        expect(result).toMatchObject({ ok: false, kind: 'unsupported' });
        if (!result.ok) expect(result.reason).toMatch(reason);
      }
    }
  });
});

describe('JPEG on the jpeg-js fixtures', () => {
  const dir = 'jpeg/jpeg-js-fixtures';
  it('decodes every fixture exactly like sharp (CMYK: documented mean)', async () => {
    const failures: string[] = [];
    const names = corpusFiles(dir, '.jpg').filter((n) => n !== 'black-6000x6000.jpg');
    expect(names.length).toBe(21);
    for (const name of names) {
      const failure = await compareWithSharp(dir, name);
      if (failure) failures.push(failure);
    }
    expect(failures).toEqual([]);
  });

  it('matches the .rgba reference pixels shipped with jpeg-js within 4 (mean < 0.5)', () => {
    // jpeg-js upsamples chroma by replication and rounds colour differently; the
    // -nocolortrans reference was decoded with a forced option we do not have.
    const rgbaRefs = corpusFiles(dir, '.rgba').filter((n) => !n.includes('nocolortrans'));
    for (const ref of rgbaRefs) {
      const name = ref.replace(/\.rgba$/, '.jpg');
      const result = decodeImage(readCorpus(dir, name));
      if (!result.ok) throw new Error(`${name}: ${result.reason}`);
      const diff = compareSamples(firstFrame(result.image), readCorpus(dir, ref), 4);
      expect(diff.over, name).toBe(0);
      expect(diff.mean, name).toBeLessThan(0.5);
    }
    expect(rgbaRefs.length).toBe(9);
  });

  it('decodes a file with a malformed APP1 like the same file with a good one', () => {
    const bad = decodeImage(readCorpus(dir, 'table-with-bad-e1.jpg'));
    const good = decodeImage(readCorpus(dir, 'table-with-good-e1.jpg'));
    if (!bad.ok || !good.ok) throw new Error('refused');
    expect(compareSamples(firstFrame(bad.image), firstFrame(good.image)).max).toBe(0);
  });

  it('refuses the 6000×6000 image by pixel count or by memory budget, before decoding', () => {
    const bytes = readCorpus(dir, 'black-6000x6000.jpg');
    expect(decodeImage(bytes, { maxPixels: 30_000_000 })).toMatchObject({ ok: false, kind: 'limit' });
    // The estimate is what the decoder allocates (here the 144 MB output and two MCU rows
    // of planes; it once counted whole planes and coefficients too and refused 256 MiB).
    const budget = decodeImage(bytes, { maxTotalBytes: 128 << 20 });
    expect(budget).toMatchObject({ ok: false, kind: 'limit' });
    if (!budget.ok) expect(budget.reason).toMatch(/JPEG decode/);
  });
});

describe('JPEG scan bombs', () => {
  it('refuses a progressive file with more scans than any real one has', () => {
    // Repeat the last scan (SOS .. before EOI) of a progressive file 300 times.
    const bytes = readCorpus('jpeg/jpeg-js-fixtures', 'skater-progressive.jpg');
    let sos = -1;
    for (let i = bytes.length - 4; i > 0; i--)
      if (bytes[i] === 0xff && bytes[i + 1] === 0xda) {
        sos = i;
        break;
      }
    const scan = bytes.subarray(sos, bytes.length - 2);
    const parts = [
      bytes.subarray(0, bytes.length - 2),
      ...Array.from({ length: 300 }, () => scan),
      Uint8Array.of(0xff, 0xd9),
    ];
    const bomb = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) {
      bomb.set(p, o);
      o += p.length;
    }
    const result = decodeImage(bomb);
    expect(result).toMatchObject({ ok: false, kind: 'limit' });
    if (!result.ok) expect(result.reason).toMatch(/scans/);
  });
});

describe('EXIF orientation', () => {
  it('reports the orientation tag without rotating the pixels', () => {
    const dir = 'jpeg/exif-orientation';
    for (const n of [0, 1, 3, 6, 8]) {
      const result = decodeImage(readCorpus(dir, `Landscape_${n}.jpg`));
      if (!result.ok) throw new Error(result.reason);
      // 0 is not a valid orientation and reads as 1 (upright).
      expect(result.image.orientation).toBe(n === 0 ? 1 : n);
      expect([result.image.width, result.image.height]).toEqual(n >= 5 ? [1200, 1800] : [1800, 1200]);
    }
  });
});

describe('JPEG without Huffman tables (motion-JPEG frames)', () => {
  /** The file without its DHT segments. */
  function withoutDht(bytes: Uint8Array): Uint8Array {
    const parts: Uint8Array[] = [bytes.subarray(0, 2)];
    let pos = 2;
    while (pos + 4 <= bytes.length && bytes[pos + 1] !== 0xda) {
      const end = pos + 2 + (((bytes[pos + 2] as number) << 8) | (bytes[pos + 3] as number));
      if (bytes[pos + 1] !== 0xc4) parts.push(bytes.subarray(pos, end));
      pos = end;
    }
    parts.push(bytes.subarray(pos));
    return Buffer.concat(parts);
  }

  it('decodes with the standard tables of Annex K, like libjpeg (sharp)', async () => {
    const photo = readCorpus('jpeg/exif-orientation', 'Landscape_1.jpg');
    // libjpeg writes the Annex K tables when it does not optimise them.
    const standard = new Uint8Array(
      await sharp(photo).resize(301, 203).jpeg({ optimiseCoding: false }).toBuffer(),
    );
    const bare = withoutDht(standard);
    expect(bare.length).toBeLessThan(standard.length - 400);
    const ours = decodeImage(bare);
    if (!ours.ok) throw new Error(ours.reason);
    const want = await sharpRgba(bare);
    expect(compareSamples(firstFrame(ours.image), want.data).over).toBe(0);
    const full = decodeImage(standard);
    if (!full.ok) throw new Error(full.reason);
    expect(firstFrame(ours.image)).toEqual(firstFrame(full.image));
  });

  it('still refuses a scan naming table slot 2 or 3 that was never defined', () => {
    const bytes = withoutDht(
      readCorpus('jpeg/jpegsuite/baseline', corpusFiles('jpeg/jpegsuite/baseline', '.jpg')[0] as string),
    );
    const sos = bytes.indexOf(0xda, 2) - 1;
    bytes[sos + 6] = 0x22; // first component: DC and AC tables 2
    expect(decodeImage(bytes)).toMatchObject({
      ok: false,
      kind: 'corrupt',
      reason: expect.stringMatching(/never defined/),
    });
  });
});

describe('JPEG memory estimate', () => {
  it('accepts a 4:4:4 JPEG of 8192×5120 (the pixel cap) under the default budget', async () => {
    const photo = readCorpus('jpeg/exif-orientation', 'Landscape_1.jpg');
    const big = new Uint8Array(
      await sharp(photo)
        .resize(8192, 5120, { fit: 'fill' })
        .jpeg({ chromaSubsampling: '4:4:4', quality: 70 })
        .toBuffer(),
    );
    const result = decodeImage(big);
    if (!result.ok) throw new Error(result.reason);
    expect([result.image.width, result.image.height]).toEqual([8192, 5120]);
  });

  it('estimates what the decoder allocates: never less, and within 1%', async () => {
    const photo = readCorpus('jpeg/exif-orientation', 'Landscape_1.jpg');
    const variants = [
      await sharp(photo).jpeg({ chromaSubsampling: '4:4:4' }).toBuffer(),
      await sharp(photo).jpeg({ chromaSubsampling: '4:2:0' }).toBuffer(),
      await sharp(photo).jpeg({ chromaSubsampling: '4:4:4', progressive: true }).toBuffer(),
      await sharp(photo).resize(333, 251).jpeg({ chromaSubsampling: '4:2:0', progressive: true }).toBuffer(),
      ...['baseline', 'progressive_huffman'].flatMap((folder) =>
        corpusFiles(`jpeg/jpegsuite/${folder}`, '.jpg')
          .slice(0, 12)
          .map((name) => readCorpus(`jpeg/jpegsuite/${folder}`, name)),
      ),
    ];
    let checked = 0;
    for (const bytes of variants) {
      const header = readJpegHeader(new Uint8Array(bytes));
      if (header.frame.precision !== 8) continue;
      const budget = new DecodeBudget(resolveLimits());
      decodeJpeg(new Uint8Array(bytes), budget);
      const need = jpegMemoryNeed(header, header.frame.height);
      expect(budget.bytesAllocated).toBeLessThanOrEqual(need);
      expect(budget.bytesAllocated).toBeGreaterThan(need * 0.99);
      checked++;
    }
    expect(checked).toBeGreaterThan(15);
  });
});
