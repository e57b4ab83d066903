import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LabSession, labSession } from '../src/index.ts';
import { buildLinuxImage } from '../src/linux-image.ts';
import {
  attachVif,
  detachVif,
  hotplugRetries,
  type LinuxVm,
  listVifs,
  memAvailableMiB,
  netvmVif,
  qubesMac,
  startLinuxVm,
  xenstoreCount,
} from '../src/topology.ts';
import { NETVM_PORTS, patternStreamSha256 } from '../src/topology-wire.ts';

/**
 * A Linux client qube whose vif's backend is a Linux netvm (a driver domain: the kernel's
 * xen-netback, `xl devd` running our vif hotplug script), on real Xen 4.17. One lab boot, one
 * netvm, one client; the tests run in order on the same pair. Timings are printed, never
 * asserted.
 */
const NETVM = { name: 'netvm', ip: '10.137.0.5' };
const CLIENT = { name: 'client', ip: '10.137.0.10', mac: qubesMac(10) };
const DNS = { 'upstream.test': NETVM.ip, 'www.example.test': '192.0.2.10' };
const STREAM_BYTES = 64 * 1024 * 1024;
const CYCLES = 20;

let lab: LabSession;
let netvm: LinuxVm;
let client: LinuxVm;
const figures: Record<string, unknown> = {};
const t0 = performance.now();
const since = () => Math.round(performance.now() - t0);

/** The client's TCP probe to the netvm's echo, reading what the echo says back. */
const tcpEcho = () =>
  client.command<{ outcome: string; reply?: string }>({
    op: 'tcp',
    to: NETVM.ip,
    port: NETVM_PORTS.tcpEcho,
    readReply: true,
  });

beforeAll(async () => {
  const built = await buildLinuxImage();
  lab = await labSession('linux-net', { addon: built.addon, bootTimeoutMs: 1_200_000 });
  figures.bootMs = lab.timings.bootMs;
  netvm = await startLinuxVm(lab, built.image, {
    name: NETVM.name,
    args: { role: 'netvm', ip: NETVM.ip, dns: DNS },
  });
  figures.netvmUpMs = since();
  client = await startLinuxVm(lab, built.image, {
    name: CLIENT.name,
    args: { role: 'client', ip: CLIENT.ip, gateway: NETVM.ip },
    vifs: [netvmVif(NETVM.name, CLIENT.ip, CLIENT.mac)],
  });
  figures.clientUpMs = since();
}, 2_400_000);

afterAll(async () => {
  figures.hotplugRetries = hotplugRetries.count;
  console.log(`linux-net lab figures: ${JSON.stringify(figures)}`);
  await lab?.end();
});

describe('a Linux client qube behind a Linux netvm (driver domain) on real Xen (lab)', () => {
  it('the client pings the netvm', async () => {
    const ping = await client.command<{ outcome: string; received: number; avgMs?: number }>({
      op: 'ping',
      to: NETVM.ip,
      count: 3,
    });
    expect(ping.outcome).toBe('accepted');
    expect(ping.received).toBeGreaterThan(0);
    figures.pingAvgMs = ping.avgMs;
  });

  it("TCP to the netvm's echo: it reports the client's address and echoes", async () => {
    const tcp = await tcpEcho();
    expect(tcp.outcome).toBe('accepted');
    expect(tcp.reply).toMatch(new RegExp(`^from ${CLIENT.ip.replaceAll('.', '\\.')}:\\d+\\nhello$`));
    const udp = await client.command<{ outcome: string; reply?: string }>({
      op: 'udp',
      to: NETVM.ip,
      port: NETVM_PORTS.udpEcho,
      payload: 'udp-hello',
    });
    expect(udp.outcome).toBe('accepted');
    expect(udp.reply).toMatch(new RegExp(`^from ${CLIENT.ip.replaceAll('.', '\\.')}:\\d+ udp-hello$`));
    // A closed port answers with a reset: told apart from silence and ICMP errors.
    const closed = await client.command<{ outcome: string }>({ op: 'tcp', to: NETVM.ip, port: 81 });
    expect(closed.outcome).toBe('refused');
  });

  it("resolves a name from the netvm's DNS server at 10.139.1.1", async () => {
    const dns = await client.command<{ outcome: string; addresses?: string[] }>({
      op: 'dns',
      name: 'www.example.test',
    });
    expect(dns).toMatchObject({ outcome: 'accepted', addresses: ['192.0.2.10'] });
  });

  it('moves a 64 MiB TCP stream to the netvm with the same SHA-256 at both ends', async () => {
    const stream = await client.command<{
      sentBytes: number;
      sentSha256: string;
      receivedBytes: number;
      receivedSha256: string;
      ms: number;
      mbPerS: number;
    }>({ op: 'stream', to: NETVM.ip, bytes: STREAM_BYTES, seed: 7 }, { timeoutMs: 900_000 });
    const expected = await patternStreamSha256(7, STREAM_BYTES);
    expect(stream.sentBytes).toBe(STREAM_BYTES);
    expect(stream.sentSha256).toBe(expected);
    expect(stream.receivedBytes).toBe(STREAM_BYTES);
    expect(stream.receivedSha256).toBe(expected);
    figures.stream = { ms: stream.ms, mbPerS: stream.mbPerS };
  }, 1_200_000);

  it(`detaches and attaches the vif ${CYCLES} times without leaking vifs or xenstore entries`, async () => {
    const backendDir = `/local/domain/${netvm.domid}/backend/vif`;
    // The netvm's first command creates its data/moat-cmd directory: ask it before counting
    // (a run that counted first saw exactly that one node more afterwards).
    const netvmVifs = (await netvm.command<{ vifs: string[] }>({ op: 'vifs' })).vifs;
    const before = {
      all: await xenstoreCount(lab),
      backend: await xenstoreCount(lab, backendDir),
      netvmVifs,
    };
    expect(before.netvmVifs).toEqual([`vif${client.domid}.0`]);
    const start = performance.now();
    // The client's MemAvailable (MiB) every fifth cycle, beside netif.lab.test.ts's (where the
    // backend is ours): what Linux's xen-netfront keeps per reconnect with Linux's own netback.
    const clientMemory: number[] = [];
    figures.clientMemAvailableMiB = clientMemory;
    for (let i = 0; i < CYCLES; i++) {
      const [device] = await listVifs(lab, CLIENT.name);
      expect(device).toBeDefined();
      await detachVif(lab, CLIENT.name, device ?? 0);
      expect(await listVifs(lab, CLIENT.name)).toEqual([]);
      await attachVif(lab, CLIENT.name, netvmVif(NETVM.name, CLIENT.ip, CLIENT.mac));
      if (i % 5 === 0) clientMemory.push(await memAvailableMiB(client));
    }
    figures.cyclesMs = Math.round(performance.now() - start);
    const after = {
      all: await xenstoreCount(lab),
      backend: await xenstoreCount(lab, backendDir),
      netvmVifs: (await netvm.command<{ vifs: string[] }>({ op: 'vifs' })).vifs,
    };
    figures.xenstore = { before, after };
    // Device ids grow with each attach; the number of everything stays the same.
    expect(after.netvmVifs).toHaveLength(1);
    expect(after.backend).toBe(before.backend);
    expect(after.all).toBe(before.all);
    // And the re-attached vif carries traffic.
    await client.command({ op: 'configure', network: {} });
    const tcp = await tcpEcho();
    expect(tcp.outcome).toBe('accepted');
    expect(tcp.reply).toMatch(new RegExp(`^from ${CLIENT.ip.replaceAll('.', '\\.')}:`));
  }, 2_400_000);
});
