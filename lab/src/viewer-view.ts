/**
 * The lab round trips behind `./moat view`, `./moat demo` and `./moat bench viewer`: boot the
 * lab, open files in a moat-viewer domU through qubes.OpenInVM, bring back what its window
 * showed, and measure the time to the first frame and the VM's memory.
 */
import { basename } from 'node:path';
import type { VmImage } from '@moat/unikernel';
import type { Shot, ViewAction } from '@moat/viewer/lab';
import { buildGuestAddon } from './addon.ts';
import { bootLab, type Lab } from './lab.ts';
import { buildViewerImage, startViewerRun } from './viewer-lab.ts';
import type { ViewerOpenResult } from './viewer-wire.ts';

export interface ViewRequest {
  readonly file: string;
  /** The name qvm-open-in-dvm sends (default the file's base name). */
  readonly name?: string;
  readonly actions?: readonly ViewAction[];
}

export interface ViewOutcome {
  readonly request: ViewRequest;
  readonly result: ViewerOpenResult;
  /** The first frame, then one per action. */
  readonly shots: Shot[];
}

/** What the VM logged after its first frame: node's RSS and the VM's used memory. */
export interface ViewerMemory {
  readonly firstFrameMs: number;
  readonly rssMiB: number;
  readonly usedMiB: number;
  readonly totalMiB: number;
}

export function parseMemoryLines(lines: readonly string[]): ViewerMemory[] {
  const out: ViewerMemory[] = [];
  for (const line of lines) {
    const m = /first frame after (\d+) ms; rss (\d+) MiB; VM used (\d+) of (\d+) MiB/.exec(line);
    if (m) out.push({ firstFrameMs: +m[1]!, rssMiB: +m[2]!, usedMiB: +m[3]!, totalMiB: +m[4]! });
  }
  return out;
}

/** Screenshot room per call: a 1728 × 972 window (90% of 1920 × 1080) of a photo, deflated, base64. */
const VIEW_SHOT_PARTS = 16;

/** Opens each file in one moat-viewer domU of `lab`, then dom0 destroys it. */
export async function openInViewer(
  lab: Lab,
  image: VmImage,
  options: { vmName: string; memoryMb: number; requests: readonly ViewRequest[]; shotParts?: number },
): Promise<{ outcomes: ViewOutcome[]; vmLog: string[]; memory: ViewerMemory[] }> {
  const run = await startViewerRun(lab, {
    image,
    vmName: options.vmName,
    memoryMb: options.memoryMb,
    shotParts: options.shotParts ?? VIEW_SHOT_PARTS,
    open: options.requests.map((r, i) => ({
      label: String(i),
      file: r.file,
      name: r.name ?? basename(r.file),
      ...(r.actions ? { actions: r.actions } : {}),
    })),
  });
  const outcomes: ViewOutcome[] = [];
  for (const [i, request] of options.requests.entries()) {
    const { result, shots } = await run.open(String(i));
    outcomes.push({ request, result, shots });
  }
  await run.destroyed();
  await run.vm.finished({ timeoutMs: 300_000 });
  const vmLog = run.vmLog();
  return { outcomes, vmLog, memory: parseMemoryLines(vmLog) };
}

/** Boots a lab, builds the moat-viewer image, runs `fn`, shuts the lab down. */
export async function withViewerLab<T>(
  fn: (lab: Lab, image: VmImage) => Promise<T>,
  onStep: (text: string) => void = () => {},
): Promise<T> {
  onStep('building the Xen addon and the moat-viewer image');
  const addon = await buildGuestAddon();
  const image = await buildViewerImage(addon);
  onStep('booting Xen in QEMU');
  const lab = await bootLab({ addon, bootTimeoutMs: 900_000 });
  try {
    onStep(`lab booted in ${(lab.timings.bootMs / 1000).toFixed(1)} s`);
    return await fn(lab, image);
  } finally {
    await lab.shutdown();
  }
}

/** `./moat view`: the files opened one after the other in one moat-viewer domU. */
export function viewInLab(
  requests: readonly ViewRequest[],
  options: { memoryMb?: number; onStep?: (text: string) => void } = {},
): Promise<{ outcomes: ViewOutcome[]; vmLog: string[]; memory: ViewerMemory[] }> {
  return withViewerLab(
    (lab, image) =>
      openInViewer(lab, image, { vmName: 'moat-viewer-view', memoryMb: options.memoryMb ?? 400, requests }),
    options.onStep,
  );
}

export interface ViewerBench {
  /** qubes.OpenInVM call to the first full frame in dom0's GUI daemon, per image (lab, emulated). */
  readonly firstFrame: {
    file: string;
    memoryMb: number;
    callToFirstFrameMs: number;
    vm: ViewerMemory | undefined;
  }[];
  /** Memory sizes tried for the 24-megapixel JPEG, and whether it opened. */
  readonly largeJpeg: { memoryMb: number; opened: boolean; title: string }[];
  /** The least memory tried at which it opened. */
  readonly smallestMemoryMb: number | undefined;
}

/**
 * First-frame time and memory for `files` in a VM of `memoryMb`, then the 24-megapixel JPEG
 * in VMs of decreasing memory until it no longer opens (one domU per size, one lab boot).
 */
export function benchViewer(options: {
  files: readonly string[];
  memoryMb: number;
  largeJpeg: string;
  largeMemoriesMb: readonly number[];
  onStep?: (text: string) => void;
}): Promise<ViewerBench> {
  const step = options.onStep ?? (() => {});
  return withViewerLab(async (lab, image) => {
    step(`opening ${options.files.length} files in a ${options.memoryMb} MiB moat-viewer`);
    const first = await openInViewer(lab, image, {
      vmName: 'moat-viewer-bench',
      memoryMb: options.memoryMb,
      requests: options.files.map((file) => ({ file })),
      shotParts: 0,
    });
    const firstFrame = first.outcomes.map((o, i) => ({
      file: basename(o.request.file),
      memoryMb: options.memoryMb,
      callToFirstFrameMs: o.result.firstFrameMs,
      vm: first.memory[i],
    }));
    const largeJpeg: ViewerBench['largeJpeg'] = [];
    let smallestMemoryMb: number | undefined;
    for (const memoryMb of options.largeMemoriesMb) {
      step(`24-megapixel JPEG in a ${memoryMb} MiB moat-viewer`);
      let title: string;
      let opened: boolean;
      try {
        const run = await openInViewer(lab, image, {
          vmName: `moat-viewer-${memoryMb}`,
          memoryMb,
          requests: [{ file: options.largeJpeg, name: 'large.jpg' }],
          shotParts: 0,
        });
        title = run.outcomes[0]?.result.shots[0]?.title ?? '';
        // The core titles a refused file `<name> - cannot open`.
        opened = run.outcomes[0]?.result.exitCode === 0 && !title.endsWith(' - cannot open');
      } catch (error) {
        // The VM did not get as far as a window (too little memory to run at all).
        title = `failed: ${(error instanceof Error ? error.message : String(error)).split('\n')[0]}`;
        opened = false;
        await lab.exec(['xl', 'destroy', `moat-viewer-${memoryMb}`]).catch(() => {});
      }
      largeJpeg.push({ memoryMb, opened, title });
      if (!opened) break;
      smallestMemoryMb = memoryMb;
    }
    return { firstFrame, largeJpeg, smallestMemoryMb };
  }, step);
}
