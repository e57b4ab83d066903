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
import type { Shot } from '@moat/viewer/lab';
import { checkerGrey, over } from '@moat/viewer/vm';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * moat-viewer on real Xen: the VM's own image (its main and decode worker, as packaged) in a
 * PV domU; dom0 runs the QubesDB, qrexec and GUI daemons and calls qubes.OpenInVM as
 * qvm-open-in-dvm does, one file after the other, and qubes.GetImageRGBA as qvm-convert-img
 * does. Each window's screenshot (the lab GUI daemon's copy of what the VM shared) is compared
 * with sharp's decode of the same file. Every format is covered with a small image (CI share);
 * MOAT_LAB_LONG=1 adds a 6000 × 4000 JPEG. At the end dom0 destroys the disposable, as qubesd
 * does when the call's connection is terminated.
 */
const VM = 'moat-viewer-lab';
const MEMORY_MB = 256;
const WAIT = 900_000;
const LONG = process.env.MOAT_LAB_LONG === '1';
const W = 48;
const H = 32;

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

/** What the window shows at 1:1 from its top left: sharp's RGBA (auto-oriented, turned) over the checkerboard. */
async function expected(file: Buffer, window: { width: number; height: number }, turn = 0): Promise<Buffer> {
  const { data, info } = await sharp(file)
    .rotate()
    .rotate(turn)
    .ensureAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  const out = Buffer.alloc(window.width * window.height * 4);
  for (let y = 0; y < window.height; y++) {
    for (let x = 0; x < window.width; x++) {
      const o = (y * window.width + x) * 4;
      const grey = checkerGrey(x, y);
      if (x >= info.width || y >= info.height) {
        out.fill(grey, o, o + 3);
      } else {
        const s = (y * info.width + x) * 4;
        const a = data[s + 3]!;
        for (let c = 0; c < 3; c++) out[o + c] = a === 255 ? data[s + c]! : over(data[s + c]!, a, grey);
      }
      out[o + 3] = 255;
    }
  }
  return out;
}

/** Pixels whose RGB differ, with the first few, so a failure shows where. */
function differences(shot: Shot, want: Buffer): { count: number; first: string[] } {
  const first: string[] = [];
  let count = 0;
  for (let i = 0; i < want.length; i += 4) {
    if (shot.rgba[i] !== want[i] || shot.rgba[i + 1] !== want[i + 1] || shot.rgba[i + 2] !== want[i + 2]) {
      count++;
      if (first.length < 5)
        first.push(
          `${(i / 4) % shot.width},${Math.floor(i / 4 / shot.width)}: ${[...shot.rgba.subarray(i, i + 3)]} vs ${[...want.subarray(i, i + 3)]}`,
        );
    }
  }
  return { count, first };
}

