import { describe, expect, it, vi } from 'vitest';
import { DecodeBudget } from './budget.ts';
import { decodeImage } from './decode.ts';
import { compareSamples, corpusFiles, firstFrame, readCorpus, sharpRgba } from './oracle.ts';
import { decodePng } from './png.ts';
import { resolveLimits } from './types.ts';

// Whole-corpus oracle runs: allow for a busy CI machine (they take seconds when idle).
vi.setConfig({ testTimeout: 120_000 });

const suite = 'png/pngsuite';
const expectedFailures = new Set(
  new TextDecoder()
    .decode(readCorpus(suite, 'EXPECTED-FAILURES.txt'))
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#')),
);
const valid = corpusFiles(suite, '.png').filter((f) => !expectedFailures.has(f));

describe('PNG against sharp (libvips) on PngSuite', () => {
  it('decodes every valid PngSuite file to exactly the RGBA8 sharp gives', async () => {
    expect(valid.length).toBeGreaterThan(150);
    const mismatched: string[] = [];
    for (const name of valid) {
      const bytes = readCorpus(suite, name);
      const ours = decodeImage(bytes);
      if (!ours.ok) {
        mismatched.push(`${name}: refused (${ours.reason})`);
        continue;
      }
      const ref = await sharpRgba(bytes);
      const frame = firstFrame(ours.image);
      const diff = compareSamples(frame, ref.data);
      if (ours.image.width !== ref.width || ours.image.height !== ref.height || diff.over > 0)
        mismatched.push(`${name}: ${diff.over} samples differ, max ${diff.max}`);
    }
    expect(mismatched).toEqual([]);
  });

  it('decodes every 16-bit PngSuite file to exactly the 16-bit samples sharp gives', async () => {
    const sixteen = valid.filter((f) => /16\.png$/.test(f));
    expect(sixteen.length).toBeGreaterThan(10);
    const mismatched: string[] = [];
    for (const name of sixteen) {
      const bytes = readCorpus(suite, name);
      const ours = decodePng(bytes, new DecodeBudget(resolveLimits()), { sixteenBit: true });
      const ref = await sharpRgba(bytes, 16);
      const diff = compareSamples(ours.rgba16 ?? [], ref.data);
      if (diff.over > 0) mismatched.push(`${name}: ${diff.over} samples differ, max ${diff.max}`);
    }
    expect(mismatched).toEqual([]);
  });
});

describe('PNG refusals', () => {
  it('refuses every deliberately corrupt PngSuite file', () => {
    expect(expectedFailures.size).toBe(14);
    for (const name of expectedFailures) {
      const result = decodeImage(readCorpus(suite, name));
      expect(result.ok, name).toBe(false);
    }
  });

  it('survives the libpng crashers without huge allocations', () => {
    const names = corpusFiles('png/libpng-crashers', '.png');
    expect(names.length).toBe(23);
    for (const name of names) {
      // A 1 MiB budget: any attempt to allocate from a ~1 GiB chunk length would be refused
      // as a limit, which this test rejects.
      const result = decodeImage(readCorpus('png/libpng-crashers', name), { maxTotalBytes: 1 << 20 });
      if (!result.ok) expect(result.kind, `${name}: ${result.reason}`).not.toBe('limit');
    }
  });
});
