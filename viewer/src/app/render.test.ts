import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { decodeImage } from '../decoders/decode.ts';
import { fixtures } from '../decoders/oracle.ts';
import { type DecodedImage, defaultDecodeLimits } from '../decoders/types.ts';
import { displayedSize, IDENTITY, type Transform, transformForOrientation } from './orientation.ts';
import {
  BACKGROUND,
  CHECKER_LIGHT,
  CHECKER_WHITE,
  compositeOverCheckerboard,
  ImageRenderer,
} from './render.ts';
import type { Pixels } from './resample.ts';
import { ImageViewer } from './viewer.ts';

const read = (path: string) => new Uint8Array(readFileSync(join(fixtures, path)));

function decodeStill(bytes: Uint8Array): DecodedImage {
  const result = decodeImage(bytes);
  if (!result.ok) throw new Error(result.reason);
  return result.image;
}

function pixelsOf(image: DecodedImage): Pixels {
  return { data: image.frames[0]?.layers[0]?.pixels as Uint8Array, width: image.width, height: image.height };
}

/** The w × h area at (left, top) of a BGRX window, as RGB. */
function area(bgrx: Uint8Array, winW: number, left: number, top: number, w: number, h: number): Uint8Array {
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const p = ((top + y) * winW + left + x) * 4;
      const o = (y * w + x) * 3;
      out[o] = bgrx[p + 2] as number;
      out[o + 1] = bgrx[p + 1] as number;
      out[o + 2] = bgrx[p] as number;
    }
  return out;
}

/** RGB of an RGBA (or RGB) buffer. */
function rgbOf(data: Uint8Array, channels: number): Uint8Array {
  const n = data.length / channels;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) out.set(data.subarray(i * channels, i * channels + 3), i * 3);
  return out;
}

function difference(a: Uint8Array, b: Uint8Array): { mean: number; max: number } {
  expect(a.length).toBe(b.length);
  let sum = 0;
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs((a[i] as number) - (b[i] as number));
    sum += d;
    if (d > max) max = d;
  }
  return { mean: sum / a.length, max };
}

/** Same length and every byte equal (a plain loop: deep equality of large arrays is slow). */
function expectIdentical(a: Uint8Array, b: Uint8Array): void {
  expect(difference(a, b).max).toBe(0);
}

/** Brute-force reference: the stored RGBA image as `t` shows it. */
function transformed(source: Pixels, t: Transform): { data: Uint8Array; width: number; height: number } {
  const [dw, dh] = displayedSize(t, source.width, source.height);
  const out = new Uint8Array(dw * dh * 4);
  for (let y = 0; y < dh; y++)
    for (let x = 0; x < dw; x++) {
      const u = t.flipX ? dw - 1 - x : x;
      const v = t.flipY ? dh - 1 - y : y;
      const [sx, sy] = t.swap ? [v, u] : [u, v];
      out.set(
        source.data.subarray((sy * source.width + sx) * 4, (sy * source.width + sx) * 4 + 4),
        (y * dw + x) * 4,
      );
    }
  return { data: out, width: dw, height: dh };
}

function render(
  source: Pixels,
  t: Transform,
  sw: number,
  sh: number,
  winW: number,
  winH: number,
  left = 0,
  top = 0,
) {
  const pixels = new Int32Array(winW * winH);
  const renderer = new ImageRenderer();
  renderer.render(
    { pixels, width: winW, height: winH },
    { source, sourceVersion: 1, transform: t, scaledWidth: sw, scaledHeight: sh, left, top },
  );
  return { bgrx: new Uint8Array(pixels.buffer), renderer };
}

