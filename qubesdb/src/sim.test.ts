import { xenVchanTransport } from '@moat/vchan';
import { SimHypervisor } from '@moat/xen/sim';
import { describe, expect, it } from 'vitest';
import { QubesDbDaemon } from './dom0.ts';
import { runDom0Half, runVmHalf, SCENARIO_INITIAL } from './scenario.ts';
import { connectQubesDb } from './vm.ts';

/** QubesDB over libxenvchan's ring protocol (the xen sim): 4 KiB rings, as Qubes sets them up for port 111. */
describe('QubesDB over the xen sim (libxenvchan rings)', () => {
  it('synchronises, pushes updates, carries maximum-size values and runs the lab scenario', async () => {
    const hv = new SimHypervisor();
    const vmDomain = hv.createDomain({ name: 'sys-moat' });
    const big = 'v'.repeat(3071); // header + value = 3143 bytes: must fit one 4 KiB ring
    const daemon = new QubesDbDaemon({
      vmDomain: vmDomain.domid,
      transport: xenVchanTransport(hv.dom0),
      initial: [...SCENARIO_INITIAL, ['/big/1', big], ['/big/2', big], ['/big/3', big]],
      log: () => {},
    });
    await daemon.start();
    try {
      const dom0Half = runDom0Half(daemon, { timeoutMs: 10_000, pings: 20 });
      const db = await connectQubesDb({
        transport: xenVchanTransport(vmDomain),
        timeoutMs: 5000,
        log: () => {},
      });
      expect(db.read('/big/3')).toBe(big);
      const vmHalf = runVmHalf(db, { timeoutMs: 10_000 });
      const report = await dom0Half;
      await vmHalf;
      expect(report.failures).toEqual([]);
      // Many maximum-size writes in a row: the ring is smaller than the burst, backpressure carries it.
      const seen: string[] = [];
      db.watch('/burst/', (path) => seen.push(path));
      for (let i = 0; i < 20; i++) daemon.write(`/burst/${i}`, big);
      for (let i = 0; i < 200 && seen.length < 20; i++)
        await new Promise((resolve) => setTimeout(resolve, 5));
      expect(seen.length).toBe(20);
      expect(db.read('/burst/19')).toBe(big);
      db.write('/qubes-vm-state', 'up');
      for (let i = 0; i < 200 && daemon.read('/qubes-vm-state') === undefined; i++) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      expect(daemon.read('/qubes-vm-state')).toBe('up');
      db.close();
    } finally {
      await daemon.stop();
    }
  });
});
