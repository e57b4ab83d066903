import { join } from 'node:path';
import { buildImage, defaultCacheDir } from '@moat/unikernel';
import { bundleEntry } from './bundle.ts';
import { LabError } from './errors.ts';
import { expectGuestOk, type GuestRun } from './guest-run.ts';
import { bootLab, type Lab, type LabOptions } from './lab.ts';

export const SMOKE_GUEST = join(new URL('.', import.meta.url).pathname, 'guests', 'smoke.guest.ts');

/** The answer the smoke guest's `javascript runs` step must compute (see smoke.guest.ts). */
export function smokeExpectedSum(): number {
  let x = 0;
  for (let i = 1; i <= 100_000; i++) x = (x + i * i) % 1_000_003;
  return x;
}

/** Checks a smoke guest's run: every step ok, and the numbers only its own JS could produce. */
export function checkSmokeRun(run: GuestRun): GuestRun {
  expectGuestOk(run);
  const js = run.results.find((r) => r.name === 'javascript runs')?.data as
    | { sum?: number; node?: string }
    | undefined;
  if (js?.sum !== smokeExpectedSum()) {
    throw new LabError(run.guest, `javascript runs: expected sum ${smokeExpectedSum()}, got ${js?.sum}`);
  }
  const devices = run.results.find((r) => r.name === 'xen devices')?.data as
    | { devices?: string[] }
    | undefined;
  if (!devices?.devices?.includes('xenbus')) throw new LabError(run.guest, 'xen devices: no xenbus reported');
  return run;
}

export interface SmokeStep {
  readonly name: string;
  readonly ms: number;
  readonly detail: string;
}

/**
 * `./moat lab smoke`: builds the images, boots the lab, runs the smoke guest in dom0, in a PV
 * and in a PVH domU (both at once), checks what each reported, and shuts down.
 */
export async function runSmoke(
  options: LabOptions & { onStep?: (step: SmokeStep, index: number, total: number) => void } = {},
): Promise<SmokeStep[]> {
  const steps: SmokeStep[] = [];
  const total = 5;
  const step = async <T>(name: string, work: () => Promise<T>, detail: (value: T) => string) => {
    const start = performance.now();
    const value = await work();
    const s = { name, ms: Math.round(performance.now() - start), detail: detail(value) };
    steps.push(s);
    options.onStep?.(s, steps.length, total);
    return value;
  };
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const image = await step(
    'build images',
    async () => buildImage({ bundle: await bundleEntry(SMOKE_GUEST, cacheDir), cacheDir }),
    (i) => `domU image ${i.key.slice(0, 12)} (${i.built ? 'built' : 'cached'}), kernel ${i.kernelRelease}`,
  );
  const bundle = await bundleEntry(SMOKE_GUEST, cacheDir);
  const lab: Lab = await step(
    'boot Xen and dom0',
    () => bootLab(options),
    (l) => `dom0 agent ready at dom0 uptime ${(l.timings.dom0UptimeAtReadyMs / 1000).toFixed(1)} s`,
  );
  try {
    const describe = (run: GuestRun) => {
      const info = run.results.find((r) => r.name === 'running on xen')?.data as
        | { memTotalKb?: number }
        | undefined;
      return `${run.results.length} steps ok in its own ${(run.ms / 1000).toFixed(1)} s (created to gone), node ${(run.results[1]?.data as { node?: string } | undefined)?.node}, MemTotal ${Math.round((info?.memTotalKb ?? 0) / 1024)} MB`;
    };
    await step(
      'dom0: node runs a bundle',
      async () => checkSmokeRun(await lab.runInDom0(bundle).finished()),
      describe,
    );
    // Both domUs start at once; each step below is the wait for one of them, and each detail
    // says how long that domU itself took.
    const pv = lab.createDomU(image, { type: 'pv', name: 'smoke-pv' });
    const pvh = lab.createDomU(image, { type: 'pvh', name: 'smoke-pvh' });
    await step('PV domU: node runs the bundle', async () => checkSmokeRun(await pv.finished()), describe);
    await step('PVH domU: node runs the bundle', async () => checkSmokeRun(await pvh.finished()), describe);
  } finally {
    await lab.shutdown();
  }
  return steps;
}
