import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  expectGuestOk,
  type GuestHandle,
  type GuestRun,
  guestImage,
  type LabSession,
  labSession,
} from '../src/index.ts';

/**
 * Guests that end without `done` fail with their own console's tail and the domain's shutdown
 * reason in words, on real Xen: node exiting early (poweroff), and a kernel panic in a PV and in a
 * PVH domU (the panic's lines reach the report because the shut-down domain is kept until dom0's
 * agent has drained its console log). The three domUs run at once on the run's shared lab.
 */
const GUEST = new URL('./guests/guest-end.guest.ts', import.meta.url).pathname;
const WAIT = { timeoutMs: 480_000 };

let lab: LabSession;
let early: GuestHandle;
let pvPanic: GuestHandle;
let pvhPanic: GuestHandle;
// A PVH guest's panic usually ends as crash (code 3), but one fresh-clone lab phase of four on
// 2026-12-06 saw it end as reboot (code 1), the ending of issue 10's unexplained PVH failure:
// the likeliest explanation of that failure, not yet understood (Linux's Xen panic notifier vs
// its emergency restart in a PVH guest), so the case runs only in long runs until it is.
const PVH_PANIC = process.env.MOAT_LAB_LONG === '1';

beforeAll(async () => {
  const { image } = await guestImage(GUEST);
  lab = await labSession('guest-end');
  early = lab.createDomU(image, { type: 'pv', name: 'end-exit', args: { role: 'exit' } });
  pvPanic = lab.createDomU(image, { type: 'pv', name: 'end-panic-pv', args: { role: 'panic' } });
  if (PVH_PANIC)
    pvhPanic = lab.createDomU(image, { type: 'pvh', name: 'end-panic-pvh', args: { role: 'panic' } });
});

afterAll(async () => {
  await lab?.end();
});

// The panic's headline is in the failure, either inside the console tail or named apart when the
// trace after it pushed it out: which one depends on how many frames the kernel prints (41 lines
// in one CI run, more in others). The pushed-out case is proven deterministically in
// lab/src/domu-end.test.ts.
const PANIC_IN_FAILURE =
  /(kernel errors before that|its output, last \d+ of \d+ lines):\n(.*\n)*.*Kernel panic - not syncing: sysrq triggered crash/;

function failure(run: GuestRun): string {
  try {
    expectGuestOk(run);
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error(`${run.guest} passed expectGuestOk without done`);
}

describe('a guest that ends without done explains itself (lab)', () => {
  it("node exiting early: poweroff, with the guest's and init's last lines", async () => {
    const run = await early.finished(WAIT);
    expect(run.done).toBe(false);
    const message = failure(run);
    expect(message).toMatch(/never reported done \(the domain shut down: poweroff \(reason code 0\)/);
    expect(message).toMatch(/guest-end: exit now[\s\S]*moat-init: node exited with code 3/);
  });

  it('a kernel panic in a PV domU: crash, with the panic on its console', async () => {
    const run = await pvPanic.finished(WAIT);
    expect(run.ending).toMatch(/^the domain shut down: crash \(reason code 3\)/);
    expect(run.lines.join('\n')).toMatch(/guest-end: panic now[\s\S]*Kernel panic - not syncing/);
    expect(failure(run)).toMatch(PANIC_IN_FAILURE);
  });

  // Xen 4.17 and Debian's 6.1 cloud kernel: a PVH guest's panic is a crash too, mostly (see PVH_PANIC).
  it.skipIf(!PVH_PANIC)(
    'a kernel panic in a PVH domU: crash too, with the panic on its console',
    async () => {
      const run = await pvhPanic.finished(WAIT);
      expect(run.ending).toMatch(/^the domain shut down: crash \(reason code 3\)/);
      expect(run.lines.join('\n')).toMatch(/guest-end: panic now[\s\S]*Kernel panic - not syncing/);
      expect(failure(run)).toMatch(PANIC_IN_FAILURE);
    },
  );
});