describe('1:1 and rotations are exact', () => {
  const photo = pixelsOf(decodeStill(read('jpeg/jpeg-js-fixtures/tree-rgb.jpg')));

  for (let orientation = 1; orientation <= 8; orientation++) {
    it(`shows every decoded pixel under orientation ${orientation}`, () => {
      const t = transformForOrientation(orientation);
      const want = transformed(photo, t);
      const { bgrx } = render(photo, t, photo.width, photo.height, want.width + 10, want.height + 6, 5, 3);
      expectIdentical(area(bgrx, want.width + 10, 5, 3, want.width, want.height), rgbOf(want.data, 4));
    });
  }

  it('matches sharp’s auto-oriented decode of the EXIF samples pixel for pixel', async () => {
    for (const n of [1, 3, 6, 8]) {
      const bytes = read(`jpeg/exif-orientation/Landscape_${n}.jpg`);
      const image = decodeStill(bytes);
      const t = transformForOrientation(image.orientation);
      const { data, info } = await sharp(bytes).rotate().raw().toBuffer({ resolveWithObject: true });
      expect([info.width, info.height]).toEqual([1800, 1200]);
      const { bgrx } = render(pixelsOf(image), t, image.width, image.height, 1800, 1200);
      expect(difference(area(bgrx, 1800, 0, 0, 1800, 1200), rgbOf(data, info.channels)).max).toBe(0);
    }
  });

  for (const format of ['png', 'webp'] as const) {
    it(`applies a ${format === 'png' ? 'PNG eXIf' : 'WebP EXIF'} orientation as sharp’s rotate() does`, async () => {
      const photo = read('jpeg/jpeg-js-fixtures/tree-rgb.jpg');
      const made = sharp(photo).withMetadata({ orientation: 6 });
      const bytes = new Uint8Array(
        await (format === 'png' ? made.png() : made.webp({ lossless: true })).toBuffer(),
      );
      const viewer = new ImageViewer({ name: 'x', monitors: [], limits: defaultDecodeLimits });
      const request = viewer.open(bytes);
      const update = viewer.decoded(decodeImage(bytes, request.limits, request.options), 0);
      expect(update.title).toBe('x - 250x400 - 100%');
      const { data, info } = await sharp(bytes)
        .rotate()
        .ensureAlpha()
        .raw()
        .toBuffer({ resolveWithObject: true });
      const want = compositeOverCheckerboard(new Uint8Array(data), info.width, info.height);
      const { left, top } = viewer.view;
      expectIdentical(area(viewer.render(), update.width, left, top, 250, 400), rgbOf(want, 4));
    });
  }

  it('enlarges by whole factors into exact squares', () => {
    const tiny = pixelsOf(decodeStill(read('png/pngsuite/basn2c08.png')));
    const { bgrx } = render(tiny, IDENTITY, 32 * 8, 32 * 8, 256, 256);
    for (const [x, y] of [
      [0, 0],
      [7, 7],
      [8, 0],
      [255, 255],
      [100, 37],
    ] as const) {
      const s = ((y >> 3) * 32 + (x >> 3)) * 4;
      const p = (y * 256 + x) * 4;
      expect([bgrx[p + 2], bgrx[p + 1], bgrx[p]]).toEqual([tiny.data[s], tiny.data[s + 1], tiny.data[s + 2]]);
    }
  });

  it('fills the window around the image with the background', () => {
    const { bgrx } = render(
      photo,
      IDENTITY,
      photo.width,
      photo.height,
      photo.width + 40,
      photo.height + 40,
      20,
      20,
    );
    const words = new Int32Array(bgrx.buffer);
    expect(words[0]).toBe(BACKGROUND);
    expect(words[(photo.height + 39) * (photo.width + 40) + photo.width + 39]).toBe(BACKGROUND);
  });
});

describe('transparency over the checkerboard', () => {
  it('composites straight alpha over 8-pixel squares of #CCCCCC and #FFFFFF', () => {
    // 16×9: a red column fading out, so both square colours and every alpha appear.
    const width = 16;
    const height = 9;
    const data = new Uint8Array(width * height * 4);
    for (let i = 0; i < width * height; i++) data.set([200, 10, 10, (i * 7) % 256], i * 4);
    const { bgrx } = render({ data, width, height }, IDENTITY, width, height, width, height);
    const want = compositeOverCheckerboard(data, width, height);
    expect(area(bgrx, width, 0, 0, width, height)).toEqual(rgbOf(want, 4));
    // Fully transparent pixels show the squares themselves.
    const clear = new Uint8Array(width * height * 4);
    const empty = render({ data: clear, width, height }, IDENTITY, width, height, width, height).bgrx;
    expect(empty[0]).toBe(CHECKER_LIGHT);
    expect(empty[8 * 4]).toBe(CHECKER_WHITE);
    expect(empty[(8 * width + 8) * 4]).toBe(CHECKER_LIGHT);
  });
});

