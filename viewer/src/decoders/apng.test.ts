import { zlibSync } from 'fflate';
import { describe, expect, it } from 'vitest';
import { decodeImage } from './decode.ts';
import { composedFrames, firstFrame } from './oracle.ts';
import { pngSignature } from './png.ts';
import { pngChunk } from './testing/png-chunk.ts';

// Builds PNG files byte by byte, so each APNG feature is tested on a file whose expected
// pixels are known exactly (sharp does not decode APNG frames).
const chunk = pngChunk;
const be = (...fields: [number, 1 | 2 | 4][]) => {
  const out = new Uint8Array(fields.reduce((n, [, s]) => n + s, 0));
  const view = new DataView(out.buffer);
  let o = 0;
  for (const [v, s] of fields) {
    if (s === 1) view.setUint8(o, v);
    else if (s === 2) view.setUint16(o, v);
    else view.setUint32(o, v);
    o += s;
  }
  return out;
};
const ihdr = (w: number, h: number, depth = 8, colour = 6, interlace = 0) =>
  chunk('IHDR', be([w, 4], [h, 4], [depth, 1], [colour, 1], [0, 1], [0, 1], [interlace, 1]));
/** RGBA8 pixels, filter 0 on every row. */
const pixels = (w: number, rows: number[][][]) => {
  const raw: number[] = [];
  for (const row of rows) {
    raw.push(0);
    for (const px of row.slice(0, w)) raw.push(...px);
  }
  return zlibSync(Uint8Array.from(raw));
};
let seq = 0;
const fctl = (w: number, h: number, x: number, y: number, dispose: number, blend: number, delay = [1, 10]) =>
  chunk(
    'fcTL',
    be(
      [seq++, 4],
      [w, 4],
      [h, 4],
      [x, 4],
      [y, 4],
      [delay[0] ?? 0, 2],
      [delay[1] ?? 0, 2],
      [dispose, 1],
      [blend, 1],
    ),
  );
const fdat = (data: Uint8Array) => {
  const out = new Uint8Array(4 + data.length);
  new DataView(out.buffer).setUint32(0, seq++);
  out.set(data, 4);
  return chunk('fdAT', out);
};
const file = (...parts: Uint8Array[]) => {
  const all = [pngSignature, ...parts, chunk('IEND', new Uint8Array())];
  const out = new Uint8Array(all.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of all) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};

const red = [255, 0, 0, 255];
const blue = [0, 0, 255, 255];
const halfGreen = [0, 255, 0, 128];
const clear = [0, 0, 0, 0];

/** Frame 0 = [red, blue]; frame 1 draws half-transparent green over x=1 with `dispose`;
 *  frame 2 draws a fully transparent pixel at x=0 (blend over), revealing frame 1's dispose. */
function threeFrames(dispose1: number, blend1: number): Uint8Array {
  seq = 0;
  return file(
    ihdr(2, 1),
    chunk('acTL', be([3, 4], [0, 4])),
    fctl(2, 1, 0, 0, 0, 0, [1, 2]),
    chunk('IDAT', pixels(2, [[red, blue]])),
    fctl(1, 1, 1, 0, dispose1, blend1, [0, 0]),
    fdat(pixels(1, [[halfGreen]])),
    fctl(1, 1, 0, 0, 0, 1),
    fdat(pixels(1, [[clear]])),
  );
}

function framesOf(bytes: Uint8Array): number[][] {
  const result = decodeImage(bytes);
  if (!result.ok) throw new Error(result.reason);
  return composedFrames(result.image).map((f) => [...f]);
}

