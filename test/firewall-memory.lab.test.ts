/**
 * The memory sweep of sys-moat's 20-client case (`memorySweep` in @moat/lab, which `./moat bench
 * firewall` reports): for each `memory = maxmem` setting, largest first, a new sys-moat serves 20
 * client vifs over two Linux domUs, each pings the netvm through it, and its memory is read
 * through moat.FirewallStats. Long (a sys-moat boot and 20 hot-plugs per setting), so it runs
 * only with MOAT_LAB_SWEEP=1 (sizes from MOAT_LAB_SWEEP_SIZES, default "128,96,80,64,48"; measured: docs/firewall-memory.md).
 */
import { buildGuestAddon, type LabSession, labSession, memorySweep } from '@moat/lab';
import { buildFirewallImage } from '@moat/unikernel';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const SWEEP = process.env.MOAT_LAB_SWEEP === '1';
const SIZES = (process.env.MOAT_LAB_SWEEP_SIZES ?? '128,96,80,64,48').split(',').map(Number);

let lab: LabSession | undefined;

beforeAll(async () => {
  if (!SWEEP) return;
  lab = await labSession('firewall-memory', { addon: await buildGuestAddon(), bootTimeoutMs: 1_200_000 });
}, 1_500_000);

afterAll(async () => {
  await lab?.end();
});

describe.runIf(SWEEP)('sys-moat memory sweep, 20 clients (lab, real Xen)', () => {
  it('finds the smallest memory = maxmem at which every client passes traffic', {
    timeout: 14_400_000,
  }, async () => {
    if (!lab) throw new Error('no lab');
    const report = await memorySweep(lab, {
      firewallImage: (await buildFirewallImage()).image,
      sizesMb: SIZES,
      log: (line) => console.log(line),
    });
    console.log(`memory sweep report: ${JSON.stringify(report)}`);
    expect(report.points[0]?.ok, JSON.stringify(report.points[0])).toBe(true);
  });
});
