import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { guestImage, type LabSession, labSession } from '../src/index.ts';
import { buildLinuxImage } from '../src/linux-image.ts';
import type { BackendReport, NetifCommand } from '../src/netif-lab-wire.ts';
import {
  attachVif,
  type CommandVm,
  detachVif,
  hotplugRetries,
  type LinuxVm,
  listVifs,
  netvmVif,
  qubesMac,
  startCommandVm,
  startLinuxVm,
  xenstoreCount,
} from '../src/topology.ts';

/**
 * @moat/netif on real Xen 4.17, between Linux's own drivers: a Linux client qube whose vif's
 * backend is our domU (a driver domain named in `backend=`, as Qubes names sys-firewall), and
 * our domU's own vif whose backend is a Linux netvm. One lab session; the VMs start in
 * beforeAll and the tests run in order on them. Timings are printed, never asserted.
 */
const NETIF_GUEST = new URL('../src/guests/netif.guest.ts', import.meta.url).pathname;
const NETVM = { name: 'nf-netvm', ip: '10.137.0.5' };
const MIDDLE = { name: 'nf-moat', mac: qubesMac(6) };
const CLIENT = { name: 'nf-client', ip: '10.137.0.10', mac: qubesMac(10) };
const LONG = process.env.MOAT_LAB_LONG === '1';
const CYCLES = LONG ? 50 : 3;

let lab: LabSession;
let netvm: LinuxVm;
let middle: CommandVm<NetifCommand>;
let client: LinuxVm;
const figures: Record<string, unknown> = {};
const t0 = performance.now();
const since = () => Math.round(performance.now() - t0);

/** Our vif backend in `middle`, as the guest reports it. */
const backends = async () => (await middle.command<{ devices: BackendReport[] }>({ op: 'backends' })).devices;

beforeAll(async () => {
  const built = await buildLinuxImage();
  const ours = await guestImage(NETIF_GUEST, { addon: built.addon });
  lab = await labSession('netif', { addon: built.addon, bootTimeoutMs: 1_200_000 });
  figures.bootMs = lab.timings.bootMs;
  netvm = await startLinuxVm(lab, built.image, { name: NETVM.name, args: { role: 'netvm', ip: NETVM.ip } });
  figures.netvmUpMs = since();
  // Upstream, our domU is the client's stand-in: the netvm routes the client's address to it.
  middle = await startCommandVm<NetifCommand>(lab, ours.image, {
    name: MIDDLE.name,
    args: { role: 'plumbing' },
    memoryMb: 160,
    driverDomain: true,
    vifs: [netvmVif(NETVM.name, CLIENT.ip, MIDDLE.mac)],
  });
  figures.middleUpMs = since();
  client = await startLinuxVm(lab, built.image, {
    name: CLIENT.name,
    args: { role: 'client', ip: CLIENT.ip, gateway: NETVM.ip },
    vifs: [{ backend: MIDDLE.name, ip: CLIENT.ip, mac: CLIENT.mac }],
  });
  figures.clientUpMs = since();
}, 2_400_000);

afterAll(async () => {
  figures.hotplugRetries = hotplugRetries.count;
  console.log(`netif lab figures: ${JSON.stringify(figures)}`);
  await lab?.end();
});

describe('a TypeScript domU as vif backend and frontend between Linux qubes on real Xen (lab)', () => {
  it("serves the client's vif as its driver domain: Linux netfront connects to our rings", async () => {
    const [device, ...others] = await backends();
    expect(others).toEqual([]);
    expect(device).toMatchObject({
      frontendId: client.domid,
      device: 0,
      state: '4',
      frontendState: '4',
      mac: CLIENT.mac,
      mapped: true,
    });
    const front = await middle.command<Record<string, string | undefined>>({ op: 'frontend' });
    expect(front).toMatchObject({
      backend: `/local/domain/${netvm.domid}/backend/vif/${middle.domid}/0`,
      backendId: String(netvm.domid),
      mac: MIDDLE.mac,
      backendFeatureRxCopy: '1',
    });
  });

  it(`detaches and attaches the client's vif ${CYCLES} times without leaks on either side`, async () => {
    const netvmVifs = (await netvm.command<{ vifs: string[] }>({ op: 'vifs' })).vifs;
    const before = { all: await xenstoreCount(lab), ours: (await backends()).length, netvmVifs };
    const start = performance.now();
    for (let i = 0; i < CYCLES; i++) {
      const [device] = await listVifs(lab, CLIENT.name);
      expect(device).toBeDefined();
      await detachVif(lab, CLIENT.name, device ?? 0);
      expect(await listVifs(lab, CLIENT.name)).toEqual([]);
      expect(await backends()).toEqual([]);
      await attachVif(lab, CLIENT.name, { backend: MIDDLE.name, ip: CLIENT.ip, mac: CLIENT.mac });
    }
    figures.cyclesMs = Math.round(performance.now() - start);
    const after = {
      all: await xenstoreCount(lab),
      ours: (await backends()).length,
      netvmVifs: (await netvm.command<{ vifs: string[] }>({ op: 'vifs' })).vifs,
    };
    figures.cycles = { count: CYCLES, before, after };
    expect(after).toEqual(before);
    expect((await backends())[0]).toMatchObject({ state: '4', frontendState: '4', mapped: true });
  }, 2_400_000);
});
