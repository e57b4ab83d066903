import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { socketVchanTransport } from '@moat/vchan/socket';
import { describe, expect, it } from 'vitest';
import { QubesDbDaemon } from './dom0.ts';
import { runDom0Half, runVmHalf, SCENARIO_EXPECTED_EVENTS, SCENARIO_INITIAL } from './scenario.ts';
import { connectQubesDb } from './vm.ts';

describe('the two-sided scenario the lab runs in dom0 and a domU', () => {
  it('passes with our two sides over unix-socket vchan, and reports round trips', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'qubesdb-scenario-'));
    const daemon = new QubesDbDaemon({
      vmDomain: 3,
      transport: socketVchanTransport({ directory, localDomain: 0 }),
      initial: SCENARIO_INITIAL,
      log: () => {},
    });
    try {
      await daemon.start();
      const dom0 = runDom0Half(daemon, { timeoutMs: 10_000, pings: 50 });
      const db = await connectQubesDb({
        transport: socketVchanTransport({ directory, localDomain: 3 }),
        timeoutMs: 5000,
      });
      const vm = runVmHalf(db, { timeoutMs: 10_000 });
      const [dom0Report, vmReport] = await Promise.all([dom0, vm]);
      expect(dom0Report.failures).toEqual([]);
      expect(dom0Report.ok).toBe(true);
      expect(vmReport.events).toEqual(SCENARIO_EXPECTED_EVENTS);
      console.log(
        `qubesdb scenario round trip dom0→VM→dom0 (${dom0Report.roundTrip?.samples}): median ${dom0Report.roundTrip?.medianMs} ms`,
      );
      db.close();
    } finally {
      await daemon.stop();
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('fails clearly when the VM does not see what dom0 wrote', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'qubesdb-scenario-'));
    const daemon = new QubesDbDaemon({
      vmDomain: 3,
      transport: socketVchanTransport({ directory, localDomain: 0 }),
      initial: [['/name', 'something-else']],
      log: () => {},
    });
    try {
      await daemon.start();
      const dom0 = runDom0Half(daemon, { timeoutMs: 10_000, pings: 3 });
      const db = await connectQubesDb({
        transport: socketVchanTransport({ directory, localDomain: 3 }),
        timeoutMs: 5000,
      });
      await runVmHalf(db, { timeoutMs: 10_000 });
      const report = await dom0;
      expect(report.ok).toBe(false);
      expect(report.failures[0]).toMatch(
        /initial dump differs: \/name: expected "moat-lab", got "something-else"/,
      );
      db.close();
    } finally {
      await daemon.stop();
      rmSync(directory, { recursive: true, force: true });
    }
  });
});
