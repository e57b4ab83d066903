import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildGuestAddon,
  buildViewerImage,
  type LabSession,
  labSession,
  startViewerRun,
  type ViewerRun,
} from '@moat/lab';
import { compositeOverCheckerboard } from '@moat/viewer/app';
import { animationFixture } from '@moat/viewer/host';
import {
  delta,
  findExact,
  imageArea,
  playedInOrder,
  type Rgba,
  type Shot,
  shownFrame,
} from '@moat/viewer/lab';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * moat-viewer on real Xen: the VM's own image (its main and decode worker, as packaged) in a
 * PV domU; dom0 runs the QubesDB, qrexec and GUI daemons and calls qubes.OpenInVM as
 * qvm-open-in-dvm does, one file after the other, and qubes.GetImageRGBA as qvm-convert-img
 * does. Each window's screenshot (the lab GUI daemon's copy of what the VM shared) is compared
 * with sharp's decode of the same file. Every format is covered with a small image (CI share);
 * photos larger than the window are compared fitted with sharp.resize; MOAT_LAB_LONG=1 adds a
 * 6000 × 4000 JPEG. At the end dom0 destroys the disposable, as qubesd
 * does when the call's connection is terminated.
 */
const VM = 'moat-viewer-lab';
const MEMORY_MB = 256;
const WAIT = 900_000;
const LONG = process.env.MOAT_LAB_LONG === '1';
/** Still images: fitted at 100% (the viewer never enlarges an image of 128 pixels or more). */
const W = 160;
const H = 100;
/** The lab GUI daemon's screen: the window may take 90% of it, 576 × 432. */
const SCREEN = { width: 640, height: 480 };
/** Photos larger than that, shown fitted (zoom 0.72, 576 × 360). */
const PHOTO = { width: 800, height: 500 };
const FITTED = { width: 576, height: 360 };

let lab: LabSession;
let run: ViewerRun;
let dir: string;
const files: Record<string, Buffer> = {};

function pattern(width: number, height: number, channels: 3 | 4): Buffer {
  const out = Buffer.alloc(width * height * channels);
  for (let i = 0; i < width * height; i++) {
    const x = i % width;
    const y = Math.floor(i / width);
    out[i * channels] = (x * 13) & 0xff;
    out[i * channels + 1] = (y * 29) & 0xff;
    out[i * channels + 2] = (x * y) & 0xff;
    if (channels === 4) out[i * channels + 3] = (x * 5 + y * 3) & 0xff;
  }
  return out;
}

/** A 24-bit bottom-up BMP (BITMAPINFOHEADER) of an RGB buffer: sharp reads no BMP, so we write it. */
function bmp(rgb: Buffer, width: number, height: number): Buffer {
  const stride = (width * 3 + 3) & ~3;
  const out = Buffer.alloc(54 + stride * height);
  out.write('BM', 0, 'latin1');
  out.writeUInt32LE(out.length, 2);
  out.writeUInt32LE(54, 10);
  out.writeUInt32LE(40, 14);
  out.writeInt32LE(width, 18);
  out.writeInt32LE(height, 22);
  out.writeUInt16LE(1, 26);
  out.writeUInt16LE(24, 28);
  out.writeUInt32LE(stride * height, 34);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const s = (y * width + x) * 3;
      const d = 54 + (height - 1 - y) * stride + x * 3;
      out[d] = rgb[s + 2]!;
      out[d + 1] = rgb[s + 1]!;
      out[d + 2] = rgb[s]!;
    }
  }
  return out;
}

/** A PNG that claims 60000 × 60000 RGBA (13.4 GiB decoded) around a few bytes of data. */
async function bomb(): Promise<Buffer> {
  const small = await sharp(pattern(8, 8, 4), { raw: { width: 8, height: 8, channels: 4 } })
    .png()
    .toBuffer();
  // IHDR's width and height at bytes 16-23; its CRC (bytes 29-32) recomputed.
  small.writeUInt32BE(60000, 16);
  small.writeUInt32BE(60000, 20);
  const crc = (await import('node:zlib')).crc32(small.subarray(12, 29));
  small.writeUInt32BE(crc, 29);
  return small;
}

