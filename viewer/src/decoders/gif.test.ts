import { describe, expect, it, vi } from 'vitest';
import { decodeImage } from './decode.ts';
import { composedFrames, corpusFiles, firstFrame, readCorpus, sharpRgba } from './oracle.ts';
import { writeGif } from './testing/gif-writer.ts';

// Whole-corpus oracle runs: allow for a busy CI machine (they take seconds when idle).
vi.setConfig({ testTimeout: 120_000 });

interface Conf {
  [section: string]: Record<string, string>;
}
function parseConf(text: string): Conf {
  const out: Conf = {};
  let section: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const header = /^\[(.+)\]$/.exec(line.trim());
    if (header?.[1]) {
      section = {};
      out[header[1]] = section;
    } else {
      const kv = /^([^#=]+?)\s*=\s*(.*)$/.exec(line);
      if (kv?.[1]) section[kv[1]] = (kv[2] ?? '').trim();
    }
  }
  return out;
}

/** Pixels equal, except that two fully transparent pixels match whatever their colour. */
function samePixels(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i += 4) {
    if (a[i + 3] === 0 && b[i + 3] === 0) continue;
    for (let c = 0; c < 4; c++) if (a[i + c] !== b[i + c]) return false;
  }
  return true;
}

const pygif = 'gif/pygif';
const tests = new TextDecoder()
  .decode(readCorpus(pygif, 'TESTS'))
  .split('\n')
  .map((l) => l.trim())
  .filter(Boolean);

describe('GIF against the pygif test suite expected frames', () => {
  it('lists 84 tests', () => expect(tests.length).toBe(84));

  it('decodes every test with expected frames to exactly those frames, delays and loop count', () => {
    const failures: string[] = [];
    let checked = 0;
    for (const name of tests) {
      const conf = parseConf(new TextDecoder().decode(readCorpus(pygif, `${name}.conf`)));
      const config = conf.config ?? {};
      const expected = (config.frames ?? '').split(',').filter(Boolean);
      // max-width/max-height are 65535 px wide/tall: over the default limits (checked below).
      const result = decodeImage(readCorpus(pygif, config.input ?? ''), {
        maxWidth: 65535,
        maxHeight: 65535,
      });
      if (expected.length === 0) continue; // checked in the next test
      // pygif's own runner skips this one ("we don't have the animation heuristic"): four
      // full-screen images without delays or looping extension, which it expects as four
      // frames, while images-overlap (two such images) expects one. We show one frame.
      if (name === 'gif87a-animation') continue;
      checked++;
      if (!result.ok) {
        failures.push(`${name}: refused: ${result.reason}`);
        continue;
      }
      const { image } = result;
      if (`${image.width}x${image.height}` !== `${config.width}x${config.height}`)
        failures.push(`${name}: size ${image.width}x${image.height}`);
      if (image.frames.length !== expected.length) {
        failures.push(`${name}: ${image.frames.length} frames, expected ${expected.length}`);
        continue;
      }
      const loop = config['loop-count'];
      if (expected.length > 1) {
        const plays = loop === 'infinite' ? 0 : Number(loop) === 0 ? 1 : Number(loop) + 1;
        if (image.loopCount !== plays)
          failures.push(`${name}: loop count ${image.loopCount}, expected ${plays}`);
      }
      const composed = composedFrames(image);
      for (const [i, id] of expected.entries()) {
        const frame = conf[id] ?? {};
        const want = readCorpus(pygif, frame.pixels ?? '');
        const got = image.frames[i];
        if (!got || !samePixels(composed[i] as Uint8Array, want))
          failures.push(`${name}: frame ${i} pixels differ`);
        const delay = Number(frame.delay ?? 0) * 10;
        if (got && got.delayMs !== delay)
          failures.push(`${name}: frame ${i} delay ${got.delayMs}, expected ${delay}`);
      }
    }
    expect(checked).toBe(74);
    expect(failures).toEqual([]);
  });

  it('refuses 65535-pixel-wide and -tall screens under the default limits', () => {
    for (const name of ['max-width', 'max-height'])
      expect(decodeImage(readCorpus(pygif, `${name}.gif`))).toMatchObject({ ok: false, kind: 'limit' });
  });

  it('refuses or decodes without crashing the tests that define no expected frame', () => {
    const outcomes: string[] = [];
    for (const name of tests) {
      const conf = parseConf(new TextDecoder().decode(readCorpus(pygif, `${name}.conf`)));
      if ((conf.config?.frames ?? '') !== '') continue;
      const result = decodeImage(readCorpus(pygif, `${name}.gif`));
      outcomes.push(`${name}: ${result.ok ? 'decoded' : result.kind}`);
    }
    expect(outcomes).toEqual([
      'zero-width: corrupt',
      'zero-height: corrupt',
      'zero-size: corrupt',
      'invalid-code: decoded',
      'invalid-colors: decoded',
      'max-size: limit',
      'overflow-codes: corrupt',
      'overflow-codes-max: corrupt',
      'plain-text: decoded',
    ]);
  });
});

