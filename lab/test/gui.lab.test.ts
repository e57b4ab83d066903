import { GUI_SCENARIO } from '@moat/gui-agent/lab';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GuiLabArgs } from '../src/guests/gui.guest.ts';
import {
  bootLab,
  buildGuestAddon,
  expectGuestOk,
  type GuestHandle,
  type GuestResult,
  guestImage,
  type Lab,
} from '../src/index.ts';
import { domainId } from '../src/vchan-lab.ts';

/**
 * Our GUI agent in a PV domU (an application drawing through it, buffers shared with gntalloc)
 * against our strict lab GUI daemon in dom0 (mapping them with gntdev), on real Xen 4.17. The
 * scenario is @moat/gui-agent/lab's (the host test runs it with sim); each test awaits the
 * steps it checks. Frame rates are printed beside the grant-copy rate of the same bytes,
 * never asserted.
 */
const GUEST = new URL('../src/guests/gui.guest.ts', import.meta.url).pathname;
const WAIT = { timeoutMs: 600_000 };
const VM_NAME = 'gui-agent';

let lab: Lab;
let vm: GuestHandle;
let dom0: GuestHandle;

beforeAll(async () => {
  const addon = await buildGuestAddon();
  const built = await guestImage(GUEST, { addon });
  lab = await bootLab({ addon, bootTimeoutMs: 600_000 });
  vm = lab.createDomU(built.image, {
    type: 'pv',
    name: VM_NAME,
    memoryMb: 192,
    args: { role: 'vm' } satisfies GuiLabArgs,
  });
  const peer = await domainId(lab, VM_NAME);
  dom0 = lab.runInDom0(built.bundle, {
    args: { role: 'dom0', peer } satisfies GuiLabArgs,
    timeoutMs: 900_000,
  });
});

afterAll(async () => {
  await lab?.shutdown();
});

async function data<T>(guest: GuestHandle, step: string): Promise<T> {
  const result: GuestResult = await guest.result(step, WAIT);
  if (!result.ok) throw new Error(`${guest.guest}: ${step} failed: ${result.error}`);
  return result.data as T;
}

interface Differences {
  count: number;
  first: string[];
}

describe('our GUI agent in a domU against our lab GUI daemon in dom0 on real Xen (lab)', () => {
  it('the agent and daemon agree on protocol 1.7', async () => {
    expect(await data(vm, 'agent up')).toMatchObject({ version: 0x10007 });
    expect(await data(dom0, 'daemon connected')).toEqual({ agentVersion: 0x10007, version: 0x10007 });
  });

  it("the domU's test pattern is in dom0's image and PNG pixel for pixel", async () => {
    await data(vm, 'window drawn');
    const seen = await data<{ window: string; image: Differences; png: Differences & { width: number } }>(
      dom0,
      'pattern matches',
    );
    expect(seen.window).toBe('moat gui lab');
    expect(seen.image).toEqual({ count: 0, first: [] });
    expect(seen.png).toMatchObject({ width: GUI_SCENARIO.first.width, count: 0 });
  });

  it('a resize from dom0 reaches the domU, which redraws at the new size', async () => {
    const resized = await data<{ geometry: object; image: Differences }>(dom0, 'resize reached the domU');
    expect(resized.geometry).toEqual({ ...GUI_SCENARIO.resized, queued: false });
    expect(resized.image).toEqual({ count: 0, first: [] });
  });

  it('a damage update changes exactly the damaged pixels', async () => {
    const damage = await data<{ insideWrong: number; outsideChanged: number; changed: number }>(
      dom0,
      'keys and damage',
    );
    expect(damage).toMatchObject({ insideWrong: 0, outsideChanged: 0 });
    expect(damage.changed).toBeGreaterThan(0);
  });

  it('key presses reach the domU with their meaning in its layout, and a close request ends the window', async () => {
    const closed = await data<{ windows: number; mappedPages: number; warnings: string[] }>(
      dom0,
      'close request ended it',
    );
    expect(closed).toEqual({ windows: 0, mappedPages: 0, warnings: [] });
    const handled = await data<{
      events: { type: string; pressed?: boolean; keysym?: string }[];
      sharedPages: number;
    }>(vm, 'events handled');
    const keys = handled.events.filter((e) => e.type === 'key' && e.pressed).map((e) => e.keysym);
    expect(keys).toEqual(['a', 'z', 'Left', 'KP_Add']); // keycode 29 is z in the de layout
    expect(handled.events.some((e) => e.type === 'resize')).toBe(true);
    expect(handled.events.some((e) => e.type === 'close-request')).toBe(true);
    expect(handled.sharedPages).toBe(0);
  });

  it(`${GUI_SCENARIO.cycles} open/close cycles leave no grants on either side`, async () => {
    expect(await data(vm, 'open/close cycles')).toEqual({ sharedPages: 0, windows: 0 });
    expect(await data(dom0, 'cycles leave no grants')).toMatchObject({
      destroyed: GUI_SCENARIO.cycles,
      windows: 0,
      mappedPages: 0,
    });
  });

  it('full-window 800x600 updates: frames per second beside the grant-copy rate of the same bytes', async () => {
    const bench = await data<{ fps: number; grantCopyFps: number; grantCopyMiBps: number; ratio: number }>(
      dom0,
      'bench frames and grant copy',
    );
    console.log(`gui lab bench: ${JSON.stringify(bench)}`);
    expect(bench.fps).toBeGreaterThan(0);
    expect(await data(vm, 'bench frames')).toMatchObject({ sharedPages: 0 });
    expectGuestOk(await dom0.finished(WAIT));
    expectGuestOk(await vm.finished(WAIT));
  });
});
