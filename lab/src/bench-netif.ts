import {
  type IperfTcp,
  NETIF_DIRECTIONS,
  type NetifBenchRound,
  type NetifBenchSummary,
  roundRatio,
  summarizeNetifRounds,
} from './bench-netif-figures.ts';
import type { ProfileSummary } from './cpu-profile.ts';
import { guestImage } from './guest-image.ts';
import { bootLab, type Lab, type LabOptions } from './lab.ts';
import { buildLinuxImage } from './linux-image.ts';
import type { BridgeReport, NetifCommand } from './netif-lab-wire.ts';
import { measureHostPenalty, PENALTY_ITERATIONS, type PenaltyFigures, penaltyInLab } from './penalty.ts';
import { bridgeVif, type LinuxVm, netvmVif, qubesMac, startCommandVm, startLinuxVm } from './topology.ts';
import { NETVM_PORTS } from './topology-wire.ts';
import { buildVchanGuest } from './vchan-lab.ts';

const NETIF_GUEST = new URL('./guests/netif.guest.ts', import.meta.url).pathname;

export interface NetifBenchFigures extends NetifBenchSummary {
  readonly seconds: number;
  readonly rounds: readonly NetifBenchRound[];
  /** iperf3 runs that failed (NaN in their round), each with why and the middle's state. */
  readonly failures: readonly string[];
  /** The same run's emulation penalty (`./moat bench penalty`'s workload in a domU of this lab). */
  readonly penalty: PenaltyFigures;
  /** What our domU's bridge counted over the whole run (frames, GSO frames each way). */
  readonly oursCounts: BridgeReport['counts'];
  /**
   * One more iperf3 (client -> netvm) through our path with V8's profiler running in our
   * domU: its Mbit/s, where the domU's time went, and @moat/netif's counters over that run
   * (netback: the client's side, netfront: upstream).
   */
  readonly profiled: {
    readonly mbitPerS: number;
    readonly tcp: IperfTcp;
    readonly profile: ProfileSummary;
    readonly netback: Record<string, number>;
    readonly netfront: Record<string, number>;
  };
}

const round = (x: number, digits = 2) => Number(x.toFixed(digits));

const NET_STATE = [
  '/mnt/bin/ip -d link; /mnt/bin/ip addr; /mnt/bin/ip route; /mnt/bin/ip neigh',
  // No quotes: the command travels as JSON through xenstore-write.
  'grep . /sys/class/net/*/statistics/rx_packets /sys/class/net/*/statistics/tx_packets /sys/class/net/*/statistics/rx_dropped /sys/class/net/*/statistics/tx_dropped /sys/class/net/*/carrier /sys/class/net/*/brport/state',
].join('; ');

/** A Linux VM's links, addresses, routes, neighbours and counters (for a failure's message). */
async function netState(vm: LinuxVm): Promise<string> {
  try {
    const r = await vm.command<{ code: number | null; out: string }>({
      op: 'exec',
      argv: ['sh', '-c', NET_STATE],
    });
    return `${vm.name}:\n${r.out}`;
  } catch (e) {
    return `${vm.name}: ${(e as Error).message}`;
  }
}

/**
 * What a path's failure needs to be explained: each Linux VM's network state, dom0's view of
 * the client's vif and its backend's xenstore keys, and the consoles' last lines.
 */
async function pathDiagnosis(
  lab: Lab,
  vms: readonly LinuxVm[],
  client: LinuxVm,
  middle: { name: string; domid: number; handle: { tail(n?: number): string } },
): Promise<string> {
  const parts: string[] = [];
  for (const vm of vms) parts.push(await netState(vm));
  for (const argv of [
    ['xl', 'network-list', client.name],
    ['xenstore-ls', '-f', `/local/domain/${middle.domid}/backend/vif`],
  ]) {
    const r = await lab.exec(argv);
    parts.push(`dom0$ ${argv.join(' ')}\n${r.lines.join('\n')}`);
  }
  parts.push(`${middle.name} console:\n${middle.handle.tail(40)}`);
  parts.push(`${client.name} console:\n${client.handle.tail(20)}`);
  return parts.join('\n');
}

interface IperfResult {
  readonly mbitPerS: number;
  readonly tcp: IperfTcp;
}