describe('APNG', () => {
  it('blends "over" with straight alpha and keeps the result when dispose is none', () => {
    const frames = framesOf(threeFrames(0, 1));
    expect(frames).toEqual([
      [...red, ...blue],
      [...red, 0, 128, 127, 255],
      [...red, 0, 128, 127, 255],
    ]);
  });
  it('replaces pixels when blend is source', () => {
    expect(framesOf(threeFrames(0, 0))[1]).toEqual([...red, ...halfGreen]);
  });
  it('clears the frame region to transparent black when dispose is background', () => {
    expect(framesOf(threeFrames(1, 1))[2]).toEqual([...red, ...clear]);
  });
  it('restores the region as it was before the frame when dispose is previous', () => {
    expect(framesOf(threeFrames(2, 1))[2]).toEqual([...red, ...blue]);
  });
  it('treats dispose previous on the first frame as background', () => {
    seq = 0;
    const bytes = file(
      ihdr(1, 1),
      chunk('acTL', be([2, 4], [0, 4])),
      fctl(1, 1, 0, 0, 2, 0),
      chunk('IDAT', pixels(1, [[red]])),
      fctl(1, 1, 0, 0, 0, 1),
      fdat(pixels(1, [[clear]])),
    );
    expect(framesOf(bytes)).toEqual([red, clear]);
  });
  it('reports delays (den 0 means 1/100 s) and the loop count', () => {
    const result = decodeImage(threeFrames(0, 1));
    if (!result.ok) throw new Error(result.reason);
    expect(result.image.frames.map((f) => f.delayMs)).toEqual([500, 0, 100]);
    expect(result.image.loopCount).toBe(0);
  });
  it('skips a default image that is not part of the animation', () => {
    seq = 0;
    const bytes = file(
      ihdr(1, 1),
      chunk('acTL', be([1, 4], [3, 4])),
      chunk('IDAT', pixels(1, [[red]])),
      fctl(1, 1, 0, 0, 0, 0),
      fdat(pixels(1, [[blue]])),
    );
    const result = decodeImage(bytes);
    if (!result.ok) throw new Error(result.reason);
    expect(composedFrames(result.image).map((f) => [...f])).toEqual([blue]);
    expect(result.image.loopCount).toBe(3);
  });
  it('falls back to the still image when a frame lies outside the canvas', () => {
    seq = 0;
    const bytes = file(
      ihdr(1, 1),
      chunk('acTL', be([2, 4], [0, 4])),
      fctl(1, 1, 0, 0, 0, 0),
      chunk('IDAT', pixels(1, [[red]])),
      fctl(1, 1, 5, 0, 0, 0),
      fdat(pixels(1, [[blue]])),
    );
    expect(framesOf(bytes)).toEqual([red]);
  });
  /** 40 frames: the default image (64×64) then 39 frames of `size`×`size` at (0, 0). */
  const manyFrames = (size: number) => {
    seq = 0;
    const square = (colour: number[]) =>
      pixels(
        size,
        Array.from({ length: size }, () => Array.from({ length: size }, () => colour)),
      );
    const parts = [ihdr(64, 64), chunk('acTL', be([40, 4], [0, 4])), fctl(64, 64, 0, 0, 0, 0)];
    parts.push(
      chunk(
        'IDAT',
        pixels(
          64,
          Array.from({ length: 64 }, () => Array.from({ length: 64 }, () => red)),
        ),
      ),
    );
    for (let i = 1; i < 40; i++) {
      parts.push(fctl(size, size, 0, 0, 0, 0));
      parts.push(fdat(square(blue)));
    }
    return file(...parts);
  };
  it('refuses an animation whose frames exceed the byte budget', () => {
    // 40 full-canvas frames: 40 × 16 KiB of layers, twice the budget. (Frames are kept at
    // their own size: 1×1 frames would fit, see below.)
    const result = decodeImage(manyFrames(64), { maxTotalBytes: 64 * 64 * 4 * 20 });
    expect(result).toMatchObject({ ok: false, kind: 'limit' });
    const frames = decodeImage(manyFrames(64), { maxFrames: 10 });
    expect(frames).toMatchObject({ ok: false, kind: 'limit' });
  });
  it('keeps frames at their own size, so small frames of a large canvas fit the budget', () => {
    // Before layers, each frame was a whole 64×64 canvas: 40 × 16 KiB, over this budget.
    const result = decodeImage(manyFrames(1), { maxTotalBytes: 64 * 64 * 4 * 20 });
    if (!result.ok) throw new Error(result.reason);
    const frames = composedFrames(result.image);
    expect(frames.length).toBe(40);
    expect([...(frames[39] as Uint8Array).subarray(0, 8)]).toEqual([...blue, ...red]);
  });
});

