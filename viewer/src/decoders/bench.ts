/**
 * Decode speed of our decoders against sharp (libvips) on the same bytes in the same run.
 * Host-only (imports sharp). sharp runs with concurrency 1: our decoders use one thread.
 * Times are process CPU time (user + system, `process.cpuUsage`), the minimum over the
 * repetitions: the build machines are shared, and CPU time with a minimum is far less
 * disturbed by other load than wall-clock time.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { FrameCompositor } from './compose.ts';
import { decodeImage } from './decode.ts';
import type { ImageFormat, ScaleDenominator } from './types.ts';

export interface BenchCase {
  name: string;
  format: ImageFormat;
  /** The row it is summed into (the format unless given: WebP lossy and lossless apart). */
  row?: string;
  bytes: Uint8Array;
}

export interface BenchRow {
  /** Format, or format and variant ("webp lossy"). */
  row: string;
  format: ImageFormat;
  files: number;
  megapixels: number;
  oursMs: number;
  sharpMs: number | null;
  /** Our speed as a fraction of sharp's (sharpMs / oursMs); 1/3 is the aim for PNG and JPEG. */
  speedVsSharp: number | null;
  oursMpPerS: number;
}

/** The corpus cases, plus large PNG/GIF made from a corpus photo (the corpora's PNGs and
 *  GIFs are all tiny, which would only measure per-call overhead). */
export async function benchCases(fixtures: string): Promise<BenchCase[]> {
  const file = (path: string) => new Uint8Array(readFileSync(join(fixtures, path)));
  const photo = file('jpeg/exif-orientation/Landscape_1.jpg');
  const photoPng = await sharp(photo).png({ compressionLevel: 6 }).toBuffer();
  const photoPngAlpha = await sharp(photo).ensureAlpha(0.5).png({ compressionLevel: 9 }).toBuffer();
  const photoPngInterlaced = await sharp(photo).png({ progressive: true }).toBuffer();
  const photoGif = await sharp(photo).resize(900).gif().toBuffer();
  const photoProgressive = await sharp(photo).jpeg({ progressive: true, quality: 85 }).toBuffer();
  const photoWebp = await sharp(photo).webp({ quality: 80 }).toBuffer();
  const photoWebpAlpha = await sharp(photo).ensureAlpha(0.7).webp({ quality: 80 }).toBuffer();
  const photoWebpLossless = await sharp(photo).webp({ lossless: true }).toBuffer();
  const photoWebpPalette = await sharp(photo)
    .resize(900)
    .webp({ lossless: true, nearLossless: true, quality: 40 })
    .toBuffer();
  return [
    { name: 'Landscape_1.png (1800×1200 RGB, derived)', format: 'png', bytes: photoPng },
    { name: 'Landscape_1 RGBA (derived, level 9)', format: 'png', bytes: photoPngAlpha },
    { name: 'Landscape_1 Adam7 (derived)', format: 'png', bytes: photoPngInterlaced },
    { name: 'pngsuite basn6a16.png', format: 'png', bytes: file('png/pngsuite/basn6a16.png') },
    { name: 'Landscape_1.jpg (1800×1200 baseline 4:2:0)', format: 'jpeg', bytes: photo },
    { name: 'Landscape_1 progressive (derived)', format: 'jpeg', bytes: photoProgressive },
    {
      name: 'jpeg-js unconventional-table.jpg',
      format: 'jpeg',
      bytes: file('jpeg/jpeg-js-fixtures/unconventional-table.jpg'),
    },
    { name: 'jpeg-js truecolor.jpg', format: 'jpeg', bytes: file('jpeg/jpeg-js-fixtures/truecolor.jpg') },
    { name: 'Landscape_1 900×600 GIF (derived)', format: 'gif', bytes: photoGif },
    {
      name: 'gif-test-suite animated_loop.gif',
      format: 'gif',
      bytes: file('gif/gif-test-suite/animated_loop.gif'),
    },
    { name: 'Landscape_1 WebP q80 (derived)', format: 'webp', row: 'webp lossy', bytes: photoWebp },
    {
      name: 'Landscape_1 WebP q80 + alpha (derived)',
      format: 'webp',
      row: 'webp lossy',
      bytes: photoWebpAlpha,
    },
    {
      name: 'Landscape_1 WebP lossless (derived)',
      format: 'webp',
      row: 'webp lossless',
      bytes: photoWebpLossless,
    },
    {
      name: 'Landscape_1 900×600 WebP near-lossless (derived)',
      format: 'webp',
      row: 'webp lossless',
      bytes: photoWebpPalette,
    },
    { name: 'image-rs V5_24_Bit.bmp', format: 'bmp', bytes: file('bmp/image-rs/V5_24_Bit.bmp') },
    { name: 'image-rs Core_8_Bit.bmp', format: 'bmp', bytes: file('bmp/image-rs/Core_8_Bit.bmp') },
  ];
}

const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

