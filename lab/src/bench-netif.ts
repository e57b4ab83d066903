import { guestImage } from './guest-image.ts';
import { bootLab, type LabOptions } from './lab.ts';
import { buildLinuxImage } from './linux-image.ts';
import type { BridgeReport, NetifCommand } from './netif-lab-wire.ts';
import { measureHostPenalty, PENALTY_ITERATIONS, type PenaltyFigures, penaltyInLab } from './penalty.ts';
import { bridgeVif, type LinuxVm, netvmVif, qubesMac, startCommandVm, startLinuxVm } from './topology.ts';
import { buildVchanGuest } from './vchan-lab.ts';

const NETIF_GUEST = new URL('./guests/netif.guest.ts', import.meta.url).pathname;

/** One path's iperf3 figure in one round. */
export interface NetifBenchRound {
  readonly linuxMbitPerS: number;
  readonly oursMbitPerS: number;
  /** ours / linux in this round. */
  readonly ratio: number;
}

export interface NetifBenchFigures {
  readonly seconds: number;
  readonly rounds: readonly NetifBenchRound[];
  /** Best round of each path, Mbit/s (iperf3's received rate). */
  readonly linuxMbitPerS: number;
  readonly oursMbitPerS: number;
  /** Median over rounds of ours / linux. */
  readonly ratio: number;
  /** The same run's emulation penalty (`./moat bench penalty`'s workload in a domU of this lab). */
  readonly penalty: PenaltyFigures;
  /**
   * ratio × (JS slowdown / C slowdown): emulation slows our JavaScript path by the JS factor
   * and the kernel's C path by the C factor, so this estimates the ratio without emulation.
   */
  readonly correctedRatio: number;
  /** What our domU's bridge counted over the whole run (frames, GSO frames each way). */
  readonly oursCounts: BridgeReport['counts'];
}

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] ?? Number.NaN) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
};
const round = (x: number, digits = 2) => Number(x.toFixed(digits));

async function iperf(client: LinuxVm, to: string, seconds: number): Promise<number> {
  const r = await client.command<{ outcome: string; bitsPerSecond?: number; error?: string }>(
    { op: 'iperf3', to, seconds },
    { timeoutMs: (seconds + 400) * 1000 },
  );
  if (r.outcome !== 'accepted' || !r.bitsPerSecond)
    throw new Error(`iperf3 from ${client.name} to ${to} failed: ${r.error ?? JSON.stringify(r)}`);
  return round(r.bitsPerSecond / 1e6, 1);
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
  const lab = await bootLab({ addon: linux.addon, bootTimeoutMs: 1_200_000, ...options });
  try {
    options.onStep?.('measuring the emulation penalty');
    const penalty = await penaltyInLab(lab, penaltyGuest.image, host, 'nb-penalty');

    options.onStep?.('starting the netvm, both middle domUs and their clients');
    const netvmIp = '10.137.0.5';
    const oursClientIp = '10.137.0.10';
    const linuxClientIp = '10.137.0.11';
    await startLinuxVm(lab, linux.image, { name: 'nb-netvm', args: { role: 'netvm', ip: netvmIp } });
    // The two middles boot side by side, then the two clients: domU boots dominate under emulation.
    const [, moat] = await Promise.all([
      startLinuxVm(lab, linux.image, {
        name: 'nb-bridge',
        args: { role: 'bridge' },
        vifs: [netvmVif('nb-netvm', linuxClientIp, qubesMac(7))],
      }),
      startCommandVm<NetifCommand>(lab, ours.image, {
        name: 'nb-moat',
        args: { role: 'bridge' },
        memoryMb: 192,
        driverDomain: true,
        vifs: [netvmVif('nb-netvm', oursClientIp, qubesMac(6))],
      }),
    ]);
    const [linuxClient, oursClient] = await Promise.all([
      startLinuxVm(lab, linux.image, {
        name: 'nb-client-linux',
        args: { role: 'client', ip: linuxClientIp, gateway: netvmIp },
        vifs: [bridgeVif('nb-bridge', qubesMac(11))],
      }),
      startLinuxVm(lab, linux.image, {
        name: 'nb-client-moat',
        args: { role: 'client', ip: oursClientIp, gateway: netvmIp },
        vifs: [{ backend: 'nb-moat', ip: oursClientIp, mac: qubesMac(10) }],
      }),
    ]);

    // Each path answers before it is measured (a failure then says which path and how).
    for (const client of [linuxClient, oursClient]) {
      const ping = await client.command<{ outcome: string; received: number }>({
        op: 'ping',
        to: netvmIp,
        count: 2,
      });
      if (ping.received === 0)
        throw new Error(`${client.name} cannot ping the netvm: ${JSON.stringify(ping)}`);
    }
    const measured: NetifBenchRound[] = [];
    for (let i = 0; i < rounds; i++) {
      options.onStep?.(`round ${i + 1} of ${rounds}: iperf3 ${seconds} s through each path`);
      const linuxMbitPerS = await iperf(linuxClient, netvmIp, seconds);
      const oursMbitPerS = await iperf(oursClient, netvmIp, seconds);
      measured.push({ linuxMbitPerS, oursMbitPerS, ratio: round(oursMbitPerS / linuxMbitPerS, 3) });
    }
    const report = await moat.command<BridgeReport>({ op: 'bridge' });
    const ratio = round(median(measured.map((r) => r.ratio)), 3);
    return {
      seconds,
      rounds: measured,
      linuxMbitPerS: Math.max(...measured.map((r) => r.linuxMbitPerS)),
      oursMbitPerS: Math.max(...measured.map((r) => r.oursMbitPerS)),
      ratio,
      penalty,
      correctedRatio: round((ratio * penalty.slowdown.js) / penalty.slowdown.c, 3),
      oursCounts: report.counts,
    };
  } finally {
    await lab.shutdown();
  }
}
