import { buildImage, type VmImage } from '@moat/unikernel';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bundleEntry,
  checkSmokeRun,
  type GuestHandle,
  type LabSession,
  labSession,
  SMOKE_GUEST,
} from '../src/index.ts';

/** The run's shared lab; the PV and PVH domUs start together and each test awaits its own. */
let lab: LabSession;
let bundle: string;
let image: VmImage;
let pv: GuestHandle;
let pvh: GuestHandle;

beforeAll(async () => {
  bundle = await bundleEntry(SMOKE_GUEST);
  image = await buildImage({ bundle });
  lab = await labSession('smoke');
  pv = lab.createDomU(image, { type: 'pv', name: 'lab-pv' });
  pvh = lab.createDomU(image, { type: 'pvh', name: 'lab-pvh' });
});

afterAll(async () => {
  await lab?.end();
});

describe('the lab boots Xen and runs our JS in guests (lab)', () => {
  it('a PV domU runs our bundle with the pinned node and sees /dev/xen', async () => {
    const run = checkSmokeRun(await pv.finished({ timeoutMs: 480_000 }));
    expect(run.results.map((r) => r.name)).toEqual(['xen devices', 'javascript runs', 'running on xen']);
    expect((run.results[1]?.data as { node?: string } | undefined)?.node).toBe('v20.20.2');
  });

  it('a PVH domU runs our bundle too', async () => {
    const run = checkSmokeRun(await pvh.finished({ timeoutMs: 480_000 }));
    expect((run.results[0]?.data as { devices?: string[] } | undefined)?.devices).toEqual(
      expect.arrayContaining(['evtchn', 'gntalloc', 'gntdev', 'privcmd', 'xenbus']),
    );
  });

  it('dom0 runs a bundle with node and reports through the control port', async () => {
    checkSmokeRun(await lab.runInDom0(bundle).finished({ timeoutMs: 300_000 }));
  });
});
