/**
 * sys-moat's composition root on the host: our dom0 QubesDB daemon and qrexec daemon over
 * unix-socket vchan (the real VM-side replica and agent), the real engine, fake network devices.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectNetfront, type NetDevice, startNetback } from '@moat/netif';
import { SimNetifWorld } from '@moat/netif/sim';
import { QrexecDaemon } from '@moat/qrexec/dom0';
import { connectQubesDb } from '@moat/qubesdb';
import { QubesDbDaemon } from '@moat/qubesdb/dom0';
import { socketVchanTransport } from '@moat/vchan/socket';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { frame4 } from '../engine/frames.ts';
import { parseIpv4Text } from '../wire/address.ts';
import { read16 } from '../wire/checksum.ts';
import { agentStarter } from './agent.ts';
import type { NetworkDevices } from './devices.ts';
import { type FirewallVm, startFirewallVm } from './firewall-vm.ts';
import { consoleLog, type VmLog } from './log.ts';
import { netifDevices } from './netif-adapter.ts';
import type { FirewallStatsDocument } from './stats-service.ts';
import { FakeBackend, FakeUplink, FakeVif } from './test-devices.ts';

const VM = 14;
const ip = (s: string) => parseIpv4Text(s)!;
const OUR_IP = '10.137.0.3';
const NETVM_IP = '10.137.0.2';
const CLIENT_A = '10.137.0.20';
const CLIENT_B = '10.137.0.21';
const REMOTE = '93.184.216.34';
const MAC_A = Uint8Array.of(0x00, 0x16, 0x3e, 0x5e, 0x6c, 0x20);
const MAC_B = Uint8Array.of(0x00, 0x16, 0x3e, 0x5e, 0x6c, 0x21);
const UPLINK_MAC = Uint8Array.of(0x00, 0x16, 0x3e, 0x5e, 0x6c, 0x03);

/** What qubesd writes for a TemplateVM (qubes/vm/qubesvm.py create_qdb_entries): no network keys. */
const TEMPLATE_KEYS: [string, string][] = [
  ['/name', 'moat-firewall'],
  ['/type', 'TemplateVM'],
  ['/qubes-vm-type', 'TemplateVM'],
  ['/qubes-vm-updateable', 'True'],
];

/** A ProxyVM (provides network, has a netvm) with two clients, as qubes/vm/mix/net.py writes it. */
function proxyKeys(rulesA: [string, string][]): [string, string][] {
  return [
    ['/name', 'sys-moat'],
    ['/type', 'AppVM'],
    ['/qubes-vm-type', 'ProxyVM'],
    ['/qubes-netvm-network', OUR_IP],
    ['/qubes-netvm-gateway', OUR_IP],
    ['/qubes-netvm-netmask', '255.255.255.255'],
    ['/qubes-netvm-primary-dns', '10.139.1.1'],
    ['/qubes-netvm-secondary-dns', '10.139.1.2'],
    ['/qubes-mac', '00:16:3e:5e:6c:03'],
    ['/qubes-ip', OUR_IP],
    ['/qubes-netmask', '255.255.255.255'],
    ['/qubes-gateway', NETVM_IP],
    ['/qubes-primary-dns', '10.139.1.1'],
    ['/qubes-secondary-dns', '10.139.1.2'],
    ['/connected-ips', `${CLIENT_A} ${CLIENT_B}`],
    ['/connected-ips6', ''],
    ...rulesA.map(([n, line]): [string, string] => [`/qubes-firewall/${CLIENT_A}/${n}`, line]),
    [`/qubes-firewall/${CLIENT_A}`, ''],
    [`/qubes-firewall/${CLIENT_B}/policy`, 'accept'],
    [`/qubes-firewall/${CLIENT_B}`, ''],
  ];
}

let directory: string;
const stops: (() => Promise<void> | void)[] = [];

beforeEach(() => {
  directory = mkdtempSync(join(tmpdir(), 'sys-moat-'));
});
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
  rmSync(directory, { recursive: true, force: true });
});

