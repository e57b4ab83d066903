import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { guestImage, type LabSession, labSession } from '../src/index.ts';
import { buildLinuxImage } from '../src/linux-image.ts';
import type { BridgeReport, NetifCommand } from '../src/netif-lab-wire.ts';
import {
  attachVif,
  type CommandVm,
  detachVif,
  hotplugRetries,
  type LinuxVm,
  listVifs,
  memAvailableMiB,
  netvmVif,
  qubesMac,
  startCommandVm,
  startLinuxVm,
  xenstoreCount,
} from '../src/topology.ts';
import { NETVM_PORTS, patternStreamSha256 } from '../src/topology-wire.ts';

/**
 * @moat/netif on real Xen 4.17 between Linux's own drivers: (a) a Linux client qube's
 * xen-netfront uses our netback in our domU, which its vif names as backend the way Qubes
 * names sys-firewall (`backend=<our domU>`, our domU a driver domain); (b) our netfront in
 * that domU uses a Linux netvm's xen-netback. Between the two a trivial TypeScript bridge
 * (guests/netif.guest.ts) passes frames with their offload metadata and counts them. One lab
 * session; the VMs start in beforeAll and the tests run in order on them. Timings are
 * printed, never asserted. CI runs the small case of each kind; MOAT_LAB_LONG=1 the issue's
 * full sizes (64 MiB each way, 50 attach/detach cycles): at load 17-19 the 16 MiB of the first
 * run took 364 s up and 101 s down, and 5 cycles 366 s.
 */
const NETIF_GUEST = new URL('../src/guests/netif.guest.ts', import.meta.url).pathname;
const NETVM = { name: 'nf-netvm', ip: '10.137.0.5' };
const MOAT = { name: 'nf-moat', mac: qubesMac(6) };
const CLIENT = { name: 'nf-client', ip: '10.137.0.10', mac: qubesMac(10) };
const LONG = process.env.MOAT_LAB_LONG === '1';
const STREAM_BYTES = (LONG ? 64 : 8) * 1024 * 1024;
const CYCLES = LONG ? 50 : 5;
const clientVif = { backend: MOAT.name, ip: CLIENT.ip, mac: CLIENT.mac };

let lab: LabSession;
let netvm: LinuxVm;
let moat: CommandVm<NetifCommand>;
let client: LinuxVm;
const figures: Record<string, unknown> = {};
const t0 = performance.now();
const since = () => Math.round(performance.now() - t0);

const bridge = () => moat.command<BridgeReport>({ op: 'bridge' });

/**
 * The bridge's report once its netback has no client left: the service ends a device when it
 * sees the toolstack's removal of its directory (a watch event the guest handles after `xl
 * network-detach` has returned). Bounded: a device that never ends fails with the last report.
 */
async function reportWithoutClients(timeoutMs = 60_000): Promise<BridgeReport> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const report = await bridge();
    if (report.clients.length === 0 || Date.now() > deadline) return report;
    await new Promise((r) => setTimeout(r, 500));
  }
}
const quoted = (ip: string) => ip.replaceAll('.', '\\.');

beforeAll(async () => {
  const built = await buildLinuxImage();
  const ours = await guestImage(NETIF_GUEST, { addon: built.addon });
  lab = await labSession('netif', { addon: built.addon, bootTimeoutMs: 1_200_000 });
  figures.bootMs = lab.timings.bootMs;
  netvm = await startLinuxVm(lab, built.image, { name: NETVM.name, args: { role: 'netvm', ip: NETVM.ip } });
  figures.netvmUpMs = since();
  // Upstream our domU stands in for its client: the netvm routes the client's address to it.
  moat = await startCommandVm<NetifCommand>(lab, ours.image, {
    name: MOAT.name,
    args: { role: 'bridge' },
    memoryMb: 192,
    driverDomain: true,
    vifs: [netvmVif(NETVM.name, CLIENT.ip, MOAT.mac)],
  });
  figures.moatUpMs = since();
  client = await startLinuxVm(lab, built.image, {
    name: CLIENT.name,
    args: { role: 'client', ip: CLIENT.ip, gateway: NETVM.ip },
    // At the default 160 MB the client's node was killed (signal 9) at cycle 46 of 50 after the
    // 64 MiB streams (2026-12-06 17:29); its MemAvailable per cycle is in the figures.
    ...(LONG ? { memoryMb: 256 } : {}),
    vifs: [clientVif],
  });
  figures.clientUpMs = since();
}, 2_400_000);

