import { xenConformanceSuite } from '@moat/xen/conformance';
import { SimHypervisor } from '@moat/xen/sim';
import { conformanceSuite } from '@moat/xenstore/conformance';
import { XenstoredSim } from '@moat/xenstore/sim';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bootLab,
  buildGuestAddon,
  expectGuestOk,
  type GuestHandle,
  type GuestRun,
  guestImage,
  type Lab,
} from '../src/index.ts';

/**
 * The Xen libraries on real Xen 4.17: @moat/xenstore's conformance suite against the C
 * xenstored (dom0's unix socket, a domU's /dev/xen/xenbus) and @moat/xen's primitives
 * (loopback suite in a domU; grants and event channels between a domU and dom0). One lab for
 * the file; the domUs start together in beforeAll and each test awaits its own.
 */
const XEN_GUEST = new URL('./guests/xen.guest.ts', import.meta.url).pathname;
const WAIT = { timeoutMs: 600_000 };

let lab: Lab;
let bundle: string;
let xenstoreDomU: GuestHandle;
let loopbackDomU: GuestHandle;
let shareDomU: GuestHandle;

beforeAll(async () => {
  const addon = await buildGuestAddon();
  const built = await guestImage(XEN_GUEST, { addon });
  bundle = built.bundle;
  lab = await bootLab({ addon, memoryMb: 2048 });
  xenstoreDomU = lab.createDomU(built.image, {
    type: 'pv',
    name: 'xenstore',
    args: { role: 'xenstore-xenbus' },
  });
  loopbackDomU = lab.createDomU(built.image, {
    type: 'pv',
    name: 'loopback',
    args: { role: 'xen-loopback' },
  });
  shareDomU = lab.createDomU(built.image, { type: 'pv', name: 'share', args: { role: 'share' } });
});

afterAll(async () => {
  await lab?.shutdown();
});

/** The case ids of the xenstore suite, as the sim run (xenstore/src/conformance.test.ts) has them. */
function xenstoreIds(): string[] {
  const sim = new XenstoredSim();
  return conformanceSuite({ connect: sim.transportFactory(0), domid: 0, privileged: true }).map((c) => c.id);
}

function xenIds(): string[] {
  return xenConformanceSuite({ domain: new SimHypervisor().dom0 }).map((c) => c.id);
}

function expectSameCases(run: GuestRun, ids: string[]): void {
  expectGuestOk(run);
  expect(run.results.map((r) => r.name)).toEqual(ids);
}

describe('xenstore-js against the C xenstored (lab)', () => {
  it('passes every conformance case over the unix socket in dom0', async () => {
    const run = await lab.runInDom0(bundle, { args: { role: 'xenstore-socket' } }).finished(WAIT);
    expectSameCases(run, xenstoreIds());
  });

  it('passes every conformance case over /dev/xen/xenbus in a domU', async () => {
    expectSameCases(await xenstoreDomU.finished(WAIT), xenstoreIds());
  });
});

describe('the native Xen primitives on real Xen (lab)', () => {
  it('pass the loopback conformance suite in a domU', async () => {
    expectSameCases(await loopbackDomU.finished(WAIT), xenIds());
  });

  it('share a domU page with dom0: writable and read-only maps, grant copy, event channels both ways', async () => {
    const offer = await shareDomU.result('offer', WAIT);
    expect(offer.ok).toBe(true);
    const dom0 = await lab.runInDom0(bundle, { args: { role: 'map', offer: offer.data } }).finished(WAIT);
    expectGuestOk(dom0);
    expect(dom0.results.map((r) => r.name)).toEqual([
      'map writable and read',
      'map read-only',
      'grant copy both directions',
      'event to the domU',
      'event from the domU',
    ]);
    const domU = expectGuestOk(await shareDomU.finished(WAIT));
    expect(domU.results.map((r) => r.name)).toEqual([
      'offer',
      'event from dom0',
      'dom0 wrote into the shared page',
      'event to dom0',
    ]);
  });
});