describe('PNG limits are checked from IHDR before allocation', () => {
  it('refuses a 100000×100000 IHDR with a tiny IDAT as a limit', () => {
    const result = decodeImage(file(ihdr(100_000, 100_000), chunk('IDAT', zlibSync(new Uint8Array(10)))));
    expect(result).toMatchObject({ ok: false, kind: 'limit' });
    if (!result.ok) expect(result.reason).toMatch(/100000×100000/);
  });
  it('refuses an image over the pixel limit but within the width and height limits', () => {
    const result = decodeImage(file(ihdr(10, 10), chunk('IDAT', pixels(10, []))), { maxPixels: 99 });
    expect(result).toMatchObject({ ok: false, kind: 'limit' });
  });
  it('refuses image data shorter than IHDR announces as truncated', () => {
    const result = decodeImage(file(ihdr(2, 2), chunk('IDAT', pixels(2, [[red, red]]))));
    expect(result).toMatchObject({ ok: false, kind: 'truncated' });
  });
});

describe('PNG chunk CRCs, as libpng treats them by default', () => {
  /** `chunk` with its CRC broken. */
  const damaged = (type: string, data: Uint8Array) => {
    const c = chunk(type, data);
    c[c.length - 1] = (c[c.length - 1] as number) ^ 0xff;
    return c;
  };
  const text = new TextEncoder().encode('Comment\0hello');
  const time = be([2026, 2], [12, 1], [6, 1], [9, 1], [30, 1], [0, 1]);
  const image = () => chunk('IDAT', pixels(2, [[red, blue]]));

  it('ignores ancillary chunks (tEXt, tIME) with a wrong CRC, with a warning', () => {
    const clean = decodeImage(file(ihdr(2, 1), image()));
    const result = decodeImage(file(ihdr(2, 1), damaged('tEXt', text), image(), damaged('tIME', time)));
    if (!result.ok || !clean.ok) throw new Error('refused');
    expect(firstFrame(result.image)).toEqual(firstFrame(clean.image));
    expect(result.image.warnings).toEqual([
      'PNG chunk tEXt has a wrong CRC and was ignored',
      'PNG chunk tIME has a wrong CRC and was ignored',
    ]);
    expect(clean.image.warnings).toBeUndefined();
  });

  it('refuses critical chunks (IHDR, PLTE, IDAT) with a wrong CRC', () => {
    const ihdrBytes = ihdr(2, 1);
    ihdrBytes[ihdrBytes.length - 1] = (ihdrBytes[ihdrBytes.length - 1] as number) ^ 1;
    for (const bytes of [
      file(ihdrBytes, image()),
      file(ihdr(2, 1), damaged('IDAT', pixels(2, [[red, blue]]))),
      file(
        ihdr(1, 1, 8, 3),
        damaged('PLTE', Uint8Array.of(1, 2, 3)),
        chunk('IDAT', zlibSync(Uint8Array.of(0, 0))),
      ),
    ])
      expect(decodeImage(bytes)).toMatchObject({
        ok: false,
        kind: 'corrupt',
        reason: expect.stringMatching(/wrong CRC/),
      });
  });

  it('shows the still image when an APNG frame control has a wrong CRC (the chunk is dropped)', () => {
    const bytes = threeFrames(0, 1);
    // The second fcTL: after the signature, IHDR (25), acTL (20), fcTL (38), IDAT.
    const idatLength = new DataView(bytes.buffer).getUint32(8 + 25 + 20 + 38);
    const crcAt = 8 + 25 + 20 + 38 + 12 + idatLength + 38 - 1;
    bytes[crcAt] = (bytes[crcAt] as number) ^ 0xff;
    const result = decodeImage(bytes);
    if (!result.ok) throw new Error(result.reason);
    expect(composedFrames(result.image).map((f) => [...f])).toEqual([[...red, ...blue]]);
    expect(result.image.warnings).toEqual(['PNG chunk fcTL has a wrong CRC and was ignored']);
  });
});