async function iperf(
  client: LinuxVm,
  to: string,
  port: number,
  seconds: number,
  reverse: boolean,
): Promise<IperfResult> {
  const r = await client.command<{
    outcome: string;
    bitsPerSecond?: number;
    retransmits?: number;
    meanRttUs?: number;
    error?: string;
  }>({ op: 'iperf3', to, port, seconds, reverse, waitSeconds: 150 }, { timeoutMs: (seconds + 250) * 1000 });
  if (r.outcome !== 'accepted' || !r.bitsPerSecond)
    throw new Error(
      `iperf3${reverse ? ' -R' : ''} from ${client.name} to ${to} failed: ${r.error ?? JSON.stringify(r)}`,
    );
  return {
    mbitPerS: round(r.bitsPerSecond / 1e6, 1),
    tcp: {
      retransmits: r.retransmits,
      rttMs: r.meanRttUs === undefined ? undefined : round(r.meanRttUs / 1000, 1),
    },
  };
}

/**
 * `./moat bench netif`: in one lab, TCP throughput (iperf3, client -> netvm) through two middle
 * domUs side by side: a Linux bridge domU (the kernel's netback and netfront and a Linux
 * bridge) and our domU (@moat/netif's netback and netfront and the TypeScript bridge of
 * guests/netif.guest.ts), each with a client of its own and the same Linux netvm upstream.
 * The paths alternate for `rounds` rounds; the emulation penalty is measured in the same lab
 * first, with nothing else running.
 */
