/**
 * The two Qubes deliveries of a VM image boot on real Xen (issue 18's lab proof):
 * - the template root image (what qubes-template-* packages carry) through Debian's PVH GRUB
 *   (grub-xen-host's grub-i386-xen_pvh.bin, the same kind as Qubes' pvgrub2-pvh) as a PVH domU,
 *   with no kernel, initramfs or command line from xl: GRUB reads /boot/grub/grub.cfg from xvda;
 * - the kernel-directory files (what moat-vm-kernels carries) with the kernel given by xl and
 *   modules.img as the read-only xvdd.
 * Both run the smoke guest as their app and must report its results.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { buildImage, defaultCacheDir, type VmImage, writeKernelDirectory } from '@moat/unikernel';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bundleEntry,
  checkSmokeRun,
  type GuestHandle,
  type LabSession,
  labSession,
  pvhGrubBoot,
  SMOKE_GUEST,
} from '../src/index.ts';

const epoch = 1_767_225_600;
// The real VMs take both routes in every lab phase (test/templates.lab.test.ts); this smoke
// guest's GRUB boot, the same route, runs only in long runs (MOAT_LAB_LONG=1) to keep the
// phase short. GRUB reads the kernel through its own Xen disk driver, the slow part: 14 MB in
// 7.5 minutes with two emulated CPUs on a loaded machine; one CPU is the lab's default since.
const LONG = process.env.MOAT_LAB_LONG === '1';
let lab: LabSession;
let template: GuestHandle;
let kernelDirectory: GuestHandle;

beforeAll(async () => {
  const cacheDir = defaultCacheDir();
  const image = await buildImage({ bundle: await bundleEntry(SMOKE_GUEST), cacheDir });
  const work = join(cacheDir, 'lab', 'template-boot', image.key);
  mkdirSync(work, { recursive: true });
  const kernelDir = join(work, 'vm-kernel');
  writeKernelDirectory(image, kernelDir, epoch);
  const fromKernelDir: VmImage = {
    ...image,
    key: `${image.key}-kernel-dir`,
    kernel: join(kernelDir, 'vmlinuz'),
    initramfs: join(kernelDir, 'initramfs'),
    disk: join(kernelDir, 'modules.img'),
  };
  const pvhGrub = LONG ? await pvhGrubBoot(image, 'moat-smoke', cacheDir) : undefined;

  lab = await labSession('template-boot');
  if (pvhGrub)
    template = lab.createDomU(image, {
      type: 'pvh',
      name: 'lab-template',
      memoryMb: 192,
      pvhGrub,
    });
  kernelDirectory = lab.createDomU(fromKernelDir, { type: 'pvh', name: 'lab-kernel-dir' });
});

afterAll(async () => {
  await lab?.end();
});

describe('Qubes deliveries boot on Xen (lab)', () => {
  it.skipIf(!LONG)(
    'the template root image boots through PVH GRUB and runs its app from xvda',
    {
      timeout: 1_600_000,
    },
    async () => {
      const run = checkSmokeRun(await template.finished({ timeoutMs: 1_500_000 }));
      expect(run.lines.join('\n')).toContain('moat-init: node started');
    },
  );

  it('the kernel-directory files boot with the kernel given by xl, app on xvdd', async () => {
    checkSmokeRun(await kernelDirectory.finished({ timeoutMs: 480_000 }));
  });
});
