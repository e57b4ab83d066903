/**
 * moat-viewer in the lab from the command line: `moat view` (open files as qvm-open-in-dvm does,
 * save the window as PNG) and `moat bench viewer` (first-frame time, VM memory, the least memory
 * for a 24-megapixel JPEG). Shared with `moat demo`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { benchViewer, type ViewOutcome, viewInLab } from '@moat/lab';
import { openedAtMemory } from '@moat/viewer/host';
import type { Shot, ViewAction } from '@moat/viewer/lab';
import sharp from 'sharp';
import { SetupProblem } from '../errors.ts';
import type { Reporter } from '../output.ts';
import { labFailure } from './lab-bench.ts';

/**
 * `--keys`: comma-separated X keysym names (`r`, `R`, `plus`, `Left`, `space`), `wheel-up`,
 * `wheel-down`, or `frames:N` (the next N animation frames). One screenshot after each;
 * `KEY~MS` takes it once no frame came for MS ms (`space~3000`: the animation paused).
 */
export function parseKeys(text: string | undefined): ViewAction[] {
  if (!text) return [];
  return text.split(',').map((item): ViewAction => {
    const k = item.trim();
    if (k === 'wheel-up' || k === 'wheel-down') return { wheel: k === 'wheel-up' ? 'up' : 'down' };
    const frames = /^frames:(\d{1,3})$/.exec(k);
    if (frames) return { frames: Number(frames[1]) };
    const quiet = /^([A-Za-z0-9_]{1,32})~(\d{1,6})$/.exec(k);
    if (quiet) return { key: quiet[1]!, quietMs: Number(quiet[2]) };
    if (!/^[A-Za-z0-9_]{1,32}$/.test(k))
      throw new SetupProblem(`--keys: ${JSON.stringify(k)} is not a keysym name`);
    return { key: k };
  });
}

export async function writeShotPng(shot: Shot, file: string): Promise<void> {
  mkdirSync(dirname(file), { recursive: true });
  const png = await sharp(Buffer.from(shot.rgba), {
    raw: { width: shot.width, height: shot.height, channels: 4 },
  })
    .png()
    .toBuffer();
  writeFileSync(file, png);
}

/** Opens `file` in a moat-viewer domU in the lab and saves the last screenshot to `png`. */
export async function viewAndSave(
  reporter: Reporter,
  options: { file: string; keys?: string; png: string; memoryMb?: number },
): Promise<ViewOutcome> {
  const actions = parseKeys(options.keys);
  const progress = reporter.progress('view', 4);
  let step = 0;
  const { outcomes, memory } = await viewInLab([{ file: resolve(options.file), actions }], {
    ...(options.memoryMb ? { memoryMb: options.memoryMb } : {}),
    onStep: (text) => progress.update(Math.min(++step, 4), text),
  }).catch(labFailure);
  progress.done('window closed, disposable destroyed');
  const outcome = outcomes[0]!;
  const last = outcome.shots.at(-1)!;
  const png = resolve(options.png);
  await writeShotPng(last, png);
  const base = png.replace(/\.png$/i, '');
  outcome.shots.slice(0, -1).forEach((shot, i) => void writeShotPng(shot, `${base}-${i}.png`));
  reporter.result('moat-viewer window (lab)', {
    title: last.title,
    size: `${last.width}x${last.height}`,
    png,
    ...(outcome.shots.length > 1
      ? { earlierShots: `${base}-0.png ... ${base}-${outcome.shots.length - 2}.png` }
      : {}),
    callToFirstFrameMs: outcome.result.firstFrameMs,
    exitCode: outcome.result.exitCode,
    vmMemory: memory[0]
      ? `node rss ${memory[0].rssMiB} MiB, VM used ${memory[0].usedMiB} of ${memory[0].totalMiB} MiB`
      : 'n/a',
  });
  return outcome;
}

/** 128 to 768 MiB in 16 MiB steps. */
const MEMORY_STEPS_MB = Array.from({ length: 41 }, (_, i) => 128 + 16 * i);

