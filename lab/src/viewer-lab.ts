/**
 * moat-viewer in the lab: its image (the VM's main and decode worker bundled beside the Xen
 * addon), a domU of it, and dom0's side (guests/viewer.guest.ts) calling qubes.OpenInVM and
 * qubes.GetImageRGBA, screenshots coming back through the results. Used by
 * test/viewer.lab.test.ts and by `./moat view`, `./moat bench viewer` and `./moat demo`.
 */
import { basename } from 'node:path';
import { inflateSync } from 'node:zlib';
import { buildImage, defaultCacheDir, type VmImage } from '@moat/unikernel';
import type { Shot, ViewAction } from '@moat/viewer/lab';
import { viewerVmEntries } from '@moat/viewer/vm';
import type { GuestAddon } from './addon.ts';
import { bundleEntry } from './bundle.ts';
import type { GuestHandle } from './guest-run.ts';
import type { Lab } from './lab.ts';
import { domainId } from './vchan-lab.ts';
import {
  SHOT_PART_CHARS,
  type ViewerDestroyResult,
  type ViewerLabArgs,
  type ViewerOpenResult,
  type ViewerRgbaResult,
} from './viewer-wire.ts';

const DOM0_GUEST = new URL('./guests/viewer.guest.ts', import.meta.url).pathname;
/** Where the image puts the decode worker; the VM's main looks for it beside itself. */
export const VIEWER_WORKER_PATH = '/app/decode-worker.js';

/** The moat-viewer image: kernel, init, and a disk with node, main.js, decode-worker.js and the addon. */
export async function buildViewerImage(addon: GuestAddon, cacheDir = defaultCacheDir()): Promise<VmImage> {
  const main = await bundleEntry(viewerVmEntries.main, cacheDir);
  const worker = await bundleEntry(viewerVmEntries.worker, cacheDir);
  return buildImage({
    bundle: main,
    cacheDir,
    files: [...addon.diskFiles, { path: VIEWER_WORKER_PATH, source: worker }],
  });
}

export interface ViewerRunOptions {
  readonly image: VmImage;
  readonly vmName: string;
  /** The domU's memory (MiB): the VM derives its decode budget from it. */
  readonly memoryMb: number;
  readonly type?: 'pv' | 'pvh';
  /**
   * Boot the VM from its template root image through PVH GRUB (as Qubes boots a template with
   * `kernel=''`) instead of `image`'s kernel given by xl; implies PVH.
   */
  readonly pvhGrub?: { readonly grub: string; readonly rootImage: string };
  /** qubes.OpenInVM calls, in order: a host file, the name sent, the input after it opened. */
  readonly open?: readonly { label: string; file: string; name?: string; actions?: readonly ViewAction[] }[];
  /** qubes.GetImageRGBA calls. */
  readonly rgba?: readonly { label: string; file: string }[];
  /** Result steps per case for screenshots (each carries 700,000 characters); default 2. */
  readonly shotParts?: number;
  readonly screen?: { width: number; height: number };
  /** Waits on the host; dom0's whole run may take several times this. */
  readonly timeoutMs?: number;
  /** The VM's per-decode deadline (default 300 s: a 24-megapixel decode under emulation on a busy machine). */
  readonly decodeDeadlineMs?: number;
}

export interface ViewerRun {
  readonly vm: GuestHandle;
  readonly dom0: GuestHandle;
  /** The call's outcome and its screenshots: the first frame, then one per action. */
  open(label: string): Promise<{ result: ViewerOpenResult; shots: Shot[] }>;
  rgba(label: string): Promise<ViewerRgbaResult>;
  /** dom0 destroyed the disposable after the last call. */
  destroyed(): Promise<ViewerDestroyResult>;
  /** The VM's console lines that are moat-viewer's own log. */
  vmLog(): string[];
}

async function data<T>(guest: GuestHandle, step: string, timeoutMs: number): Promise<T> {
  const result = await guest.result(step, { timeoutMs });
  if (!result.ok) {
    // The tail without the screenshot lines (each up to 700,000 characters).
    const tail = guest
      .tail(40)
      .split('\n')
      .map((l) => (l.length > 300 ? `${l.slice(0, 300)}...` : l));
    throw new Error(`${guest.guest}: ${step} failed: ${result.error}\n${tail.join('\n')}`);
  }
  return result.data as T;
}

/** Creates the domU, starts dom0's side against it, and hands out each call's results as they come. */
export async function startViewerRun(lab: Lab, options: ViewerRunOptions): Promise<ViewerRun> {
  const timeoutMs = options.timeoutMs ?? 900_000;
  const bundle = await bundleEntry(DOM0_GUEST);
  const open = options.open ?? [];
  const shotParts = options.shotParts ?? 2;
  const args: ViewerLabArgs = {
    peer: 0,
    vmName: options.vmName,
    open: open.map((c) => ({
      label: c.label,
      path: lab.shareFile(c.file),
      name: c.name ?? basename(c.file),
      actions: c.actions ?? [],
    })),
    rgba: (options.rgba ?? []).map((r) => ({ label: r.label, path: lab.shareFile(r.file) })),
    shotParts,
    decodeDeadlineMs: options.decodeDeadlineMs ?? 300_000,
    ...(options.screen ? { screen: options.screen } : {}),
  };
  const vm = lab.createDomU(options.image, {
    type: options.pvhGrub ? 'pvh' : (options.type ?? 'pv'),
    name: options.vmName,
    memoryMb: options.memoryMb,
    ...(options.pvhGrub ? { pvhGrub: options.pvhGrub } : {}),
  });
  const peer = await domainId(lab, options.vmName, timeoutMs);
  // dom0's run spans every call of the file.
  const dom0 = lab.runInDom0(bundle, { args: { ...args, peer }, timeoutMs: timeoutMs * 4 });
  return {
    vm,
    dom0,
    async open(label) {
      const result = await data<ViewerOpenResult>(dom0, `open ${label}`, timeoutMs);
      if (shotParts === 0)
        return { result, shots: result.shots.map((s) => ({ ...s, rgba: new Uint8Array(0) })) };
      const parts: string[] = [];
      for (let i = 0; i < shotParts; i++)
        parts.push((await data<{ data: string }>(dom0, `shots ${label} ${i}`, timeoutMs)).data);
      const text = parts.join('');
      if (text.length !== result.shotChars || result.shotChars > shotParts * SHOT_PART_CHARS) {
        throw new Error(
          `${label}: screenshots of ${result.shotChars} characters need more than ${shotParts} parts`,
        );
      }
      const encoded = JSON.parse(text) as string[];
      const shots = encoded.map((b64, i) => {
        const meta = result.shots[i]!;
        return { ...meta, rgba: new Uint8Array(inflateSync(Buffer.from(b64, 'base64'))) };
      });
      return { result, shots };
    },
    rgba: (label) => data<ViewerRgbaResult>(dom0, `rgba ${label}`, timeoutMs),
    destroyed: () => data<ViewerDestroyResult>(dom0, 'destroy', timeoutMs),
    vmLog: () => vm.snapshot().lines.filter((l) => l.includes('moat-viewer: ')),
  };
}