/** Still images, one per format (plus alpha and EXIF orientation), each shown 1:1. */
const STILLS = [
  'png',
  'png-alpha',
  'jpeg',
  'jpeg-exif6',
  'gif',
  'webp-lossy',
  'webp-lossless',
  'bmp',
] as const;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'viewer-lab-'));
  const rgb = sharp(pattern(W, H, 3), { raw: { width: W, height: H, channels: 3 } });
  files.png = await rgb.clone().png().toBuffer();
  files['png-alpha'] = await sharp(pattern(W, H, 4), { raw: { width: W, height: H, channels: 4 } })
    .png()
    .toBuffer();
  files.jpeg = await rgb.clone().jpeg({ quality: 90 }).toBuffer();
  files['jpeg-exif6'] = await rgb.clone().jpeg({ quality: 90 }).withMetadata({ orientation: 6 }).toBuffer();
  files.gif = await rgb.clone().gif().toBuffer();
  files['webp-lossy'] = await rgb.clone().webp({ quality: 80 }).toBuffer();
  files['webp-lossless'] = await rgb.clone().webp({ lossless: true }).toBuffer();
  files.bmp = bmp(pattern(W, H, 3), W, H);
  // Three flat frames (red, green, blue), 300 ms each, looping.
  const frames = Buffer.alloc(16 * 36 * 3);
  [
    [255, 0, 0],
    [0, 255, 0],
    [0, 0, 255],
  ].forEach((c, f) => {
    for (let i = 0; i < 16 * 12; i++) frames.set(c, (f * 16 * 12 + i) * 3);
  });
  files.animated = await sharp(frames, {
    raw: { width: 16, height: 36, channels: 3, pageHeight: 12 } as never,
  })
    .gif({ delay: [300, 300, 300], loop: 0 })
    .toBuffer();
  files.bomb = await bomb();
  if (LONG) {
    files.large = await sharp(pattern(1500, 1000, 3), { raw: { width: 1500, height: 1000, channels: 3 } })
      .resize(6000, 4000, { kernel: 'nearest' })
      .jpeg({ quality: 85 })
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
    shotParts: LONG ? 12 : 1,
    open: [
      { label: 'png', file: path('png'), name: 'pattern.png', actions: [{ key: 'r' }, { key: 'R' }] },
      ...STILLS.filter((s) => s !== 'png').map((s) => ({ label: s, file: path(s), name: `${s}.img` })),
      { label: 'animated', file: path('animated'), name: 'animated.gif', actions: [{ frames: 3 }] },
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

describe('moat-viewer in a domU, driven by dom0 as qvm-open-in-dvm and qvm-convert-img (lab)', () => {
  it('shows a PNG 1:1 exactly as sharp decodes it, turned both ways by keys; closing ends the call with exit 0', async () => {
    const { result, shots } = await run.open('png');
    const [first, turned, back] = shots as [Shot, Shot, Shot];
    console.log(`viewer lab: first frame ${result.firstFrameMs} ms after the call (${MEMORY_MB} MiB VM)`);
    expect(first.title).toBe(`pattern.png - ${W}x${H} - 100%`);
    expect(differences(first, await expected(files.png!, first))).toEqual({ count: 0, first: [] });
    expect(turned.title).toBe(`pattern.png - ${H}x${W} - 100%`);
    expect(differences(turned, await expected(files.png!, turned, 90))).toEqual({ count: 0, first: [] });
    expect(differences(back, await expected(files.png!, back))).toEqual({ count: 0, first: [] });
    expect(result).toMatchObject({ exitCode: 0, stdoutBytes: 0, terminated: true });
  });

  for (const still of STILLS.filter((s) => s !== 'png')) {
    it(`shows ${still} 1:1 exactly as sharp decodes it${still === 'png-alpha' ? ' over the checkerboard' : ''}${still === 'jpeg-exif6' ? ' with its EXIF orientation applied' : ''}`, async () => {
      const { result, shots } = await run.open(still);
      const shot = shots[0]!;
      const turned = still === 'jpeg-exif6';
      expect([shot.width, shot.height]).toEqual(turned ? [H, W] : [W, H]);
      expect(differences(shot, await expected(files[still]!, shot))).toEqual({ count: 0, first: [] });
      expect(result).toMatchObject({ exitCode: 0, terminated: true });
    });
  }

  it('plays an animated GIF: the frames in order, with their delays', async () => {
    const { result, shots } = await run.open('animated');
    const colour = (s: Shot) => [...s.rgba.subarray(0, 3)].join(',');
    expect(shots.map(colour)).toEqual(['255,0,0', '0,255,0', '0,0,255', '255,0,0']);
    for (const s of shots)
      expect(
        differences(s, Buffer.from(s.rgba.subarray(0, 4).toString().length ? s.rgba : s.rgba)).count,
      ).toBe(0);
    expect(result).toMatchObject({ exitCode: 0, terminated: true });
  });

  it('refuses a decompression bomb with the reason in its window, and the call still ends with 0', async () => {
    const { result, shots } = await run.open('bomb');
    expect(shots[0]!.title).toMatch(/^bomb\.png - not shown: .*60000/);
    expect(result).toMatchObject({ exitCode: 0, terminated: true });
  });

  it.runIf(LONG)('opens a 24-megapixel JPEG in a 256 MiB VM (reduced to the window)', async () => {
    const { result, shots } = await run.open('large');
    expect(shots[0]!.title).toBe('large.jpg - 6000x4000 - 25%');
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
