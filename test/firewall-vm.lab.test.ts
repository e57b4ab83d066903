/**
 * sys-moat's own image (unikernel's buildFirewallImage: firewall/src/vm/main.ts, node, the Xen
 * addon) booted on real Xen as a TemplateVM is booted after `qvm-template install`: no netvm, no
 * clients, QubesDB from dom0 holding what qubesd writes for a TemplateVM. It must synchronise
 * QubesDB, bring up its qrexec agent, answer what dom0 calls (qubes.PostInstall with its feature
 * request back to dom0, qubes.WaitForSession, moat.FirewallStats; no shell), idle, and power off
 * when dom0 asks through `control/shutdown` (`xl shutdown`).
 */
import {
  buildGuestAddon,
  bundleEntry,
  domainId,
  type GuestHandle,
  type GuestResult,
  type LabSession,
  labSession,
  type QubesDbService,
  qubesDbEntries,
  serveQubesDb,
} from '@moat/lab';
import { buildFirewallImage } from '@moat/unikernel';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const NAME = 'moat-firewall';
const DOM0_GUEST = new URL('./guests/firewall-vm-dom0.guest.ts', import.meta.url).pathname;
const WAIT = { timeoutMs: 420_000 };
/**
 * PV, as the lab's other agent tests (qubes-agents); Qubes boots the template PVH, which
 * MOAT_LAB_FIREWALL_VIRT=pvh runs (passed; one run under heavy load timed out: lab/NOTES.md).
 */
const VIRT = process.env.MOAT_LAB_FIREWALL_VIRT === 'pvh' ? 'pvh' : 'pv';

let lab: LabSession;
let vm: GuestHandle;
let dom0: GuestHandle;
let qubesdb: QubesDbService;
let imageKey = '';

beforeAll(async () => {
  const addon = await buildGuestAddon();
  const built = await buildFirewallImage();
  imageKey = built.image.key;
  const dom0Bundle = await bundleEntry(DOM0_GUEST);
  lab = await labSession('firewall-vm', { addon });
  vm = lab.createDomU(built.image, { type: VIRT, name: NAME, memoryMb: 192 });
  const domid = await domainId(lab, NAME);
  qubesdb = await serveQubesDb(lab, [
    {
      domid,
      name: NAME,
      entries: qubesDbEntries({ name: NAME, klass: 'TemplateVM', vmConfig: { 'log-level': 'debug' } }),
    },
  ]);
  dom0 = lab.runInDom0(dom0Bundle, { args: { peer: domid, name: NAME }, timeoutMs: 600_000 });
});

afterAll(async () => {
  await qubesdb?.stop().catch(() => undefined);
  await lab?.end();
});

async function data<T>(guest: GuestHandle, step: string): Promise<T> {
  const result: GuestResult = await guest.result(step, WAIT);
  if (!result.ok) throw new Error(`${guest.guest}: ${step} failed: ${result.error}\n${vm.tail(30)}`);
  return result.data as T;
}

interface Call {
  exitCode: number;
  stdout: string;
  stderr: string;
  ms: number;
}

describe('sys-moat booted as a TemplateVM on real Xen (lab)', () => {
  it('synchronises QubesDB, takes its settings from /vm-config/ and brings up its qrexec agent', async () => {
    await vm.consoleLine(/sys-moat info: starting/, WAIT);
    await vm.consoleLine(/sys-moat info: Xen opened: domain \d+/, WAIT);
    await vm.consoleLine(/sys-moat info: QubesDB synchronised: moat-firewall, TemplateVM/, WAIT);
    await vm.consoleLine(/sys-moat info: qrexec agent listening/, WAIT);
    await vm.consoleLine(/sys-moat info: up in \d+ ms; role: none/, WAIT);
    expect(imageKey).toMatch(/^[0-9a-f]{32}$/);
  });

  it("answers dom0's calls: PostInstall (feature request back to dom0), WaitForSession, no shell", async () => {
    expect((await data<{ version: number }>(dom0, 'qrexec connected')).version).toBe(3);
    const post = await data<Call & { vmCalled: string[] }>(dom0, 'qubes.PostInstall');
    expect(post.exitCode).toBe(0);
    expect(post.vmCalled).toContain('qubes.FeaturesRequest');
    expect((await data<Call>(dom0, 'qubes.WaitForSession')).exitCode).toBe(0);
    expect((await data<Call>(dom0, 'qubes.VMShell')).exitCode).toBe(127);
  });

  it('returns its counters as JSON through moat.FirewallStats, serving no network', async () => {
    const call = await data<Call>(dom0, 'moat.FirewallStats');
    expect(call.exitCode).toBe(0);
    const doc = JSON.parse(call.stdout) as {
      version: number;
      settings: { logLevel: string };
      network: { role: string; clients: unknown[]; uplink: { state: string } };
      memory: { rss: number };
    };
    expect(doc.version).toBe(1);
    expect(doc.settings.logLevel).toBe('debug');
    expect(doc.network).toMatchObject({ role: 'none', clients: [], uplink: { state: 'none' } });
    console.log(
      `sys-moat as a TemplateVM: rss ${(doc.memory.rss / 2 ** 20).toFixed(1)} MiB, stats call ${call.ms} ms`,
    );
    await data(dom0, 'close');
  });

  it('powers off when dom0 asks through control/shutdown (xl shutdown)', async () => {
    const asked = await lab.exec(['xl', 'shutdown', NAME]);
    expect(asked.code, asked.lines.join('\n')).toBe(0);
    const run = await vm.finished(WAIT);
    const console = run.lines.join('\n');
    expect(console, vm.tail(30)).toContain('sys-moat info: shutting down: shutdown requested (SIGTERM');
    expect(console).toContain('sys-moat info: stopped');
    expect(console).toContain("moat-init: node ended after dom0's poweroff request");
    expect(console).toContain('moat-init: node exited with code 0');
    expect(run.ending).toContain('poweroff');
  });
});