describe('GIF against gif-test-suite expected frames', () => {
  it('composites every frame of every animation exactly as the reference PNGs', async () => {
    const suite = 'gif/gif-test-suite';
    const failures: string[] = [];
    const gifs = corpusFiles(suite, '.gif');
    expect(gifs.length).toBe(13);
    const references = corpusFiles(`${suite}/frames`, '.png');
    for (const name of gifs) {
      const base = name.replace(/\.gif$/, '');
      const refs = references.filter(
        (f) => f === `${base}.png` || new RegExp(`^${base}-\\d+\\.png$`).test(f),
      );
      refs.sort(
        (a, b) => Number(/-(\d+)\.png$/.exec(a)?.[1] ?? 0) - Number(/-(\d+)\.png$/.exec(b)?.[1] ?? 0),
      );
      const result = decodeImage(readCorpus(suite, name));
      if (!result.ok) {
        failures.push(`${name}: refused: ${result.reason}`);
        continue;
      }
      if (result.image.frames.length !== refs.length) {
        failures.push(`${name}: ${result.image.frames.length} frames, expected ${refs.length}`);
        continue;
      }
      const composed = composedFrames(result.image);
      for (const [i, ref] of refs.entries()) {
        const want = await sharpRgba(readCorpus(`${suite}/frames`, ref));
        const got = composed[i] ?? new Uint8Array();
        if (!samePixels(got, want.data as Uint8Array))
          failures.push(`${name}: frame ${i} differs from ${ref}`);
      }
    }
    expect(failures).toEqual([]);
  });
});

describe('GIF limits and damaged data', () => {
  it('refuses a frame descriptor over the pixel limit before allocating its indices', () => {
    const bytes = readCorpus(pygif, 'depth8.gif').slice();
    // Rewrite the first image descriptor's size to 65535×65535 inside a 1×1 screen.
    const gctSize = 3 << (((bytes[10] as number) & 7) + 1);
    const at = bytes.indexOf(0x2c, 13 + gctSize);
    bytes.set([0xff, 0xff, 0xff, 0xff], at + 5);
    const result = decodeImage(bytes);
    expect(result).toMatchObject({ ok: false, kind: 'limit' });
  });

  it('refuses animations with more frames than the limit', () => {
    const result = decodeImage(readCorpus(pygif, 'animation.gif'), { maxFrames: 3 });
    expect(result).toMatchObject({ ok: false, kind: 'limit' });
  });

  it('shows what was decoded when the LZW data is cut at any byte', () => {
    const whole = readCorpus(pygif, '4095-codes.gif');
    let decoded = 0;
    for (let cut = 14; cut < whole.length; cut += 7) {
      const result = decodeImage(whole.subarray(0, cut));
      if (result.ok) decoded++;
      else expect(['truncated', 'corrupt']).toContain(result.kind);
    }
    expect(decoded).toBeGreaterThan(0);
  });
});

describe('GIF strictness, decided per case', () => {
  const palette = [255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9];
  const indices = Uint8Array.from({ length: 12 }, (_, i) => i % 4);

  it('accepts a 0×0 logical screen as giflib does, growing it to the first image (as sharp and Chromium)', async () => {
    for (const [left, top] of [
      [0, 0],
      [2, 1],
    ] as const) {
      const bytes = writeGif({
        width: 0,
        height: 0,
        palette,
        images: [{ left, top, width: 4, height: 3, indices }],
      });
      const result = decodeImage(bytes);
      if (!result.ok) throw new Error(result.reason);
      const want = await sharpRgba(bytes);
      expect([result.image.width, result.image.height]).toEqual([want.width, want.height]);
      // The image's own pixels are sharp's; around it sharp shows opaque black where we
      // leave the screen transparent (as browsers do), so only the image is compared.
      const ours = firstFrame(result.image);
      for (let y = top; y < top + 3; y++) {
        const row = (y * want.width + left) * 4;
        expect([...ours.subarray(row, row + 16)]).toEqual([...want.data.subarray(row, row + 16)]);
      }
    }
  });

  it('refuses a 13-byte file (header and screen descriptor, no image) instead of showing a blank image', () => {
    const bytes = writeGif({ width: 3, height: 2, palette, images: [] }).subarray(0, 13 + 12);
    expect(decodeImage(bytes.subarray(0, 13))).toMatchObject({ ok: false, kind: 'truncated' });
    expect(decodeImage(bytes)).toMatchObject({ ok: false, kind: 'truncated' });
  });
});
