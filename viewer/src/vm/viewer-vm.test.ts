import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { socketVchanTransport } from '@moat/vchan/socket';
import { SimHypervisor } from '@moat/xen/sim';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compositeOverCheckerboard } from '../app/render.ts';
import { animationFixture } from '../decoders/testing/animations.ts';
import { pngChunk } from '../decoders/testing/png-chunk.ts';
import { delta, findExact, imageArea, playedInOrder, type Rgba, shownFrame } from '../lab/compare.ts';
import { ViewerDom0 } from '../lab/dom0.ts';
import { startViewerVm, type ViewerVm } from './viewer-vm.ts';

/**
 * The whole VM on the host: startViewerVm over unix-socket vchan and sim grants, against
 * dom0's side (QubesDB, qrexec and GUI daemons) as the lab runs it on Xen.
 */
const MiB = 1024 * 1024;
let directory: string;
let vm: ViewerVm;
let dom0: ViewerDom0;

function pattern(width: number, height: number): Buffer {
  const out = Buffer.alloc(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    const x = i % width;
    const y = Math.floor(i / width);
    out[i * 3] = (x * 13) & 0xff;
    out[i * 3 + 1] = (y * 29) & 0xff;
    out[i * 3 + 2] = (x * y) & 0xff;
  }
  return out;
}

/** sharp's RGBA of `file` (auto-oriented, turned). */
async function sharpRgba(file: Buffer, turn = 0): Promise<Rgba> {
  const { data, info } = await sharp(file)
    .rotate()
    .rotate(turn)
    .ensureAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, rgba: data };
}

beforeAll(async () => {
  directory = mkdtempSync(join(tmpdir(), 'viewer-vm-'));
  const hv = new SimHypervisor({ gntallocLimit: 65536 });
  const domain = hv.createDomain({ name: 'disp1234' });
  const started = startViewerVm({
    transport: socketVchanTransport({ directory, localDomain: domain.domid }),
    grants: domain.grantSharer,
    memoryBytes: 400 * MiB,
    connectTimeoutMs: 20_000,
  });
  dom0 = await ViewerDom0.start({
    transport: socketVchanTransport({ directory, localDomain: 0 }),
    grants: hv.dom0.grantMapper,
    vmDomain: domain.domid,
    vmName: 'disp1234',
    screen: { width: 640, height: 480 },
    waitMs: 20_000,
  });
  vm = await started;
}, 60_000);

afterAll(async () => {
  await dom0?.stop();
  await vm?.stop();
  rmSync(directory, { recursive: true, force: true });
}, 30_000);

