import { join } from 'node:path';
import { buildImage, defaultCacheDir, type VmImage } from '@moat/unikernel';
import { bundleEntry } from './bundle.ts';
import { LabError } from './errors.ts';
import type { GuestHandle } from './guest-run.ts';
import type { DomUOptions, Lab } from './lab.ts';
import type { VchanTask } from './vchan-roles.ts';
import { xenGuestFiles } from './xen-guest-files.ts';

export const VCHAN_GUEST = join(new URL('.', import.meta.url).pathname, 'guests', 'vchan.guest.ts');

export interface VchanGuest {
  readonly bundle: string;
  /** A domU image with the bundle, our addon, the Xen libraries and the C peer. */
  readonly image: VmImage;
}

/** Builds (or finds cached) the vchan guest's bundle and domU image. */
export async function buildVchanGuest(cacheDir = defaultCacheDir()): Promise<VchanGuest> {
  const bundle = await bundleEntry(VCHAN_GUEST, cacheDir);
  const image = await buildImage({ bundle, files: await xenGuestFiles(cacheDir), cacheDir });
  return { bundle, image };
}

/** What each side of a vchan run does, as named steps; the same names are the guests' results. */
export interface VchanPlan {
  readonly domU: readonly (readonly [string, VchanTask])[];
  readonly dom0: readonly (readonly [string, VchanTask])[];
}

/** Asks dom0 for a domain's id until `xl` knows the name (the domain exists shortly after create). */
export async function domainId(lab: Lab, name: string, timeoutMs = 120_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last: string[] = [];
  while (Date.now() < deadline) {
    const { code, lines } = await lab.exec(['xl', 'domid', name], { timeoutMs: 60_000 });
    const id = Number(lines.find((l) => /^\d+$/.test(l.trim()))?.trim());
    if (code === 0 && Number.isInteger(id) && id > 0) return id;
    last = lines;
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new LabError(
    'vchan',
    `xl domid ${name} did not name a domain within ${timeoutMs} ms: ${last.join(' | ')}`,
  );
}

export interface VchanRun {
  readonly domU: GuestHandle;
  readonly dom0: GuestHandle;
  readonly domid: number;
}

/**
 * Starts the domU side (ours and C, from the image) and, once the domain has an id, the dom0
 * side (C only: vchan-socket-proxy is installed in dom0). Each side runs its steps in order and
 * meets the other on distinct ports, so neither waits for an explicit signal.
 */
export async function startVchanRun(
  lab: Lab,
  guest: VchanGuest,
  plan: VchanPlan,
  options: Partial<DomUOptions> & { dom0TimeoutMs?: number } = {},
): Promise<VchanRun> {
  const name = options.name ?? 'vchan-peer';
  const domU = lab.createDomU(guest.image, {
    type: options.type ?? 'pv',
    name,
    memoryMb: options.memoryMb ?? 256,
    args: { peer: 0, tasks: plan.domU },
  });
  const domid = await domainId(lab, name);
  const dom0 = lab.runInDom0(guest.bundle, {
    args: { peer: domid, self: 0, tasks: plan.dom0 },
    timeoutMs: options.dom0TimeoutMs ?? 900_000,
  });
  return { domU, dom0, domid };
}

const MiB = 1024 * 1024;

/** Seeds of the two directions' patterns (the host recomputes the hashes with patternSha256). */
export const SEED_FROM_DOMU = 1;
export const SEED_FROM_DOM0 = 2;

export interface InteropSizes {
  /** Bytes each way with our server (we pick 1 MiB rings). Default 64 MiB. */
  readonly ourServerBytes?: number;
  /**
   * Bytes each way with the C server: vchan-socket-proxy's server always asks libxenvchan for
   * the smallest rings (1 KiB and 2 KiB in the shared page), so every 1-2 KiB costs an event
   * round trip, which under emulation on a busy machine is 50-100 ms. Default 64 MiB.
   */
  readonly cServerBytes?: number;
  /** How much the C end receives before it is killed. Default 256 KiB. */
  readonly killAfter?: number;
  readonly timeoutMs?: number;
}

/**
 * The interop plan: our end in the domU against Debian's C vchan-socket-proxy in dom0, with
 * us as server and as client, data both ways at once, one close each way round, and the C
 * peer killed under each of our roles.
 */
export function interopPlan(sizes: InteropSizes = {}): VchanPlan {
  const ours = { bytes: sizes.ourServerBytes ?? 64 * MiB, timeoutMs: sizes.timeoutMs ?? 900_000 };
  const theirs = { bytes: sizes.cServerBytes ?? 64 * MiB, timeoutMs: ours.timeoutMs };
  const killAfter = sizes.killAfter ?? 256 * 1024;
  const timeoutMs = ours.timeoutMs;
  return {
    domU: [
      [
        'our server, C client',
        {
          kind: 'exchange',
          impl: 'ours',
          role: 'server',
          port: 6001,
          sendSeed: SEED_FROM_DOMU,
          closer: true,
          ringBytes: MiB,
          ...ours,
        },
      ],
      [
        'C server, our client',
        {
          kind: 'exchange',
          impl: 'ours',
          role: 'client',
          port: 6002,
          sendSeed: SEED_FROM_DOMU,
          closer: false,
          ...theirs,
        },
      ],
      [
        'our server, C client killed',
        { kind: 'survive', impl: 'ours', role: 'server', port: 6003, sendSeed: SEED_FROM_DOMU, ...ours },
      ],
      [
        'our client, C server killed',
        { kind: 'survive', impl: 'ours', role: 'client', port: 6004, sendSeed: SEED_FROM_DOMU, ...theirs },
      ],
    ],
    dom0: [
      [
        'our server, C client',
        {
          kind: 'exchange',
          impl: 'c',
          role: 'client',
          port: 6001,
          sendSeed: SEED_FROM_DOM0,
          closer: false,
          ...ours,
        },
      ],
      [
        'C server, our client',
        {
          kind: 'exchange',
          impl: 'c',
          role: 'server',
          port: 6002,
          sendSeed: SEED_FROM_DOM0,
          closer: true,
          ...theirs,
        },
      ],
      [
        'our server, C client killed',
        {
          kind: 'die',
          impl: 'c',
          role: 'client',
          port: 6003,
          sendSeed: SEED_FROM_DOM0,
          killAfter,
          timeoutMs,
        },
      ],
      [
        'our client, C server killed',
        {
          kind: 'die',
          impl: 'c',
          role: 'server',
          port: 6004,
          sendSeed: SEED_FROM_DOM0,
          killAfter,
          timeoutMs,
        },
      ],
    ],
  };
}
