import { describe, expect, it } from 'vitest';
import { Errno } from '../errno.ts';
import { XenError } from '../types.ts';
import { SimHypervisor } from './hypervisor.ts';

const tick = () => new Promise<void>((r) => setImmediate(r));

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(XenError);
    return (e as XenError).code;
  }
  return 'no error';
}

describe('sim event channels', () => {
  it('binds an unbound port and delivers notifications asynchronously, both ways', async () => {
    const hv = new SimHypervisor();
    const vm = hv.createDomain();
    const seen0: number[] = [];
    const seenVm: number[] = [];
    hv.dom0.eventChannels.onEvent((p) => seen0.push(p));
    vm.eventChannels.onEvent((p) => seenVm.push(p));
    const unbound = vm.eventChannels.allocUnbound(0);
    expect(vm.eventChannels.status(unbound)).toBe('unbound');
    const local = hv.dom0.eventChannels.bindInterdomain(vm.domid, unbound);
    expect(vm.eventChannels.status(unbound)).toBe('interdomain');
    hv.dom0.eventChannels.notify(local);
    expect(seenVm).toEqual([]); // never synchronous
    await tick();
    expect(seenVm).toEqual([unbound]);
    vm.eventChannels.notify(unbound);
    await tick();
    expect(seen0).toEqual([local]);
  });

  it('coalesces notifications into one event while the port is pending', async () => {
    const hv = new SimHypervisor();
    const vm = hv.createDomain();
    const seen: number[] = [];
    vm.eventChannels.onEvent((p) => seen.push(p));
    const port = vm.eventChannels.allocUnbound(0);
    const local = hv.dom0.eventChannels.bindInterdomain(vm.domid, port);
    for (let i = 0; i < 5; i++) hv.dom0.eventChannels.notify(local);
    await tick();
    await tick();
    expect(seen).toEqual([port]);
  });

  it('re-delivers a notification that arrived while its listener ran (masked, then unmasked)', async () => {
    const hv = new SimHypervisor();
    const vm = hv.createDomain();
    const port = vm.eventChannels.allocUnbound(0);
    const local = hv.dom0.eventChannels.bindInterdomain(vm.domid, port);
    let calls = 0;
    vm.eventChannels.onEvent(() => {
      calls++;
      if (calls === 1) hv.dom0.eventChannels.notify(local);
    });
    hv.dom0.eventChannels.notify(local);
    for (let i = 0; i < 4; i++) await tick();
    expect(calls).toBe(2);
  });

  it('fails as Xen does: wrong domain EINVAL, no domain ESRCH, unbound local port ENOTCONN', () => {
    const hv = new SimHypervisor();
    const a = hv.createDomain();
    const b = hv.createDomain();
    const forA = b.eventChannels.allocUnbound(a.domid);
    expect(code(() => hv.dom0.eventChannels.bindInterdomain(b.domid, forA))).toBe('EINVAL');
    expect(code(() => a.eventChannels.bindInterdomain(b.domid, 999))).toBe('EINVAL');
    expect(code(() => a.eventChannels.bindInterdomain(77, 1))).toBe('ESRCH');
    expect(code(() => a.eventChannels.notify(5))).toBe('ENOTCONN');
    expect(code(() => a.eventChannels.unbind(5))).toBe('ENOTCONN');
    a.eventChannels.bindInterdomain(b.domid, forA);
    // a port can be bound once only
    expect(code(() => hv.dom0.eventChannels.bindInterdomain(b.domid, forA))).toBe('EINVAL');
  });

  it('turns the peer end back to unbound on unbind and drops notifications sent to it', async () => {
    const hv = new SimHypervisor();
    const vm = hv.createDomain();
    const seen: number[] = [];
    hv.dom0.eventChannels.onEvent((p) => seen.push(p));
    const port = vm.eventChannels.allocUnbound(0);
    const local = hv.dom0.eventChannels.bindInterdomain(vm.domid, port);
    hv.dom0.eventChannels.unbind(local);
    expect(vm.eventChannels.status(port)).toBe('unbound');
    expect(hv.dom0.eventChannels.status(local)).toBe('closed');
    vm.eventChannels.notify(port); // silently dropped, as Xen's evtchn_send on an unbound port
    await tick();
    expect(seen).toEqual([]);
    // ...and the peer may be bound again by the same domain
    const again = hv.dom0.eventChannels.bindInterdomain(vm.domid, port);
    expect(hv.dom0.eventChannels.status(again)).toBe('interdomain');
  });

  it('closes every port when a domain is destroyed, leaving the peers unbound', () => {
    const hv = new SimHypervisor();
    const vm = hv.createDomain();
    const p0 = hv.dom0.eventChannels.allocUnbound(vm.domid);
    vm.eventChannels.bindInterdomain(0, p0);
    hv.destroyDomain(vm.domid);
    expect(hv.dom0.eventChannels.status(p0)).toBe('unbound');
    expect(code(() => vm.eventChannels.allocUnbound(0))).toBe('EBADF');
    expect(code(() => hv.domain(vm.domid))).toBe('ESRCH');
  });

  it('hands out ports from 1 and reuses freed ones', () => {
    const hv = new SimHypervisor({ maxPort: 3 });
    const ec = hv.dom0.eventChannels;
    expect([ec.allocUnbound(1), ec.allocUnbound(1), ec.allocUnbound(1)]).toEqual([1, 2, 3]);
    expect(code(() => ec.allocUnbound(1))).toBe('ENOSPC');
    ec.unbind(2);
    expect(ec.allocUnbound(1)).toBe(2);
    expect(Errno.ENOSPC).toBe(28);
  });

  it('stops delivering after unsubscribe and after close', async () => {
    const hv = new SimHypervisor();
    const vm = hv.createDomain();
    const seen: number[] = [];
    const off = vm.eventChannels.onEvent((p) => seen.push(p));
    const port = vm.eventChannels.allocUnbound(0);
    const local = hv.dom0.eventChannels.bindInterdomain(vm.domid, port);
    off();
    hv.dom0.eventChannels.notify(local);
    await tick();
    expect(seen).toEqual([]);
    vm.eventChannels.onEvent((p) => seen.push(p));
    await tick();
    expect(seen).toEqual([port]); // the pending event waited for a listener
    vm.eventChannels.close();
    hv.dom0.eventChannels.notify(local);
    await tick();
    expect(seen).toEqual([port]);
  });
});