/** The proof's bound for fitted views: mean |Δ| ≤ 1 and max ≤ 8 per channel against sharp. */
function expectWithinProof(d: { mean: number; max: number }): void {
  expect(d.mean).toBeLessThanOrEqual(1);
  expect(d.max).toBeLessThanOrEqual(8);
}

describe('downscaling matches sharp.resize (Lanczos-3)', () => {
  const photoBytes = read('jpeg/exif-orientation/Landscape_1.jpg');
  const photo = pixelsOf(decodeStill(photoBytes));

  for (const [w, h] of [
    [1200, 800], // ratio 1.5: Lanczos only
    [545, 363], // 3.3: still Lanczos only (box step from 4)
    [254, 169], // 7.1: box 3, then Lanczos
    [61, 41], // 29.5: box 14, then Lanczos
  ] as const) {
    it(`1800x1200 to ${w}x${h}`, async () => {
      const ref = await sharp(Buffer.from(photo.data), { raw: { width: 1800, height: 1200, channels: 4 } })
        .resize(w, h, { fit: 'fill', kernel: 'lanczos3' })
        .raw()
        .toBuffer();
      const { bgrx } = render(photo, IDENTITY, w, h, w, h);
      const d = difference(area(bgrx, w, 0, 0, w, h), rgbOf(new Uint8Array(ref), 4));
      expectWithinProof(d);
      expect(d.mean).toBeLessThan(0.25); // measured 0 to 0.2
    });
  }

  it('downscales transparent images premultiplied, as sharp, then over the checkerboard', async () => {
    const rgba = new Uint8Array(photo.data);
    for (let y = 0; y < 1200; y++)
      for (let x = 0; x < 1800; x++)
        rgba[(y * 1800 + x) * 4 + 3] = Math.min(255, Math.abs(900 - x) >> 2) + (y & 1);
    const [w, h] = [500, 333];
    const ref = await sharp(Buffer.from(rgba), { raw: { width: 1800, height: 1200, channels: 4 } })
      .resize(w, h, { fit: 'fill', kernel: 'lanczos3' })
      .raw()
      .toBuffer();
    const { bgrx } = render({ data: rgba, width: 1800, height: 1200 }, IDENTITY, w, h, w, h);
    const want = compositeOverCheckerboard(new Uint8Array(ref), w, h);
    expectWithinProof(difference(area(bgrx, w, 0, 0, w, h), rgbOf(want, 4)));
  });

  it('renders only the visible part, and reuses a wider one while panning nearby', () => {
    const { renderer } = render(photo, IDENTITY, 1200, 800, 300, 200, -400, -300);
    expect(renderer.resamples).toBe(1);
    const pixels = new Int32Array(300 * 200);
    const view = {
      source: photo,
      sourceVersion: 1,
      transform: IDENTITY,
      scaledWidth: 1200,
      scaledHeight: 800,
    };
    renderer.render({ pixels, width: 300, height: 200 }, { ...view, left: -410, top: -305 });
    expect(renderer.resamples).toBe(2); // past the visible part: again, with margins
    const panned = pixels.slice();
    renderer.render({ pixels, width: 300, height: 200 }, { ...view, left: -450, top: -350 });
    renderer.render({ pixels, width: 300, height: 200 }, { ...view, left: -410, top: -305 });
    expect(renderer.resamples).toBe(2);
    expectIdentical(new Uint8Array(pixels.buffer), new Uint8Array(panned.buffer));
    renderer.render({ pixels, width: 300, height: 200 }, { ...view, left: -900, top: -600 });
    expect(renderer.resamples).toBe(3);
    // The same pixels as a fresh render of the whole view.
    const whole = render(photo, IDENTITY, 1200, 800, 1200, 800).bgrx;
    expect(area(new Uint8Array(pixels.buffer), 300, 0, 0, 300, 200)).toEqual(
      area(whole, 1200, 900, 600, 300, 200),
    );
  });
});