describe('moat-viewer on the host (sim grants, unix-socket vchan) against the lab dom0 side', () => {
  it('qubes.OpenInVM shows a PNG 1:1 and turned, exactly as sharp decodes it; closing ends the call with 0', async () => {
    const png = await sharp(pattern(160, 100), { raw: { width: 160, height: 100, channels: 3 } })
      .png()
      .toBuffer();
    const report = await dom0.openInVm('pattern.png', png, [{ key: 'r' }, { key: 'R' }]);
    expect(report.first.title).toBe('pattern.png - 160x100 - 100%');
    expect(findExact(report.first, await sharpRgba(png))).toBeDefined();
    const turned = report.after[0]!;
    expect(turned.title).toBe('pattern.png - 100x160 - 100%');
    expect(findExact(turned, await sharpRgba(png, 90))).toBeDefined();
    expect(findExact(report.after[1]!, await sharpRgba(png))).toEqual(
      findExact(report.first, await sharpRgba(png)),
    );
    expect(report).toMatchObject({ exitCode: 0, stdoutBytes: 0, terminated: true });
    expect(vm.served.at(-1)).toMatchObject({ service: 'qubes.OpenInVM', name: 'pattern.png', shown: true });
  });

  it('fits a larger photo like sharp.resize; 1, Left, the wheel and f change the view', async () => {
    const photo = await sharp(
      new URL('../../fixtures/jpeg/exif-orientation/Landscape_1.jpg', import.meta.url).pathname,
    )
      .resize(800, 500)
      .png()
      .toBuffer();
    const report = await dom0.openInVm('photo.png', photo, [
      { key: '1' },
      { key: 'Left' },
      { wheel: 'down' },
      { key: 'f' },
    ]);
    const [fitted, actual, panned, zoomedOut, refitted] = [report.first, ...report.after];
    const area = imageArea(fitted!);
    expect(area).toEqual({ x: 0, y: 0, width: 576, height: 360 });
    const resized = await sharp(photo).resize(576, 360).ensureAlpha().raw().toBuffer();
    const d = delta(fitted!, area, { width: 576, height: 360, rgba: resized });
    expect(d.mean).toBeLessThanOrEqual(1);
    expect(d.max).toBeLessThanOrEqual(8);
    expect(fitted!.title).toBe('photo.png - 800x500 - 72%');
    const full = await sharpRgba(photo);
    expect(actual!.title).toBe('photo.png - 800x500 - 100%');
    const crop = findExact(full, actual!);
    const after = findExact(full, panned!);
    expect(after!.x).toBeLessThan(crop!.x);
    expect(zoomedOut!.title).toBe('photo.png - 800x500 - 84%');
    expect(Buffer.from(refitted!.rgba).equals(Buffer.from(fitted!.rgba))).toBe(true);
    expect(report).toMatchObject({ exitCode: 0, terminated: true });
  });

  it('a decompression bomb is refused with the reason in the window, and the call still ends with 0', async () => {
    // IHDR 60000 x 60000 RGBA and a few bytes of IDAT: 13.4 GiB if it were decoded.
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(60000, 0);
    ihdr.writeUInt32BE(60000, 4);
    ihdr[8] = 8;
    ihdr[9] = 6;
    const bomb = Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      pngChunk('IHDR', ihdr),
      pngChunk('IDAT', Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01])),
      pngChunk('IEND', Buffer.alloc(0)),
    ]);
    const report = await dom0.openInVm('bomb.png', bomb);
    expect(report.first.title).toBe('bomb.png - cannot open');
    // The reason is written in the window (text on the background).
    expect(imageArea(report.first).width).toBeGreaterThan(100);
    expect(vm.served.at(-1)?.reason).toMatch(/60000/);
    expect(report).toMatchObject({ exitCode: 0, terminated: true });
    expect(vm.served.at(-1)).toMatchObject({ name: 'bomb.png', shown: false });
  });

  for (const format of ['gif', 'apng', 'webp'] as const) {
    it(`plays an animated ${format}: each frame as sharp decodes it, in order; space pauses, . and , step`, async () => {
      const fixture = await animationFixture(format, { width: 160, height: 100, delayMs: 100, frames: 6 });
      const frames = fixture.frames.map((f) => ({
        width: fixture.width,
        height: fixture.height,
        rgba: compositeOverCheckerboard(f, fixture.width, fixture.height),
      }));
      // Paused: no frame follows within ten frame delays (so each step key's draw is its own).
      const report = await dom0.openInVm(`anim.${format}`, fixture.file, [
        { frames: 4 },
        { key: 'space', quietMs: 1000 },
        ...Array.from({ length: 6 }, () => ({ key: 'period' })),
        { key: 'comma' },
      ]);
      const seen = [report.first, ...report.after.slice(0, 4)].map((s) => shownFrame(s, frames));
      expect(playedInOrder(seen, 6, 1), `${seen}`).toBe(true);
      expect(new Set(seen).size, `${seen}`).toBeGreaterThan(1);
      const [paused, ...steps] = report.after.slice(4).map((s) => shownFrame(s, frames)) as number[];
      expect(paused, `${seen}`).toBeGreaterThanOrEqual(0);
      expect(steps).toEqual([1, 2, 3, 4, 5, 6, 5].map((i) => (paused! + i) % 6));
      expect(report).toMatchObject({ exitCode: 0, terminated: true });
    });
  }

  it('qubes.GetImageRGBA answers "<w> <h>\\n" and the RGBA sharp decodes', async () => {
    const png = await sharp(pattern(19, 11), { raw: { width: 19, height: 11, channels: 3 } })
      .png()
      .toBuffer();
    const got = await dom0.getImageRgba(png);
    const expected = await sharpRgba(png);
    expect(got).toMatchObject({ exitCode: 0, width: 19, height: 11, extraBytes: 0 });
    expect(Buffer.from(got.rgba).equals(expected.rgba)).toBe(true);
    const refused = await dom0.getImageRgba(Buffer.from('not an image'));
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toMatch(/not a PNG, JPEG, GIF, BMP or WebP image/);
  });
});