/** sharp's RGBA of `file` (EXIF orientation applied, turned), composited over the checkerboard. */
async function sharpView(file: Buffer, turn = 0): Promise<Rgba> {
  const { data, info } = await sharp(file)
    .rotate()
    .rotate(turn)
    .ensureAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return {
    width: info.width,
    height: info.height,
    rgba: compositeOverCheckerboard(data, info.width, info.height),
  };
}

/** The BMP's picture (sharp reads no BMP): the pattern it was written from, turned by sharp. */
async function bmpView(turn = 0): Promise<Rgba> {
  const { data, info } = await sharp(pattern(W, H, 3), { raw: { width: W, height: H, channels: 3 } })
    .rotate(turn)
    .ensureAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, rgba: data };
}

/**
 * A CMYK JPEG's view is within the decoder's documented mean of sharp (sharp converts CMYK
 * through an ICC profile, the decoder as browsers do: viewer/src/decoders/jpeg.test.ts, mean
 * <= 30 over RGBA samples; this file measures 20.4 there, 27.2 over RGB).
 */
const CMYK_MEAN = 30;

/** Still images, one per format (plus alpha, EXIF orientation and CMYK), each shown 1:1 and turned three times by `r`. */
const STILLS = [
  'png',
  'png-alpha',
  'jpeg',
  'jpeg-exif6',
  'jpeg-cmyk',
  'gif',
  'webp-lossy',
  'webp-lossless',
  'bmp',
] as const;

/** Animations: six different frames (alpha over the checkerboard) of 160 × 100, 600 ms each. */
const ANIMATIONS = ['gif', 'apng', 'webp'] as const;
const FRAMES = 6;
/**
 * Four frames played, then pause: its screenshot is taken once no frame came for 5 s (eight
 * frame delays), so each step key's draw is its own; six steps forward (the whole cycle, in the
 * file's order, back to the paused frame), one back.
 */
const ANIMATION_ACTIONS = [
  { frames: 4 },
  { key: 'space', quietMs: 5000 },
  ...Array.from({ length: FRAMES }, () => ({ key: 'period' })),
  { key: 'comma' },
];
const animationRefs: Partial<Record<(typeof ANIMATIONS)[number], Rgba[]>> = {};