interface Booted {
  vm: FirewallVm;
  daemon: QubesDbDaemon;
  uplink: FakeUplink;
  backend: FakeBackend;
  lines: string[];
  log: VmLog;
}

async function boot(initial: [string, string][], devices?: NetworkDevices): Promise<Booted> {
  const daemon = new QubesDbDaemon({
    vmDomain: VM,
    vmName: 'sys-moat',
    transport: socketVchanTransport({ directory, localDomain: 0 }),
    initial,
    log: () => {},
  });
  await daemon.start();
  stops.push(() => daemon.stop());
  const transport = socketVchanTransport({ directory, localDomain: VM });
  const db = await connectQubesDb({ transport, timeoutMs: 5000, log: () => {} });
  stops.push(() => db.close());
  const lines: string[] = [];
  const log = consoleLog((line) => lines.push(line));
  const quiet = consoleLog(() => {});
  const uplink = new FakeUplink(UPLINK_MAC);
  const backend = new FakeBackend();
  const vm = await startFirewallVm({
    db,
    devices: devices ?? { uplink, clients: backend },
    log,
    tickMs: 0,
    startAgent: agentStarter(transport, db, quiet, { connectTimeoutMs: 5000 }),
  });
  stops.push(() => vm.shutdown('test over'));
  return { vm, daemon, uplink, backend, lines, log };
}

async function dom0Qrexec(): Promise<QrexecDaemon> {
  const daemon = await QrexecDaemon.connect({
    transport: socketVchanTransport({ directory, localDomain: 0 }),
    domain: VM,
    name: 'sys-moat',
    log: () => {},
    startupTimeoutMs: 5000,
    policy: () => ({ action: 'deny' }),
  });
  stops.push(() => daemon.close());
  return daemon;
}

async function stats(qrexec: QrexecDaemon): Promise<FirewallStatsDocument> {
  const result = await qrexec.call('moat.FirewallStats', { user: 'root' });
  expect(result.exitCode).toBe(0);
  return JSON.parse(result.stdout.toString('utf8')) as FirewallStatsDocument;
}

/** Waits (bounded) until `check` holds, letting vchan and QubesDB events through. */
async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const syn = (src: string, port: number, sport: number) =>
  frame4({
    src: ip(src),
    dst: ip(REMOTE),
    proto: 6,
    sport,
    dport: port,
    srcMac: src === CLIENT_A ? MAC_A : MAC_B,
  });

/** TCP destination ports of the frames that went out on the uplink. */
const uplinkPorts = (frames: Uint8Array[]) => frames.filter((f) => f[23] === 6).map((f) => read16(f, 36));

describe('sys-moat booted as a TemplateVM (no netvm, no clients)', () => {
  it('answers dom0: built-ins and moat.FirewallStats, serving no network', async () => {
    const { uplink } = await boot(TEMPLATE_KEYS);
    const qrexec = await dom0Qrexec();
    const session = await qrexec.call('qubes.WaitForSession', { user: 'root', stdin: Buffer.from('user\n') });
    expect(session.exitCode).toBe(0);
    const doc = await stats(qrexec);
    expect(doc.version).toBe(1);
    expect(doc.network.role).toBe('none');
    expect(doc.network.uplink.state).toBe('none');
    expect(doc.network.clients).toEqual([]);
    expect(doc.network.engine).toBeUndefined();
    expect(doc.settings.logLevel).toBe('info');
    expect(doc.memory.heapUsed).toBeGreaterThan(0);
    expect(doc.cpu.userUs).toBeGreaterThan(0);
    expect(doc.cpu.systemUs).toBeGreaterThanOrEqual(0);
    expect(doc.cpu.eventLoopBusy).toBeGreaterThanOrEqual(0);
    expect(doc.cpu.eventLoopBusy).toBeLessThanOrEqual(1);
    expect(uplink.connects).toBe(0);
    expect((await qrexec.call('qubes.VMShell', { user: 'root' })).exitCode).toBe(127);
  });

  it('answers moat.CpuProfile+<ms> with a V8 CPU profile of that long', async () => {
    await boot(TEMPLATE_KEYS);
    const qrexec = await dom0Qrexec();
    const r = await qrexec.call('moat.CpuProfile', { user: 'root', argument: '50' });
    expect(r.exitCode).toBe(0);
    const profile = JSON.parse(r.stdout.toString('utf8')) as {
      nodes: unknown[];
      startTime: number;
      endTime: number;
    };
    expect(profile.nodes.length).toBeGreaterThan(0);
    expect(profile.endTime - profile.startTime).toBeGreaterThanOrEqual(40_000);
    expect((await qrexec.call('moat.CpuProfile', { user: 'root', argument: 'soon' })).exitCode).toBe(2);
  });

  it('shuts down on request: agents and QubesDB closed, `finished` resolved with the reason', async () => {
    const { vm, lines, backend } = await boot(TEMPLATE_KEYS);
    await vm.shutdown('control/shutdown poweroff');
    await expect(vm.finished).resolves.toBe('control/shutdown poweroff');
    expect(backend.stopped).toBe(true);
    expect(lines).toContain('sys-moat info: stopped');
    await vm.shutdown('again'); // a second request is harmless
  });
});