describe('fitted views end to end, as the VM shows them', () => {
  /** Opens `bytes` in a viewer on `monitor`, decoding as it asks; returns the image area and its size. */
  function openFitted(bytes: Uint8Array, monitor: { width: number; height: number }, keys: string[] = []) {
    const viewer = new ImageViewer({
      name: 'x',
      monitors: [{ x: 0, y: 0, ...monitor }],
      limits: decodeImageLimits,
    });
    let request = viewer.open(bytes);
    let update = viewer.decoded(decodeImage(bytes, request.limits, request.options), 0);
    for (const keysym of keys) {
      update = viewer.handle({ type: 'key', pressed: true, keysym, state: 0 }, 0);
      while (update.decode) {
        request = update.decode;
        update = viewer.decoded(decodeImage(bytes, request.limits, request.options), 0);
      }
    }
    const { left, top, zoom, transform } = viewer.view;
    const stored = /** the file's pixels */ decodeStill(bytes);
    const w = Math.round((transform.swap ? stored.height : stored.width) * zoom);
    const h = Math.round((transform.swap ? stored.width : stored.height) * zoom);
    return { image: area(viewer.render(), update.width, left, top, w, h), w, h, viewer };
  }
  const decodeImageLimits = defaultDecodeLimits;

  for (const [monitor, scale, size] of [
    [{ width: 800, height: 600 }, 1, [720, 480]], // 1/2.5: sharp decodes whole ("libjpeg rounding errors")
    [{ width: 640, height: 480 }, 2, [576, 384]], // 1/3.1: at 1/2
    [{ width: 333, height: 250 }, 4, [299, 199]], // 1/6: at 1/4
  ] as const) {
    it(`a JPEG fitted to ${size[0]}x${size[1]} is decoded at 1/${scale} and matches sharp’s shrink-on-load resize`, async () => {
      const bytes = read('jpeg/exif-orientation/Landscape_1.jpg');
      const { image, w, h, viewer } = openFitted(bytes, monitor);
      expect(viewer.decodedScale).toBe(scale);
      expect([w, h]).toEqual(size);
      const ref = await sharp(bytes).resize(w, h, { fit: 'fill', kernel: 'lanczos3' }).raw().toBuffer();
      expectWithinProof(difference(image, rgbOf(new Uint8Array(ref), 3)));
    });
  }

  for (const n of [3, 6, 8]) {
    it(`EXIF orientation ${n} fitted matches sharp’s rotate().resize()`, async () => {
      const bytes = read(`jpeg/exif-orientation/Landscape_${n}.jpg`);
      const { image, w, h } = openFitted(bytes, { width: 1280, height: 1024 });
      expect([w, h]).toEqual([1152, 768]);
      const ref = await sharp(bytes)
        .rotate()
        .resize(w, h, { fit: 'fill', kernel: 'lanczos3' })
        .raw()
        .toBuffer();
      expectWithinProof(difference(image, rgbOf(new Uint8Array(ref), 3)));
    });
  }

  it('rotated by the user, matches sharp’s rotate(90).resize()', async () => {
    const bytes = read('jpeg/exif-orientation/Landscape_1.jpg');
    const { image, w, h } = openFitted(bytes, { width: 1280, height: 1024 }, ['r']);
    expect([w, h]).toEqual([512, 768]); // the window stays 1152x768
    const ref = await sharp(bytes)
      .rotate(90)
      .resize(w, h, { fit: 'fill', kernel: 'lanczos3' })
      .raw()
      .toBuffer();
    expectWithinProof(difference(image, rgbOf(new Uint8Array(ref), 3)));
  });
});