async function timeSharp(bytes: Uint8Array, reps: number): Promise<number> {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < reps; i++) {
    const start = cpuMs();
    await sharp(bytes, { limitInputPixels: false, animated: true }).ensureAlpha().raw().toBuffer();
    best = Math.min(best, cpuMs() - start);
  }
  return best;
}

function timeOurs(bytes: Uint8Array, reps: number): { ms: number; pixels: number } {
  let pixels = 0;
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < reps; i++) {
    const start = cpuMs();
    const result = decodeImage(bytes, { maxPixels: 1e9, maxTotalBytes: 4 * 2 ** 30, deadlineMs: 600_000 });
    if (!result.ok) throw new Error(`bench input refused: ${result.reason}`);
    // Every frame composed, as sharp gives them (animations are stored as layers).
    const compositor = new FrameCompositor(result.image);
    for (let f = 0; f < result.image.frames.length; f++) compositor.frame(f);
    best = Math.min(best, cpuMs() - start);
    pixels = result.image.width * result.image.height * result.image.frames.length;
  }
  return { ms: best, pixels };
}

/** Per format: summed best decode time of each decoder over its cases (after one warm-up each). */
export async function benchDecoders(cases: readonly BenchCase[], reps = 5): Promise<BenchRow[]> {
  sharp.concurrency(1);
  sharp.cache(false);
  const rows = new Map<string, BenchRow>();
  for (const c of cases) {
    const key = c.row ?? c.format;
    const row = rows.get(key) ?? {
      row: key,
      format: c.format,
      files: 0,
      megapixels: 0,
      oursMs: 0,
      sharpMs: c.format === 'bmp' ? null : 0,
      speedVsSharp: null,
      oursMpPerS: 0,
    };
    timeOurs(c.bytes, 1);
    const ours = timeOurs(c.bytes, reps);
    row.files++;
    row.megapixels += ours.pixels / 1e6;
    row.oursMs += ours.ms;
    if (row.sharpMs !== null) {
      await timeSharp(c.bytes, 1);
      row.sharpMs += await timeSharp(c.bytes, reps);
    }
    rows.set(key, row);
  }
  for (const row of rows.values()) {
    row.oursMpPerS = row.megapixels / (row.oursMs / 1000);
    if (row.sharpMs !== null) row.speedVsSharp = row.sharpMs / row.oursMs;
  }
  return [...rows.values()];
}

export interface ScaledBenchRow {
  name: string;
  scale: ScaleDenominator;
  /** Output size. */
  size: string;
  /** Best decode CPU time over the repetitions, milliseconds. */
  ms: number;
  /** Peak RSS of a process that decoded it, minus that of one that only read the file, MB. */
  peakMb: number;
}

/**
 * 24-megapixel stills (6000×4000, made from a corpus photo) decoded at full size and at
 * 1/4 (what a 1920×1080 window needs), each decode in a process of its own so that its
 * peak memory is measured.
 */
export async function benchScaled(fixtures: string, reps = 3): Promise<ScaledBenchRow[]> {
  const photo = readFileSync(join(fixtures, 'jpeg/exif-orientation/Landscape_1.jpg'));
  const large = sharp(photo).resize(6000, 4000);
  const cases: [string, Uint8Array][] = [
    ['JPEG 6000×4000 baseline 4:2:0', await large.clone().jpeg({ quality: 90 }).toBuffer()],
    ['JPEG 6000×4000 progressive', await large.clone().jpeg({ quality: 90, progressive: true }).toBuffer()],
    ['PNG 6000×4000 RGB', await large.clone().png({ compressionLevel: 6 }).toBuffer()],
  ];
  const child = fileURLToPath(new URL('./bench-memory.ts', import.meta.url));
  const folder = mkdtempSync(join(tmpdir(), 'moat-bench-'));
  const run = (bytes: Uint8Array, args: string[]) => {
    const path = join(folder, 'input');
    writeFileSync(path, bytes);
    const out = execFileSync(process.execPath, [...process.execArgv, child, path, ...args], {
      maxBuffer: 1 << 20,
    });
    return JSON.parse(out.toString()) as { maxRssKb: number; cpuMs: number; size: string };
  };
  const rows: ScaledBenchRow[] = [];
  run(new Uint8Array(0), ['none']); // warm-up: tsx compiles and caches the modules once
  for (const [name, bytes] of cases) {
    let baseline = Number.POSITIVE_INFINITY;
    for (let i = 0; i < reps; i++) baseline = Math.min(baseline, run(bytes, ['none']).maxRssKb);
    for (const scale of [1, 4] as const) {
      let ms = Number.POSITIVE_INFINITY;
      let peakKb = Number.POSITIVE_INFINITY;
      let size = '';
      for (let i = 0; i < reps; i++) {
        const r = run(bytes, ['decode', String(scale)]);
        ms = Math.min(ms, r.cpuMs);
        peakKb = Math.min(peakKb, r.maxRssKb - baseline);
        size = r.size;
      }
      rows.push({ name, scale, size, ms, peakMb: peakKb / 1024 });
    }
  }
  rmSync(folder, { recursive: true, force: true });
  return rows;
}