/** Photos larger than the window, each shown fitted (resampled like sharp.resize's lanczos3). */
const PHOTOS = ['photo-png', 'photo-jpeg', 'photo-webp', 'photo-gif', 'photo-bmp'] as const;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'viewer-lab-'));
  const rgb = sharp(pattern(W, H, 3), { raw: { width: W, height: H, channels: 3 } });
  files.png = await rgb.clone().png().toBuffer();
  files['png-alpha'] = await sharp(pattern(W, H, 4), { raw: { width: W, height: H, channels: 4 } })
    .png()
    .toBuffer();
  files.jpeg = await rgb.clone().jpeg({ quality: 90 }).toBuffer();
  files['jpeg-exif6'] = await rgb.clone().jpeg({ quality: 90 }).withMetadata({ orientation: 6 }).toBuffer();
  files['jpeg-cmyk'] = await rgb.clone().toColourspace('cmyk').jpeg({ quality: 90 }).toBuffer();
  files.gif = await rgb.clone().gif().toBuffer();
  files['webp-lossy'] = await rgb.clone().webp({ quality: 80 }).toBuffer();
  files['webp-lossless'] = await rgb.clone().webp({ lossless: true }).toBuffer();
  files.bmp = bmp(pattern(W, H, 3), W, H);
  const photo = sharp(
    new URL('../viewer/fixtures/jpeg/exif-orientation/Landscape_1.jpg', import.meta.url).pathname,
  ).resize(PHOTO.width, PHOTO.height);
  files['photo-png'] = await photo.clone().png().toBuffer();
  files['photo-jpeg'] = await photo.clone().jpeg({ quality: 85 }).toBuffer();
  files['photo-webp'] = await photo.clone().webp({ quality: 80 }).toBuffer();
  files['photo-gif'] = await photo.clone().gif().toBuffer();
  const photoRgb = await photo.clone().removeAlpha().raw().toBuffer();
  files['photo-bmp'] = bmp(photoRgb, PHOTO.width, PHOTO.height);
  // Six different frames, 600 ms each, looping, as GIF, APNG and WebP (lossy, with alpha).
  for (const format of ANIMATIONS) {
    const fixture = await animationFixture(format, { width: W, height: H, delayMs: 600, frames: FRAMES });
    files[`anim-${format}`] = fixture.file;
    animationRefs[format] = fixture.frames.map((f) => ({
      width: W,
      height: H,
      rgba: compositeOverCheckerboard(f, W, H),
    }));
  }
  files.bomb = await bomb();
  if (LONG) {
    files.large = await sharp(
      new URL('../viewer/fixtures/jpeg/exif-orientation/Landscape_1.jpg', import.meta.url).pathname,
    )
      .resize(6000, 4000)
      .jpeg({ quality: 90 })
      .toBuffer();
  }
  const path = (name: string) => {
    const p = join(dir, name);
    writeFileSync(p, files[name]!);
    return p;
  };
  const addon = await buildGuestAddon();
  const image = await buildViewerImage(addon);
  lab = await labSession('viewer', { addon });
  run = await startViewerRun(lab, {
    image,
    vmName: VM,
    memoryMb: MEMORY_MB,
    screen: SCREEN,
    shotParts: 8,
    open: [
      {
        label: 'png',
        file: path('png'),
        name: 'pattern.png',
        actions: [{ key: 'r' }, { key: 'r' }, { key: 'r' }, { key: 'r' }, { key: 'R' }],
      },
      ...STILLS.filter((s) => s !== 'png').map((s) => ({
        label: s,
        file: path(s),
        name: `${s}.img`,
        actions: [{ key: 'r' }, { key: 'r' }, { key: 'r' }],
      })),
      {
        label: 'photo-png',
        file: path('photo-png'),
        name: 'photo.png',
        // 1:1, pan left, zoom out one wheel step at the centre, fit again.
        actions: [{ key: '1' }, { key: 'Left' }, { wheel: 'down' }, { key: 'f' }],
      },
      ...PHOTOS.filter((s) => s !== 'photo-png').map((s) => ({ label: s, file: path(s), name: `${s}.img` })),
      ...ANIMATIONS.map((format) => ({
        label: `anim-${format}`,
        file: path(`anim-${format}`),
        name: `animated.${format === 'apng' ? 'png' : format}`,
        actions: ANIMATION_ACTIONS,
      })),
      { label: 'bomb', file: path('bomb'), name: 'bomb.png' },
      ...(LONG ? [{ label: 'large', file: path('large'), name: 'large.jpg' }] : []),
    ],
    rgba: [{ label: 'png', file: path('png') }],
    timeoutMs: WAIT,
  });
});