describe('settings from /vm-config/', () => {
  it('reads table sizes, reject vs drop and the log level, and names refused values', async () => {
    const { vm, lines, log } = await boot([
      ...proxyKeys([['policy', 'drop']]),
      ['/vm-config/conntrack-max', '512'],
      ['/vm-config/rule-drop', 'drop'],
      ['/vm-config/log-level', 'debug'],
      ['/vm-config/fragments-per-link', 'lots'],
      ['/vm-config/colour', 'blue'],
    ]);
    expect(vm.settings).toMatchObject({
      conntrackMax: 512,
      rejectWithIcmp: false,
      logLevel: 'debug',
      fragmentsPerLink: 64,
    });
    expect(vm.network.stats().engine?.conntrack.max).toBe(512);
    expect(lines.join('\n')).toContain(
      'vm-config.fragments-per-link="lots": not a whole number; default kept',
    );
    expect(lines.join('\n')).toContain('vm-config.colour: unknown setting, ignored');
    expect(log.level).toBe('debug');
  });

  it('follows a change of the log level at run time', async () => {
    const { daemon, log } = await boot(TEMPLATE_KEYS);
    daemon.write('/vm-config/log-level', 'warn');
    await until(() => log.level === 'warn', 'log level warn');
  });
});

describe('sys-moat between clients and the uplink (fake devices)', () => {
  it('a client that never finishes its handshake does not hold up the others', async () => {
    const { vm, backend, uplink } = await boot(proxyKeys([['policy', 'accept']]));
    await until(() => uplink.links.length === 1, 'uplink connected');
    const stuck = new FakeVif(20, 0, MAC_A, CLIENT_A, false);
    const fine = new FakeVif(21, 0, MAC_B, CLIENT_B);
    backend.add(stuck);
    backend.add(fine);
    await until(() => vm.network.stats().clients.some((c) => c.state === 'up'), 'the second client up');
    fine.link!.inject(syn(CLIENT_B, 443, 40001));
    expect(uplinkPorts(uplink.current.take())).toEqual([443]);
    const clients = vm.network.stats().clients;
    expect(clients.map((c) => [c.name, c.state])).toEqual([
      ['vif20.0', 'connecting'],
      ['vif21.0', 'up'],
    ]);
    backend.remove(stuck);
    expect(stuck.aborted).toBe(true);
    expect(vm.network.stats().clients.map((c) => c.name)).toEqual(['vif21.0']);
  });

  it('forgets clients whose handshake fails and clients detached, cycle after cycle', async () => {
    const { vm, backend, uplink } = await boot(proxyKeys([['policy', 'accept']]));
    await until(() => uplink.links.length === 1, 'uplink connected');
    for (let i = 0; i < 50; i++) {
      const failing = new FakeVif(30, i, MAC_A, CLIENT_A, 'fails');
      const attached = new FakeVif(31, i, MAC_B, CLIENT_B);
      backend.add(failing);
      backend.add(attached);
      await until(() => vm.network.stats().clients.length === 1, `cycle ${i}: only the working client`);
      await until(() => vm.network.stats().clients[0]?.state === 'up', `cycle ${i}: up`);
      backend.remove(attached);
      expect(attached.link?.closed).toBe(true);
      expect(vm.network.stats().clients).toEqual([]);
    }
    expect(vm.network.stats().engine?.links.map((l) => l.name)).toEqual(['uplink']);
    expect(vm.network.stats().engine?.conntrack.size).toBe(0);
  });

  it('reloads rules on every commit with no window where old or new rules are bypassed', async () => {
    const { daemon, backend, uplink, vm } = await boot(
      proxyKeys([
        ['policy', 'drop'],
        ['0000', 'action=accept proto=tcp dstports=80-80'],
      ]),
    );
    await until(() => uplink.links.length === 1, 'uplink connected');
    const a = new FakeVif(20, 0, MAC_A, CLIENT_A);
    backend.add(a);
    await until(() => a.link !== undefined && vm.network.stats().clients[0]?.state === 'up', 'client up');
    const link = a.link!;
    let sport = 41000;
    const probe = () => {
      for (const port of [22, 80, 443]) link.inject(syn(CLIENT_A, port, sport++));
      return uplinkPorts(uplink.current.take());
    };
    expect(probe()).toEqual([80]);

    // dom0 rewrites the tree entry by entry: until its commit marker, the old rules stay.
    daemon.rm(`/qubes-firewall/${CLIENT_A}/`);
    expect(probe()).toEqual([80]);
    daemon.write(`/qubes-firewall/${CLIENT_A}/policy`, 'drop');
    daemon.write(`/qubes-firewall/${CLIENT_A}/0000`, 'action=accept proto=tcp dstports=443-443');
    const seen: number[][] = [];
    for (let i = 0; i < 20; i++) {
      seen.push(probe());
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    expect(seen.every((ports) => ports.join() === '80')).toBe(true);
    daemon.write(`/qubes-firewall/${CLIENT_A}`, '');
    // Probed all along: each round is either the old set's answer or the new one's, switching once.
    const after: string[] = [];
    await until(() => {
      after.push(probe().join());
      return after.at(-1) === '443';
    }, 'the new rules');
    const firstNew = after.indexOf('443');
    expect(after.slice(0, firstNew).every((p) => p === '80')).toBe(true);
    for (let i = 0; i < 5; i++) expect(probe()).toEqual([443]);

    // A tree that does not parse fails closed: drop-all, with the reason in the stats.
    daemon.commit(`/qubes-firewall/${CLIENT_A}`, [
      ['policy', 'drop'],
      ['0000', 'action=accept proto=tcp dstports=80-80 colour=blue'],
    ]);
    await until(
      () => (vm.network.stats().engine?.links[1]?.failClosedReason ?? '').includes('Failed'),
      'fail closed',
    );
    expect(probe()).toEqual([]);
  });

  it('at log level debug, logs each new flow with the rule that decided it, and stops at info', async () => {
    const { daemon, backend, uplink, vm, lines } = await boot([
      ...proxyKeys([
        ['policy', 'drop'],
        ['0000', 'action=accept proto=tcp dstports=80-80'],
      ]),
      ['/vm-config/log-level', 'debug'],
    ]);
    await until(() => uplink.links.length === 1, 'uplink connected');
    const a = new FakeVif(20, 0, MAC_A, CLIENT_A);
    backend.add(a);
    await until(() => a.link !== undefined && vm.network.stats().clients[0]?.state === 'up', 'client up');
    a.link!.inject(syn(CLIENT_A, 80, 41000));
    a.link!.inject(syn(CLIENT_A, 22, 41001));
    const decisions = () => lines.filter((l) => /^sys-moat debug: (accept|drop) /.test(l));
    expect(decisions()).toEqual([
      `sys-moat debug: accept vif20.0: tcp ${CLIENT_A}:41000 -> ${REMOTE}:80 by rule 0000 (action=accept proto=tcp dstports=80-80)`,
      `sys-moat debug: drop vif20.0: tcp ${CLIENT_A}:41001 -> ${REMOTE}:22 by the policy (drop)`,
    ]);
    expect(lines).toContain(`sys-moat info: rules for ${CLIENT_A} in force; 0 connection(s) they forbid cut`);
    // new rules that forbid the open connection to port 80: it is cut, and the log says so
    daemon.commit(`/qubes-firewall/${CLIENT_A}`, [
      ['policy', 'drop'],
      ['0000', 'action=accept proto=tcp dstports=22-22'],
    ]);
    await until(() => lines.some((l) => l.includes('1 connection(s) they forbid cut')), 'the connection cut');
    a.link!.inject(syn(CLIENT_A, 22, 41003));
    expect(decisions().at(-1)).toBe(
      `sys-moat debug: accept vif20.0: tcp ${CLIENT_A}:41003 -> ${REMOTE}:22 by rule 0000 (action=accept proto=tcp dstports=22-22)`,
    );
    daemon.write('/vm-config/log-level', 'info');
    await until(() => lines.some((l) => l.includes('log level debug -> info')), 'level info');
    a.link!.inject(syn(CLIENT_A, 80, 41002));
    expect(decisions()).toHaveLength(3);
  });

  it('follows /connected-ips and serves moat.FirewallStats with the engine counters', async () => {
    const { daemon, backend, uplink, vm } = await boot(proxyKeys([['policy', 'accept']]));
    await until(() => uplink.links.length === 1, 'uplink connected');
    const b = new FakeVif(21, 0, MAC_B, CLIENT_B);
    backend.add(b);
    await until(() => b.link !== undefined && vm.network.stats().clients[0]?.state === 'up', 'client up');
    // Anti-spoofing on the uplink: a source address in /connected-ips is one of our clients'.
    const fromUplink = (src: string) =>
      frame4({ src: ip(src), dst: ip(OUR_IP), proto: 17, sport: 53, dport: 5353, dstMac: UPLINK_MAC });
    const spoofed = () => vm.network.stats().engine!.links[0]!.dropsByReason['spoofed-from-uplink'] ?? 0;
    uplink.current.inject(fromUplink('10.137.0.77'));
    expect(spoofed()).toBe(0);
    daemon.write('/connected-ips', `${CLIENT_A} ${CLIENT_B} 10.137.0.77`);
    await until(() => {
      uplink.current.inject(fromUplink('10.137.0.77'));
      return spoofed() > 0;
    }, '/connected-ips followed');
    b.link!.inject(syn(CLIENT_B, 80, 40000));
    expect(uplinkPorts(uplink.current.take())).toEqual([80]);
    const qrexec = await dom0Qrexec();
    const doc = await stats(qrexec);
    expect(doc.network.role).toBe('network');
    expect(doc.network.uplink).toMatchObject({ state: 'up', connects: 1 });
    const links = doc.network.engine!.links;
    expect(links.map((l) => l.name)).toEqual(['uplink', 'vif21.0']);
    expect(links[1]!.rxPackets).toBe(1);
    expect(links[1]!.rules?.at(-1)).toEqual({ rule: 'policy', packets: 1, bytes: expect.any(Number) });
    expect(links[0]!.dropsByReason['spoofed-from-uplink']).toBeGreaterThan(0);
  });

  it('reconnects the uplink by itself when it goes down, and cleans up a client that goes', async () => {
    const { backend, uplink, vm } = await boot(proxyKeys([['policy', 'accept']]));
    await until(() => uplink.links.length === 1, 'uplink connected');
    uplink.links[0]!.down('netvm restarted');
    await until(() => uplink.links.length === 2 && vm.network.stats().uplink.state === 'up', 'uplink again');
    expect(vm.network.stats().uplink.connects).toBe(2);
    const b = new FakeVif(21, 0, MAC_B, CLIENT_B);
    backend.add(b);
    await until(() => vm.network.stats().clients[0]?.state === 'up', 'client up');
    b.link!.inject(syn(CLIENT_B, 80, 40000));
    expect(uplinkPorts(uplink.current.take())).toEqual([80]);
    b.link!.down('client shut down');
    expect(vm.network.stats().clients).toEqual([]);
    expect(b.link!.closed).toBe(true);
    expect(vm.network.stats().engine?.links.map((l) => l.name)).toEqual(['uplink']);
  });
});

describe('sys-moat on @moat/netif (sim Xen): a client, sys-moat and a netvm', () => {
  it('forwards a client’s connection to the netvm through real netback and netfront, NATed to our address', async () => {
    const world = new SimNetifWorld('sys-moat');
    stops.push(() => world.close());
    const netvm = world.addDomain('sys-net');
    const client = world.addDomain('work');
    const us = world.backend;
    // The netvm serves our uplink vif with its own netback, as sys-net does.
    let upstream: NetDevice | undefined;
    const netvmBackend = await startNetback({
      xen: netvm.domain,
      xenstore: netvm.xenstore,
      log: () => {},
      onDevice: (d) => {
        upstream = d;
      },
    });
    stops.push(() => netvmBackend.close());
    await world.toolstack.attach({
      frontend: us.domain.domid,
      backend: netvm.domain.domid,
      mac: '00:16:3e:5e:6c:03',
    });
    const quiet = consoleLog(() => {});
    const { vm } = await boot(proxyKeys([['policy', 'accept']]), netifDevices(us.domain, us.xenstore, quiet));
    await until(() => vm.network.stats().uplink.state === 'up', 'the uplink netfront connected');

    // The client's vif, served by our netback; the toolstack writes its address into `ip`.
    const { backendPath } = await world.toolstack.attach({
      frontend: client.domain.domid,
      backend: us.domain.domid,
      mac: '00:16:3e:5e:6c:21',
    });
    world.xs.adminWrite(`${backendPath}/ip`, CLIENT_B, [{ domid: us.domain.domid, access: 'none' }]);
    const front = await connectNetfront({ xen: client.domain, xenstore: client.xenstore, log: () => {} });
    stops.push(() => front.close());
    await until(() => vm.network.stats().clients[0]?.state === 'up', 'the client connected');

    const seen: Uint8Array[] = [];
    upstream!.onFrame((buf, off, len) => seen.push(buf.slice(off, off + len)));
    front.send(syn(CLIENT_B, 443, 40123));
    await until(() => seen.some((f) => f[23] === 6), 'the SYN at the netvm');
    const out = seen.find((f) => f[23] === 6)!;
    expect([...out.subarray(26, 30)].join('.')).toBe(OUR_IP);
    expect([...out.subarray(30, 34)].join('.')).toBe(REMOTE);
    expect(read16(out, 36)).toBe(443);
    // The answer comes back through the uplink and reaches the client, translated back.
    const back: Uint8Array[] = [];
    front.onFrame((buf, off, len) => back.push(buf.slice(off, off + len)));
    const answer = frame4({
      src: ip(REMOTE),
      dst: ip(OUR_IP),
      proto: 6,
      sport: 443,
      dport: read16(out, 34),
      tcpFlags: 0x12,
      srcMac: Uint8Array.of(0xfe, 0xff, 0xff, 0xff, 0xff, 0xff),
      dstMac: UPLINK_MAC,
    });
    upstream!.send(answer);
    await until(() => back.some((f) => f[23] === 6), 'the SYN-ACK at the client');
    const reply = back.find((f) => f[23] === 6)!;
    expect([...reply.subarray(30, 34)].join('.')).toBe(CLIENT_B);
    expect(read16(reply, 36)).toBe(40123);
    const doc = vm.network.stats();
    expect(doc.clients).toMatchObject([{ name: `vif${client.domain.domid}.0`, ip: CLIENT_B, state: 'up' }]);
    expect(doc.engine!.links[1]!.accepted).toBe(1);
  });
});