afterAll(async () => {
  figures.hotplugRetries = hotplugRetries.count;
  console.log(`netif lab figures: ${JSON.stringify(figures)}`);
  await lab?.end();
});

describe('@moat/netif between Linux qubes on real Xen: our domU as backend and frontend (lab)', () => {
  it("connects both ends: the client's netfront to our netback, our netfront to the netvm's netback", async () => {
    const report = await bridge();
    expect(report.clients).toEqual([{ peer: client.domid, devid: 0, state: 'connected' }]);
    expect(report.netfront.mappings + report.netfront.grants).toBeGreaterThan(0);
    expect(report.netback.mappings).toBeGreaterThan(0);
    figures.resourcesConnected = { netback: report.netback, netfront: report.netfront };
  });

  it('ARP resolves and ping answers both ways through the bridge', async () => {
    const fromClient = await client.command<{ outcome: string; received: number; avgMs?: number }>({
      op: 'ping',
      to: NETVM.ip,
      count: 3,
    });
    // Answers, not all three: busybox ping stops waiting for the last reply after about twice
    // the longest RTT so far, and RTTs under emulation on a loaded machine vary by seconds (a
    // run had the netvm's third reply late). linux-net.lab.test.ts asks the same.
    expect(fromClient.outcome).toBe('accepted');
    expect(fromClient.received).toBeGreaterThan(0);
    const fromNetvm = await netvm.command<{ outcome: string; received: number; avgMs?: number }>({
      op: 'ping',
      to: CLIENT.ip,
      count: 3,
    });
    expect(fromNetvm.outcome).toBe('accepted');
    expect(fromNetvm.received).toBeGreaterThan(0);
    // Each side learned the other's MAC through the bridge (ARP, not a static entry).
    const neigh = await client.command<{ code: number; out: string }>({
      op: 'exec',
      argv: ['ip', 'neigh', 'show', NETVM.ip],
    });
    expect(neigh.out).toMatch(/lladdr [0-9a-f:]{17}/);
    const back = await netvm.command<{ code: number; out: string }>({
      op: 'exec',
      argv: ['ip', 'neigh', 'show', CLIENT.ip],
    });
    expect(back.out).toContain(`lladdr ${CLIENT.mac}`);
    const tcp = await client.command<{ outcome: string; reply?: string }>({
      op: 'tcp',
      to: NETVM.ip,
      port: NETVM_PORTS.tcpEcho,
      readReply: true,
    });
    expect(tcp.reply).toMatch(new RegExp(`^from ${quoted(CLIENT.ip)}:\\d+\\nhello$`));
    figures.ping = {
      fromClient: { received: fromClient.received, avgMs: fromClient.avgMs },
      fromNetvm: { received: fromNetvm.received, avgMs: fromNetvm.avgMs },
    };
  });

  it(`moves ${STREAM_BYTES >> 20} MiB each way with the same SHA-256 at both ends, TCP segments crossing as GSO frames`, async () => {
    const expected = await patternStreamSha256(7, STREAM_BYTES);
    await moat.command({ op: 'reset-counts' });
    const up = await client.command<{
      sentBytes: number;
      sentSha256: string;
      receivedBytes: number;
      receivedSha256: string;
      ms: number;
      mbPerS: number;
    }>({ op: 'stream', to: NETVM.ip, bytes: STREAM_BYTES, seed: 7 }, { timeoutMs: 1_200_000 });
    const afterUp = await bridge();
    expect(up).toMatchObject({
      sentBytes: STREAM_BYTES,
      sentSha256: expected,
      receivedBytes: STREAM_BYTES,
      receivedSha256: expected,
    });
    await moat.command({ op: 'reset-counts' });
    const down = await client.command<{
      receivedBytes: number;
      receivedSha256: string;
      ms: number;
      mbPerS: number;
    }>({ op: 'pull', from: NETVM.ip, bytes: STREAM_BYTES, seed: 7 }, { timeoutMs: 1_200_000 });
    const afterDown = await bridge();
    expect(down).toMatchObject({ receivedBytes: STREAM_BYTES, receivedSha256: expected });
    figures.stream = {
      up: { ms: up.ms, mbPerS: up.mbPerS, counts: afterUp.counts.up },
      down: { ms: down.ms, mbPerS: down.mbPerS, counts: afterDown.counts.down },
    };
    // The client's TSO segments reach our domU as one frame each, larger than the MTU.
    expect(afterUp.counts.up.gsoFrames).toBeGreaterThan(0);
    expect(afterUp.counts.up.largest).toBeGreaterThan(1514);
    expect(afterUp.counts.up.dropped).toBe(0);
    expect(afterDown.counts.down.dropped).toBe(0);
  }, 2_400_000);

  it(`detaches and attaches the client's vif ${CYCLES} times with nothing left behind on either side`, async () => {
    const netvmVifs = async () => (await netvm.command<{ vifs: string[] }>({ op: 'vifs' })).vifs;
    const before = { report: await bridge(), all: await xenstoreCount(lab), netvmVifs: await netvmVifs() };
    const start = performance.now();
    // The client's MemAvailable (MiB) every fifth cycle: a Linux netfront that leaks per attach shows here.
    const clientMemory: number[] = [];
    figures.clientMemAvailableMiB = clientMemory;
    for (let i = 0; i < CYCLES; i++) {
      // A failure names its cycle and carries both domUs' consoles (a client that went away
      // says why on its own console, not in xl's "invalid domain identifier").
      try {
        const [device] = await listVifs(lab, CLIENT.name);
        expect(device).toBeDefined();
        await detachVif(lab, CLIENT.name, device ?? 0);
        expect(await listVifs(lab, CLIENT.name)).toEqual([]);
        const detached = await reportWithoutClients();
        expect(detached.clients).toEqual([]);
        // Only the service's own watch is left while no client is attached.
        expect(detached.netback).toEqual({ grants: 0, mappings: 0, eventChannels: 0, watches: 1 });
        await attachVif(lab, CLIENT.name, clientVif);
        if (LONG && i % 5 === 0) clientMemory.push(await memAvailableMiB(client));
      } catch (error) {
        throw new Error(
          `cycle ${i + 1} of ${CYCLES}: ${(error as Error).message}\n` +
            `${CLIENT.name}'s console:\n${client.handle.tail(40)}\n${MOAT.name}'s console:\n${moat.handle.tail(20)}`,
        );
      }
    }
    figures.cyclesMs = Math.round(performance.now() - start);
    await client.command({ op: 'configure', network: {} });
    const after = { report: await bridge(), all: await xenstoreCount(lab), netvmVifs: await netvmVifs() };
    figures.cycles = {
      count: CYCLES,
      xenstore: [before.all, after.all],
      netback: [before.report.netback, after.report.netback],
      netfront: [before.report.netfront, after.report.netfront],
    };
    expect(after.report.clients).toEqual([
      { peer: client.domid, devid: expect.any(Number), state: 'connected' },
    ]);
    expect(after.report.netback).toEqual(before.report.netback);
    expect(after.report.netfront).toEqual(before.report.netfront);
    expect(after.all).toBe(before.all);
    expect(after.netvmVifs).toEqual(before.netvmVifs);
    const tcp = await client.command<{ outcome: string; reply?: string }>({
      op: 'tcp',
      to: NETVM.ip,
      port: NETVM_PORTS.tcpEcho,
      readReply: true,
    });
    expect(tcp.reply).toMatch(new RegExp(`^from ${quoted(CLIENT.ip)}:\\d+\\nhello$`));
  }, 2_400_000);
});