afterAll(async () => {
  await lab?.end();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Fitted: the image area is sharp.resize's size, and within mean 1 / max 8 per channel of it. */
async function expectFitted(shot: Shot, file: Buffer): Promise<{ mean: number; max: number }> {
  const area = imageArea(shot);
  expect([area.width, area.height]).toEqual([FITTED.width, FITTED.height]);
  // Lanczos3 from the full decode, as the viewer resamples; sharp's shrink-on-load is kept for
  // JPEG only, where the viewer decodes at libjpeg's 1/2, 1/4, 1/8 as sharp does (for WebP
  // sharp would use libwebp's own scaler).
  const jpeg = file[0] === 0xff && file[1] === 0xd8;
  const { data, info } = await sharp(file)
    .resize(area.width, area.height, { fastShrinkOnLoad: jpeg })
    .ensureAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  const d = delta(shot, area, { width: info.width, height: info.height, rgba: data });
  expect(d.mean).toBeLessThanOrEqual(1);
  expect(d.max).toBeLessThanOrEqual(8);
  return d;
}

describe('moat-viewer in a domU, driven by dom0 as qvm-open-in-dvm and qvm-convert-img (lab)', () => {
  it('shows a PNG 1:1 exactly as sharp decodes it, turned a full turn by r and back by R; closing ends the call with exit 0', async () => {
    const { result, shots } = await run.open('png');
    const [first, ...turns] = shots as [Shot, Shot, Shot, Shot, Shot, Shot];
    console.log(`viewer lab: first frame ${result.firstFrameMs} ms after the call (${MEMORY_MB} MiB VM)`);
    expect(first.title).toBe(`pattern.png - ${W}x${H} - 100%`);
    const at = findExact(first, await sharpView(files.png!));
    expect(at).toBeDefined();
    // r four times: 90, 180, 270, 0 degrees clockwise; then R: 270.
    const angles = [90, 180, 270, 0, 270];
    for (const [i, angle] of angles.entries()) {
      const shot = turns[i]!;
      expect(shot.title, `after key ${i + 1}`).toBe(
        angle % 180 ? `pattern.png - ${H}x${W} - 100%` : `pattern.png - ${W}x${H} - 100%`,
      );
      expect(findExact(shot, await sharpView(files.png!, angle)), `turned ${angle}`).toBeDefined();
    }
    expect(findExact(turns[3]!, await sharpView(files.png!))).toEqual(at);
    expect(result).toMatchObject({ exitCode: 0, stdoutBytes: 0, terminated: true });
  });

  for (const still of STILLS.filter((s) => s !== 'png')) {
    const how =
      still === 'jpeg-cmyk'
        ? `within the decoder's documented mean (${CMYK_MEAN}) of sharp`
        : 'exactly as sharp decodes it';
    it(`shows ${still} 1:1 ${how}${still === 'png-alpha' ? ', over the checkerboard' : ''}${still === 'jpeg-exif6' ? ', EXIF orientation applied' : ''}, and turned 90, 180 and 270 degrees by r`, async () => {
      const { result, shots } = await run.open(still);
      expect(shots).toHaveLength(4);
      for (const [i, shot] of shots.entries()) {
        const angle = i * 90;
        const want = still === 'bmp' ? await bmpView(angle) : await sharpView(files[still]!, angle);
        if (still === 'jpeg-exif6' && angle === 0) expect([want.width, want.height]).toEqual([H, W]);
        expect(shot.title, `turned ${angle}`).toBe(`${still}.img - ${want.width}x${want.height} - 100%`);
        if (still === 'jpeg-cmyk') {
          const area = imageArea(shot);
          expect([area.width, area.height], `turned ${angle}`).toEqual([want.width, want.height]);
          const d = delta(shot, area, want);
          if (angle === 0)
            console.log(`viewer lab: CMYK JPEG vs sharp: mean ${d.mean.toFixed(2)}, max ${d.max}`);
          expect(d.mean, `turned ${angle}`).toBeLessThanOrEqual(CMYK_MEAN);
        } else {
          expect(findExact(shot, want), `turned ${angle}`).toBeDefined();
        }
      }
      expect(result).toMatchObject({ exitCode: 0, terminated: true });
    });
  }

  it('fits a larger photo (PNG) like sharp.resize; 1 shows it 1:1, Left pans, the wheel zooms out, f fits again', async () => {
    const { result, shots } = await run.open('photo-png');
    const [fitted, actual, panned, zoomedOut, refitted] = shots as [Shot, Shot, Shot, Shot, Shot];
    const d = await expectFitted(fitted, files['photo-png']!);
    console.log(`viewer lab: fitted photo.png vs sharp.resize: mean ${d.mean.toFixed(3)}, max ${d.max}`);
    expect(fitted.title).toBe('photo.png - 800x500 - 72%');
    const full = await sharpView(files['photo-png']!);
    // 1:1: the window is a crop of the photo, pixel for pixel; panning left shows more of its left.
    expect(actual.title).toBe('photo.png - 800x500 - 100%');
    const crop = findExact(full, actual);
    expect(crop).toBeDefined();
    const after = findExact(full, panned);
    expect(after).toBeDefined();
    expect(after!.x).toBeLessThan(crop!.x);
    expect(after!.y).toBe(crop!.y);
    expect(zoomedOut.title).toBe('photo.png - 800x500 - 84%');
    expect(refitted.title).toBe(fitted.title);
    expect(Buffer.from(refitted.rgba).equals(Buffer.from(fitted.rgba))).toBe(true);
    expect(result).toMatchObject({ exitCode: 0, terminated: true });
  });

  for (const photo of PHOTOS.filter((s) => s !== 'photo-png')) {
    it(`fits ${photo} like sharp.resize (mean |delta| <= 1, max <= 8)`, async () => {
      const { result, shots } = await run.open(photo);
      // sharp reads no BMP: the PNG of the same pixels stands for it.
      const d = await expectFitted(shots[0]!, files[photo === 'photo-bmp' ? 'photo-png' : photo]!);
      console.log(`viewer lab: fitted ${photo} vs sharp.resize: mean ${d.mean.toFixed(3)}, max ${d.max}`);
      expect(result).toMatchObject({ exitCode: 0, terminated: true });
    });
  }

  for (const format of ANIMATIONS) {
    it(`plays an animated ${format === 'apng' ? 'APNG' : format === 'gif' ? 'GIF' : 'WebP (lossy, alpha)'}: each frame exactly as ${format === 'apng' ? 'written' : 'sharp decodes it'}, in order; space pauses, . and , step`, async () => {
      const { result, shots } = await run.open(`anim-${format}`);
      const frames = animationRefs[format]!;
      const seen = shots.slice(0, 5).map((s) => shownFrame(s, frames));
      // Played: every screenshot one of the frames, forwards (a frame may repeat or, read late
      // by the daemon, be skipped: at most one in a row).
      expect(playedInOrder(seen, FRAMES, 1), `${seen}`).toBe(true);
      expect(new Set(seen).size, `${seen}`).toBeGreaterThan(1);
      // Paused, then stepped: each frame in the file's order, exactly.
      const [paused, ...steps] = shots.slice(5).map((s) => shownFrame(s, frames)) as number[];
      expect(paused, `${seen}`).toBeGreaterThanOrEqual(0);
      expect(steps).toEqual([
        ...Array.from({ length: FRAMES }, (_, i) => (paused! + i + 1) % FRAMES),
        (paused! + FRAMES - 1) % FRAMES,
      ]);
      expect(shots[0]!.title).toBe(`animated.${format === 'apng' ? 'png' : format} - ${W}x${H} - 100%`);
      expect(result).toMatchObject({ exitCode: 0, terminated: true });
    });
  }

  it('refuses a decompression bomb with the reason written in its window; the call still ends with 0', async () => {
    const { result, shots } = await run.open('bomb');
    expect(shots[0]!.title).toBe('bomb.png - cannot open');
    expect(imageArea(shots[0]!).width).toBeGreaterThan(100); // text on the window background
    // The VM's log reaches the host through its console, apart from the call's result: wait for it.
    expect(await run.vm.consoleLine(/moat-viewer: bomb\.png: refused/, { timeoutMs: 120_000 })).toMatch(
      /60000/,
    );
    expect(result).toMatchObject({ exitCode: 0, terminated: true });
  });

  it.runIf(LONG)(`opens a 24-megapixel JPEG in a ${MEMORY_MB} MiB VM`, async () => {
    const { result, shots } = await run.open('large');
    expect(shots[0]!.title).toMatch(/^large\.jpg - 6000x4000 - /);
    expect(result.exitCode).toBe(0);
  });

  it('answers qubes.GetImageRGBA with "<w> <h>\\n" and the pixels sharp decodes', async () => {
    const got = await run.rgba('png');
    const want = await sharp(files.png!).ensureAlpha().raw().toBuffer();
    expect(got).toMatchObject({ exitCode: 0, width: W, height: H, extraBytes: 0 });
    expect(got.sha256).toBe(createHash('sha256').update(want).digest('hex'));
  });

  it('dom0 destroys the disposable after its calls, and it is gone', async () => {
    expect(await run.destroyed()).toEqual({ destroyExit: 0, listedAfter: false });
    const ended = await run.vm.finished({ timeoutMs: WAIT });
    expect(ended.ending).toMatch(/destroy/);
    console.log(`viewer lab VM log:\n${run.vmLog().join('\n')}`);
  });
});