export async function runNetifBench(
  options: LabOptions & {
    seconds?: number;
    rounds?: number;
    penaltyIterations?: number;
    onStep?: (text: string) => void;
    /** Figures and failures as they come (the result arrives only at the end). */
    onLog?: (text: string) => void;
  } = {},
): Promise<NetifBenchFigures> {
  const seconds = options.seconds ?? 10;
  const rounds = options.rounds ?? 3;
  options.onStep?.('building the images');
  const linux = await buildLinuxImage({ cacheDir: options.cacheDir });
  const ours = await guestImage(NETIF_GUEST, { addon: linux.addon, cacheDir: options.cacheDir });
  const penaltyGuest = await buildVchanGuest(options.cacheDir);
  const iterations = options.penaltyIterations ?? PENALTY_ITERATIONS;
  const host = await measureHostPenalty(iterations, 5, options.cacheDir);
  options.onStep?.('booting the lab');
  // Six domUs (netvm 192 MB, two middles, three clients): 2 GiB less dom0's 1 GiB ran out.
  const lab = await bootLab({ addon: linux.addon, bootTimeoutMs: 1_200_000, memoryMb: 2560, ...options });
  try {
    options.onStep?.('measuring the emulation penalty');
    const penalty = await penaltyInLab(lab, penaltyGuest.image, host, 'nb-penalty');
    options.onLog?.(
      `emulation penalty: JS ${penalty.slowdown.js}x, C ${penalty.slowdown.c}x slower than on the host`,
    );

    options.onStep?.('starting the netvm, both middle domUs and their clients');
    const netvmIp = '10.137.0.5';
    const oursClientIp = '10.137.0.10';
    const linuxClientIp = '10.137.0.11';
    const directClientIp = '10.137.0.12';
    const netvm = await startLinuxVm(lab, linux.image, {
      name: 'nb-netvm',
      args: { role: 'netvm', ip: netvmIp },
    });
    // The two middles boot side by side, then the two clients: domU boots dominate under emulation.
    // The Linux bridge's uplink is `untrusted`, as Qubes makes every vif whose backend is not
    // dom0 (its libxl sets `trusted` from the backend's domid): its xen-netfront then copies each
    // packet into its own pages before granting it to the netvm. Without that the bridge passes
    // no bulk data: its xen-netback grant-maps the client's TX data in place (all but the first
    // 128 bytes), the bridge forwards the skb as it is (an L3 path would copy those frags on
    // delivery, skb_orphan_frags_rx; a bridge port's rx_handler does not), and netfront grants
    // the client's mapped pages on as its own, which Xen refuses (`d2v0 Error mfn ...: rd=d4
    // od=d5`, lab/NOTES.md). The cost to the baseline: one copy of every upstream packet in the
    // bridge domU (a GSO packet into one linear buffer of up to 64 KiB, GFP_ATOMIC), which is
    // what a Linux sys-firewall in Qubes pays too. Our netfront ignores the key; set it there
    // as well, so both middles' uplinks are configured alike.
    const [bridge, moat] = await Promise.all([
      startLinuxVm(lab, linux.image, {
        name: 'nb-bridge',
        args: { role: 'bridge' },
        vifs: [{ ...netvmVif('nb-netvm', linuxClientIp, qubesMac(7)), untrusted: true }],
      }),
      startCommandVm<NetifCommand>(lab, ours.image, {
        name: 'nb-moat',
        args: { role: 'bridge' },
        memoryMb: 192,
        driverDomain: true,
        vifs: [{ ...netvmVif('nb-netvm', oursClientIp, qubesMac(6)), untrusted: true }],
      }),
    ]);
    // The clients one after the other: libxl gives a vif's backend 10 s to reach InitWait, and
    // two boots at once on a loaded machine ran the bridge's out (lab/NOTES.md, run 3).
    const linuxClient = await startLinuxVm(lab, linux.image, {
      name: 'nb-client-linux',
      args: { role: 'client', ip: linuxClientIp, gateway: netvmIp },
      vifs: [bridgeVif('nb-bridge', qubesMac(11))],
    });
    const oursClient = await startLinuxVm(lab, linux.image, {
      name: 'nb-client-moat',
      args: { role: 'client', ip: oursClientIp, gateway: netvmIp },
      vifs: [{ backend: 'nb-moat', ip: oursClientIp, mac: qubesMac(10) }],
    });
    // The ceiling: a client on the netvm itself, no middle domU.
    const directClient = await startLinuxVm(lab, linux.image, {
      name: 'nb-client-direct',
      args: { role: 'client', ip: directClientIp, gateway: netvmIp },
      vifs: [netvmVif('nb-netvm', directClientIp, qubesMac(12))],
    });

    // Each path answers a ping and a TCP echo before it is measured: a path that passes no TCP
    // fails here in seconds with its diagnosis, not in iperf3's minutes of silence per run.
    const pathWorks = async (
      client: LinuxVm,
      middle: { name: string; domid: number; handle: { tail(n?: number): string } },
      vms: LinuxVm[],
    ) => {
      const ping = await client.command<{ outcome: string; received: number }>({
        op: 'ping',
        to: netvmIp,
        count: 2,
      });
      const tcp = await client.command<{ outcome: string; code?: string }>({
        op: 'tcp',
        to: netvmIp,
        port: NETVM_PORTS.tcpEcho,
        timeoutMs: 60_000,
      });
      options.onLog?.(
        `${client.name} through ${middle.name}: ping ${ping.received} of 2, TCP echo ${tcp.outcome}`,
      );
      if (ping.received > 0 && tcp.outcome === 'accepted') return true;
      failures.push(
        `${client.name} through ${middle.name}: ping ${JSON.stringify(ping)}, TCP echo ${JSON.stringify(tcp)}; not measured\n${await pathDiagnosis(lab, vms, client, middle)}`,
      );
      options.onLog?.(failures.at(-1) ?? '');
      return false;
    };
    const failures: string[] = [];
    const linuxWorks = await pathWorks(linuxClient, bridge, [bridge, netvm, linuxClient]);
    const oursWorks = await pathWorks(oursClient, moat, [netvm, oursClient]);
    const directWorks = await pathWorks(directClient, netvm, [netvm, directClient]);
    if (!linuxWorks && !oursWorks) throw new Error(`neither path passes traffic:\n${failures.join('\n')}`);
    const measured: NetifBenchRound[] = [];
    // A run that fails is reported with the middle's state and the bench goes on: one path's
    // failure must not hide the other's figures.
    const failed: IperfResult = { mbitPerS: Number.NaN, tcp: {} };
    const measure = async (
      client: LinuxVm,
      middle: LinuxVm | undefined,
      reverse: boolean,
      what: string,
    ): Promise<IperfResult> => {
      try {
        const r = await iperf(
          client,
          netvmIp,
          IPERF_PORTS[client.name] ?? NETVM_PORTS.iperf3,
          seconds,
          reverse,
        );
        options.onLog?.(
          `${what}: ${r.mbitPerS} Mbit/s (retransmits ${r.tcp.retransmits ?? 'n/a'}, RTT ${r.tcp.rttMs ?? 'n/a'} ms)`,
        );
        return r;
      } catch (error) {
        // Xen's own log too: a grant another domain refused is logged there, if anywhere.
        const xen = middle ? (await lab.exec(['xl', 'dmesg'])).lines.slice(-15).join('\n') : '';
        failures.push(
          `${what}: ${(error as Error).message}${middle ? `\n${await netState(middle)}\ndom0$ xl dmesg | tail -15\n${xen}` : ''}`,
        );
        options.onLog?.(failures.at(-1) ?? '');
        return failed;
      }
    };
    // One iperf3 server per path: a run that stalls (the Linux bridge's data) leaves its server
    // stuck in that test, and every later client of the same server hung with it (run 5).
    const IPERF_PORTS: Record<string, number> = {
      [oursClient.name]: NETVM_PORTS.iperf3,
      [directClient.name]: NETVM_PORTS.iperf3 + 1,
      [linuxClient.name]: NETVM_PORTS.iperf3 + 2,
    };
    for (const port of [NETVM_PORTS.iperf3 + 1, NETVM_PORTS.iperf3 + 2])
      await netvm.command({
        op: 'exec',
        argv: ['sh', '-c', `iperf3 -s -D -p ${port} >/dev/null 2>&1 </dev/null`],
      });
    // A path whose iperf3 failed once is not run again: each failure costs iperf3's 160 s.
    const broken = new Set<string>();
    if (!linuxWorks) broken.add('linux');
    if (!oursWorks) broken.add('ours');
    if (!directWorks) broken.add('direct');
    const run = async (
      path: string,
      client: LinuxVm,
      middle: LinuxVm | undefined,
      reverse: boolean,
      what: string,
    ) => {
      if (broken.has(path)) return failed;
      const r = await measure(client, middle, reverse, what);
      if (!Number.isFinite(r.mbitPerS)) {
        broken.add(path);
        if (path === 'ours') {
          // Our domU's side of it: its bridge's counters and netif's stats, and its console.
          const state = await moat
            .command<BridgeReport>({ op: 'bridge' })
            .then((b) => JSON.stringify({ counts: b.counts, stats: b.stats }))
            .catch((e: Error) => e.message);
          failures.push(`${what}: ${moat.name}: ${state}\n${moat.name} console:\n${moat.handle.tail(30)}`);
          options.onLog?.(failures.at(-1) ?? '');
        }
      }
      return r;
    };
    for (let i = 0; i < rounds; i++) {
      for (const direction of NETIF_DIRECTIONS) {
        const reverse = direction === 'down';
        options.onStep?.(
          `round ${i + 1} of ${rounds}: iperf3${reverse ? ' -R' : ''} ${seconds} s through each path`,
        );
        const what = `round ${i + 1} ${reverse ? 'netvm -> client' : 'client -> netvm'}`;
        const oursRun = await run('ours', oursClient, undefined, reverse, `${what}, ours`);
        const directRun = await run('direct', directClient, undefined, reverse, `${what}, direct`);
        const linuxRun = await run('linux', linuxClient, bridge, reverse, `${what}, Linux bridge`);
        measured.push({
          direction,
          linuxMbitPerS: linuxRun.mbitPerS,
          oursMbitPerS: oursRun.mbitPerS,
          ratio: roundRatio(oursRun.mbitPerS, linuxRun.mbitPerS),
          directMbitPerS: directRun.mbitPerS,
          linuxTcp: linuxRun.tcp,
          oursTcp: oursRun.tcp,
        });
      }
    }
    const report = await moat.command<BridgeReport>({ op: 'bridge' });
    options.onStep?.('one more iperf3 through our path, profiled');
    await moat.command({ op: 'profile-start' });
    const profiledRun = await run('ours', oursClient, undefined, false, 'profiled run, ours');
    const profile = await moat.command<ProfileSummary>({ op: 'profile-stop' }, { timeoutMs: 300_000 });
    const after = await moat.command<BridgeReport>({ op: 'bridge' });
    const delta = (a: Record<string, number>, b: Record<string, number>) =>
      Object.fromEntries(Object.keys(a).map((k) => [k, (a[k] ?? 0) - (b[k] ?? 0)]));
    return {
      ...summarizeNetifRounds(measured, penalty),
      seconds,
      rounds: measured,
      failures,
      penalty,
      oursCounts: report.counts,
      profiled: {
        mbitPerS: profiledRun.mbitPerS,
        tcp: profiledRun.tcp,
        profile,
        netback: delta(after.stats.netback, report.stats.netback),
        netfront: delta(after.stats.netfront, report.stats.netfront),
      },
    };
  } finally {
    await lab.shutdown();
  }
}