/**
 * For a 6000 × 4000 and a 3840 × 2160 photo as JPEG, PNG and WebP: the first of MEMORY_STEPS_MB
 * of memory as the VM's kernel reports it (`os.totalmem()`, what the VM gives `decodeBudget`)
 * at which the viewer core opens it, and at which reduction. Host-side: the same code as in the
 * VM decides, from the same budget (the lab part below checks the 24 MP JPEG in real VMs, by
 * the domU's `memory`).
 */
export async function smallestMemoryByFormat(photo: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [width, height] of [
    [6000, 4000],
    [3840, 2160],
  ] as const) {
    const raw = await sharp(photo).resize(width, height).removeAlpha().raw().toBuffer();
    const input = sharp(raw, { raw: { width, height, channels: 3 } });
    const files = {
      jpeg: await input.clone().jpeg({ quality: 90 }).toBuffer(),
      png: await input.clone().png().toBuffer(),
      webp: await input.clone().webp({ quality: 80 }).toBuffer(),
    };
    for (const [format, file] of Object.entries(files)) {
      const bytes = new Uint8Array(file);
      let found = `none up to ${MEMORY_STEPS_MB.at(-1)} MiB`;
      for (const mb of MEMORY_STEPS_MB) {
        const at = openedAtMemory(`large.${format}`, bytes, mb);
        if (!at.opened) continue;
        found = `${mb} MiB (decoded at 1/${at.scale})`;
        break;
      }
      out[`${width}x${height} ${format} (${(file.length / 2 ** 20).toFixed(1)} MiB file)`] = found;
    }
  }
  return out;
}

/** `moat bench viewer`. */
export async function runViewerBench(reporter: Reporter, root: string, memoryMb: number): Promise<void> {
  const fixtures = join(root, 'viewer', 'fixtures');
  const work = join(root, '.cache', 'viewer-bench');
  mkdirSync(work, { recursive: true });
  // 24 megapixels from a corpus photo (as `bench decoders` makes its large stills).
  const large = join(work, 'large-6000x4000.jpg');
  writeFileSync(
    large,
    await sharp(join(fixtures, 'jpeg', 'exif-orientation', 'Landscape_1.jpg'))
      .resize(6000, 4000)
      .jpeg({ quality: 90 })
      .toBuffer(),
  );
  reporter.result(
    "24-megapixel and 4K files: smallest memory the VM's kernel reports (os.totalmem) that opens them (host, the viewer core's own accounting: decodeBudget, decoders, reduced retries; 1920x1080 monitor; a domU's kernel reports about 40 MiB less than its memory)",
    await smallestMemoryByFormat(join(fixtures, 'jpeg', 'exif-orientation', 'Landscape_1.jpg')),
  );
  const progress = reporter.progress('bench viewer', 9);
  let step = 0;
  const f = await benchViewer({
    files: [join(fixtures, 'jpeg', 'exif-orientation', 'Landscape_1.jpg')],
    memoryMb,
    largeJpeg: large,
    largeMemoriesMb: [400, 256, 192, 160, 128],
    onStep: (text) => progress.update(Math.min(++step, 9), text),
  }).catch(labFailure);
  progress.done('measured');
  for (const row of f.firstFrame) {
    reporter.result(`qubes.OpenInVM to first frame: ${row.file} (lab, emulated)`, {
      memoryMb: row.memoryMb,
      callToFirstFrameMs: row.callToFirstFrameMs,
      nodeRssMiB: row.vm?.rssMiB ?? 'n/a',
      vmUsedMiB: row.vm?.usedMiB ?? 'n/a',
      vmTotalMiB: row.vm?.totalMiB ?? 'n/a',
    });
  }
  reporter.result('24-megapixel JPEG (6000x4000) by VM memory', {
    ...Object.fromEntries(
      f.largeJpeg.map((r) => [
        `${r.memoryMb} MiB`,
        r.opened ? `opened: ${r.title}` : `not opened: ${r.title}`,
      ]),
    ),
    smallestMemoryMb: f.smallestMemoryMb ?? 'none of those tried',
  });
  reporter.result('Linux baseline', {
    note: 'none: the lab has no X server or image viewer for a Linux domU (its Linux guest is a Debian userland without graphics), so only moat-viewer is measured',
  });
}
