import { describe, expect, it } from 'vitest';
import {
  DomUHandle,
  parseXlLine,
  shutdownReasonWords,
  tripleFaultOnHostState,
  xenLinesAbout,
} from './domu-end.ts';
import { LabError } from './errors.ts';
import { expectGuestOk } from './guest-run.ts';
import { encodeMessage } from './protocol.ts';

/** What `xl create -F` printed for the flaky PVH run (tools/xl/xl_vmcontrol.c), as the lab feeds it. */
const XL_REBOOT = [
  'xl: Parsing config from /run/lab-pvh.cfg',
  'xl: Waiting for domain lab-pvh (domid 2) to die [pid 143]',
  'xl: Domain 2 has shut down, reason code 1 0x0',
  'xl: Action for shutdown reason code 1 is preserve',
  'xl: Done. Exiting now',
];

const XEN_CONSOLE = [
  '(XEN) d1v0 Triple fault - invoking HVM shutdown action 1',
  '(XEN) d2v0 Triple fault - invoking HVM shutdown action 1',
  '(XEN) *** Dumping Dom2 vcpu#0 state: ***',
  '(d2) [    0.000000] early panic',
  '(XEN) d12v0 something about domain 12',
];

describe('how a domU ended, in words', () => {
  it('names every Xen shutdown reason (public/sched.h SHUTDOWN_*)', () => {
    expect([0, 1, 2, 3, 4, 5].map(shutdownReasonWords)).toEqual([
      'poweroff (reason code 0)',
      'reboot (reason code 1)',
      'suspend (reason code 2)',
      'crash (reason code 3)',
      'watchdog (reason code 4)',
      'soft_reset (reason code 5)',
    ]);
    expect(shutdownReasonWords(9)).toBe('unknown reason (reason code 9)');
  });

  it("reads the domain id and the shutdown from xl's lines", () => {
    expect(parseXlLine(XL_REBOOT[1] ?? '')).toEqual({ kind: 'domid', domid: 2 });
    expect(parseXlLine(XL_REBOOT[2] ?? '')).toEqual({ kind: 'shutdown', domid: 2, code: 1 });
    expect(parseXlLine('xl: Domain 7 has been destroyed.')).toEqual({ kind: 'destroyed', domid: 7 });
    expect(parseXlLine('xl: Parsing config from /run/x.cfg')).toBeUndefined();
  });

  it("picks Xen's lines about one domain and no other", () => {
    expect(xenLinesAbout(XEN_CONSOLE, 2)).toEqual(XEN_CONSOLE.slice(1, 4));
  });

  it("keeps the vCPU state Xen dumps after a domain's triple fault, and nothing after it", () => {
    // The shape of xen/common/keyhandler.c vcpu_show_execution_state on Xen 4.17 (lines abridged).
    const console = [
      '(XEN) d3v0 Triple fault - invoking HVM shutdown action 1',
      '(XEN) *** Dumping Dom3 vcpu#0 state: ***',
      '(XEN) ----[ Xen-4.17.6-pre  x86_64  debug=n  Not tainted ]----',
      '(XEN) CPU:    1',
      '(XEN) RIP:    0010:[<ffffffff81e0a1b2>]',
      '(XEN) RFLAGS: 0000000000010046   CONTEXT: hvm guest (d3v0)',
      '(XEN) rax: 0000000000000000   rbx: d000000000000000   rcx: 0000000000000000',
      '(XEN) cr0: 0000000080050033   cr4: 00000000003506f0',
      '(XEN) ds: 0000   es: 0000   fs: 0000   gs: 0000   ss: 0000   cs: 0010',
      '(XEN) d0v1 unrelated line',
      '(XEN) grant_table.c:1234: unrelated line after the dump',
      '(XEN) *** Dumping Dom4 vcpu#0 state: ***',
      '(XEN) RIP:    0010:[<ffffffff8100dead>]',
    ];
    expect(xenLinesAbout(console, 3)).toEqual(console.slice(0, 9));
    expect(xenLinesAbout(console, 4)).toEqual(console.slice(11));

    // ... and the failure of the domU that triple-faulted says where its vCPU was.
    const guest = new DomUHandle(
      'domU lab-pvh (pvh)',
      () => {},
      (domid) => xenLinesAbout(console, domid),
    );
    guest.line('xl: Waiting for domain lab-pvh (domid 3) to die [pid 143]');
    guest.line('xl: Domain 3 has shut down, reason code 1 0x1');
    guest.exited(0, 'exit code 0');
    expect(() => expectGuestOk(guest.snapshot())).toThrow(
      /reboot \(reason code 1\)[\s\S]*Xen about this domain:\n\(XEN\) d3v0 Triple fault[\s\S]*RIP: {4}0010:\[<ffffffff81e0a1b2>\]/,
    );
  });

  it("names a triple fault on Xen's own registers as the emulator's loss of the guest's state", () => {
    // Captured in the lab on 2026-12-06 15:36 (a PVH GRUB domU loading its kernel; Xen 4.17.5,
    // QEMU 7.2 TCG): RIP is the instruction after `vmrun` in svm_asm_do_resume, RAX the VMCB.
    const console = [
      '(XEN) d1v0 Triple fault - invoking HVM shutdown action 1',
      '(XEN) *** Dumping Dom1 vcpu#0 state: ***',
      '(XEN) ----[ Xen-4.17.5  x86_64  debug=n  Not tainted ]----',
      '(XEN) CPU:    0',
      '(XEN) RIP:    e008:[<ffff82d040204505>]',
      '(XEN) RFLAGS: 0000000000000246   CONTEXT: hvm guest (d1v0)',
      '(XEN) rax: 000000007de0b000   rbx: 0000000000000000   rcx: 0000000000000000',
      '(XEN) rbp: 000000000011a698   rsp: ffff83007fc9ff70   r8:  0000000000000000',
      '(XEN) r15: 0000000000000000   cr0: 0000000000000011   cr4: 0000000000000000',
      '(XEN) cr3: 000000007de67000   cr2: 0000000000000000',
      '(XEN) ds: 0000   es: 0000   fs: 0010   gs: 0010   ss: 0000   cs: e008',
    ];
    const words = tripleFaultOnHostState(xenLinesAbout(console, 1));
    expect(words).toMatch(/Xen's own registers .*RIP e008:ffff82d040204505.*QEMU's SVM emulation lost/);
    // A triple fault in the guest's own code is not that.
    const guestOwn = console.map((line) =>
      line.replace('e008:[<ffff82d040204505>]', '0010:[<ffffffff81e0a1b2>]').replace('cs: e008', 'cs: 0010'),
    );
    expect(tripleFaultOnHostState(guestOwn)).toBeUndefined();
    expect(tripleFaultOnHostState(console.slice(1))).toBeUndefined();

    const guest = new DomUHandle(
      'domU lab-template (pvh)',
      () => {},
      (domid) => xenLinesAbout(console, domid),
    );
    guest.line('xl: Waiting for domain lab-template (domid 1) to die [pid 144]');
    guest.line('xl: Domain 1 has shut down, reason code 1 0x1');
    guest.exited(0, 'exit code 0');
    expect(() => expectGuestOk(guest.snapshot())).toThrow(
      /reboot \(reason code 1\), a triple fault with Xen's own registers[\s\S]*cs: e008/,
    );
  });

  it('a domU that rebooted without a console line fails with the reason, xl and Xen in the message', async () => {
    const guest = new DomUHandle(
      'domU lab-pvh (pvh)',
      () => {},
      (domid) => xenLinesAbout(XEN_CONSOLE, domid),
    );
    for (const line of XL_REBOOT) guest.line(line);
    guest.exited(0, 'exit code 0');
    const run = await guest.finished();
    expect(run.ending).toBe('the domain shut down: reboot (reason code 1); xl create: exit code 0');
    expect(() => expectGuestOk(run)).toThrow(LabError);
    let message = '';
    try {
      expectGuestOk(run);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/never reported done \(the domain shut down: reboot \(reason code 1\)/);
    expect(message).toContain('its output: nothing (not one line reached its console)');
    expect(message).toContain('xl: Domain 2 has shut down, reason code 1 0x0');
    expect(message).toContain('Xen about this domain:\n(XEN) d2v0 Triple fault');
    expect(message).not.toContain('d1v0');
  });

  it('a guest that crashed mid-run fails with the tail of its own console and the reason', async () => {
    const guest = new DomUHandle(
      'domU t (pv)',
      () => {},
      () => [],
    );
    guest.line('xl: Waiting for domain t (domid 5) to die [pid 9]');
    guest.line('moat-init: node started (pid 81)');
    guest.line(encodeMessage({ kind: 'result', name: 'a', ok: true, ms: 1 }));
    guest.line('[   40.1] Kernel panic - not syncing: Fatal exception');
    guest.line('xl: Domain 5 has shut down, reason code 3 0x0');
    guest.exited(0, 'exit code 0');
    await expect(guest.result('b')).rejects.toThrow(
      /the domain shut down: crash \(reason code 3\)[\s\S]*without reporting "b"[\s\S]*its output, last 3 of 3 lines:\nmoat-init: node started[\s\S]*Kernel panic/,
    );
  });

  it("names a panic's headline even when its trace pushed it out of the console's tail", async () => {
    const guest = new DomUHandle(
      'domU t (pvh)',
      () => {},
      () => [],
    );
    guest.line('xl: Waiting for domain t (domid 5) to die [pid 9]');
    guest.line('[  168.08] Kernel panic - not syncing: sysrq triggered crash');
    for (let i = 0; i < 45; i++) guest.line(`[  168.09]  ? frame_${i}+0x10/0x20`);
    guest.line('xl: Domain 5 has shut down, reason code 3 0x3');
    guest.exited(0, 'exit code 0');
    expect(() => expectGuestOk(guest.snapshot())).toThrow(
      /kernel errors before that:\n\[ {2}168\.08\] Kernel panic - not syncing: sysrq triggered crash\nits output, last 30 of 46 lines/,
    );
  });

  it('a domU destroyed from dom0 (a timeout) says so', async () => {
    const guest = new DomUHandle(
      'domU t (pv)',
      () => {},
      () => [],
    );
    guest.line('xl: Waiting for domain t (domid 5) to die [pid 9]');
    guest.line('xl: Domain 5 has been destroyed.');
    guest.exited(0, 'exit code 0');
    expect((await guest.finished()).ending).toMatch(/^the domain was destroyed from dom0/);
  });
});
