/**
 * `./moat bench firewall`: sys-moat and the Linux reference firewall in one lab run, side by side,
 * each started through the FirewallVm interface (firewall-vm.ts) between the same Linux netvm and
 * the same Linux client domUs, one after the other (they would compete for the emulated CPUs):
 * - time from `xl create` of the firewall to the first packet it forwards (a client vif is
 *   plugged once the firewall says its rules are in force, then pings until one is answered);
 * - ping round trip, client -> netvm through the firewall;
 * - TCP throughput (iperf3) client -> netvm and back (`-R`);
 * - memory in use in the firewall with 20 client vifs (over two client domUs), each pinged.
 * The emulation penalty (`./moat bench penalty`'s workload) is measured in the same lab: raw
 * ratios compare our JavaScript under emulation with the kernel's C under emulation; corrected
 * ratios divide that penalty out (ratio × JS slowdown / C slowdown). Every figure is measured
 * in the emulated lab (Xen 4.17 in QEMU TCG on a shared machine), not on hardware.
 */
import type { VmImage } from '@moat/unikernel';
import { buildFirewallImage } from '@moat/unikernel';
import {
  type ClientVifSpec,
  clientVifPlan,
  pingEachVif,
  plugClientVifs,
  startVifClients,
  unplugClientVifs,
  type VifClient,
} from './firewall-life.ts';
import { type FirewallVm, firewallVm } from './firewall-vm.ts';
import { bootLab, type Lab, type LabOptions } from './lab.ts';
import { buildLinuxImage } from './linux-image.ts';
import { measureHostPenalty, PENALTY_ITERATIONS, type PenaltyFigures, penaltyInLab } from './penalty.ts';
import { type LinuxVm, startLinuxVm } from './topology.ts';
import { NETVM_PORTS } from './topology-wire.ts';
import { buildVchanGuest } from './vchan-lab.ts';

export type FirewallKind = 'moat' | 'linux';

/** One firewall's figures, or why it could not be measured. */
export interface FirewallBenchSide {
  readonly kind: FirewallKind;
  readonly ok: boolean;
  /** Why a figure is missing (the first failure, with the VM's console tail). */
  readonly error?: string;
  /** `xl create` of the firewall to the first ping answered through it, ms. */
  readonly firstForwardMs?: number;
  /** Average of the answered pings, ms. */
  readonly pingMs?: number;
  readonly upMbitPerS?: number;
  readonly downMbitPerS?: number;
  /** In use in the firewall VM with 20 client vifs (MemTotal - MemAvailable), MiB. */
  readonly memoryInUseMiB?: number;
  /** Of the 20 client vifs, how many pinged the netvm through the firewall. */
  readonly twentyClientsPinged?: number;
}

/** ours / Linux, raw and with the emulation penalty divided out; undefined when a side is missing. */
export interface FirewallBenchRatio {
  readonly raw?: number;
  readonly corrected?: number;
}

export interface FirewallBenchFigures {
  readonly note: string;
  readonly seconds: number;
  readonly moat: FirewallBenchSide;
  readonly linux: FirewallBenchSide;
  readonly penalty: PenaltyFigures;
  /** Higher is better for ours: throughput ours / Linux; times and memory Linux / ours. */
  readonly ratios: {
    readonly up: FirewallBenchRatio;
    readonly down: FirewallBenchRatio;
    readonly ping: FirewallBenchRatio;
    readonly firstForward: FirewallBenchRatio;
    /** Memory does not depend on emulation speed: raw only. */
    readonly memory: FirewallBenchRatio;
  };
  /** Aim: corrected throughput (both ways) at least 0.5 of the Linux reference. */
  readonly meetsTarget: boolean | undefined;
}

const UPSTREAM = { name: 'fb-netvm', ip: '10.137.0.2' };
const FIREWALL_IP: Record<FirewallKind, string> = { moat: '10.137.0.3', linux: '10.137.0.4' };
/** The bench client's vif, then the 20 clients' vifs (over two domUs). */
const BENCH_VIF: ClientVifSpec[][] = clientVifPlan(1, 1, 20);
const TWENTY: ClientVifSpec[][] = clientVifPlan(20, 2, 21);
/** What every client may do: iperf3, the echo, ping; the policy drops the rest. */
export const BENCH_RULES: ReadonlyMap<number, string> = new Map([
  [0, `action=accept proto=tcp dstports=${NETVM_PORTS.iperf3}-${NETVM_PORTS.iperf3}`],
  [1, `action=accept proto=tcp dstports=${NETVM_PORTS.tcpEcho}-${NETVM_PORTS.tcpEcho}`],
  [2, 'action=accept proto=icmp'],
]);
const FIRST_FORWARD_TIMEOUT_MS = 600_000;

const round = (x: number, digits = 2) => Number(x.toFixed(digits));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function ratio(ours: number | undefined, linux: number | undefined, higherIsBetter: boolean) {
  if (ours === undefined || linux === undefined || ours <= 0 || linux <= 0) return undefined;
  return round(higherIsBetter ? ours / linux : linux / ours, 3);
}

/** Throughput and time ratios, with the penalty divided out (our JS slowed by js, Linux's C by c). */
function corrected(raw: number | undefined, penalty: PenaltyFigures): FirewallBenchRatio {
  if (raw === undefined) return {};
  return { raw, corrected: round((raw * penalty.slowdown.js) / penalty.slowdown.c, 3) };
}

async function iperf(client: LinuxVm, seconds: number, reverse: boolean): Promise<number> {
  const r = await client.command<{ outcome: string; bitsPerSecond?: number; error?: string }>(
    { op: 'iperf3', to: UPSTREAM.ip, seconds, reverse },
    { timeoutMs: (seconds + 400) * 1000 },
  );
  if (r.outcome !== 'accepted' || !r.bitsPerSecond)
    throw new Error(
      `iperf3${reverse ? ' -R' : ''} to ${UPSTREAM.ip} failed: ${r.error ?? JSON.stringify(r)}`,
    );
  return round(r.bitsPerSecond / 1e6, 1);
}

/** Runs `fn`, giving up with the error's first lines (the rest of the bench goes on). */
async function measured<T>(step: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw new Error(`${step}: ${(error as Error).message}`);
  }
}

async function benchOne(
  lab: Lab,
  kind: FirewallKind,
  image: VmImage,
  clients: { bench: VifClient; twenty: readonly VifClient[] },
  seconds: number,
  step: (text: string) => void,
): Promise<FirewallBenchSide> {
  const fw: FirewallVm = firewallVm(kind, `fb-${kind}`, FIREWALL_IP[kind], { moatImage: image });
  const figures: { -readonly [K in keyof FirewallBenchSide]?: FirewallBenchSide[K] } = {};
  const plugged: VifClient[] = [];
  try {
    step(`${kind}: starting the firewall VM`);
    const t0 = performance.now();
    await measured('start', () =>
      fw.start({
        lab,
        image,
        virtMode: 'pv',
        upstream: UPSTREAM,
        clients: [...BENCH_VIF.flat(), ...TWENTY.flat()].map((v) => ({ ip: v.ip, rules: BENCH_RULES })),
      }),
    );
    plugged.push(clients.bench);
    await measured('plugging the bench client', () => plugClientVifs(lab, clients.bench, fw.name, fw.ip));
    const client = clients.bench.vm;
    for (;;) {
      const ping = await client.command<{ outcome: string }>({
        op: 'ping',
        to: UPSTREAM.ip,
        count: 1,
        timeoutMs: 5000,
      });
      if (ping.outcome === 'accepted') break;
      if (performance.now() - t0 > FIRST_FORWARD_TIMEOUT_MS)
        throw new Error(
          `no ping through ${fw.name} within ${FIRST_FORWARD_TIMEOUT_MS / 1000} s of xl create`,
        );
      await sleep(500);
    }
    figures.firstForwardMs = Math.round(performance.now() - t0);
    step(`${kind}: first packet forwarded ${figures.firstForwardMs} ms after xl create; ping and iperf3`);
    const ping = await client.command<{ received: number; avgMs?: number }>({
      op: 'ping',
      to: UPSTREAM.ip,
      count: 10,
    });
    if (ping.avgMs !== undefined) figures.pingMs = ping.avgMs;
    step(`${kind}: ping ${figures.pingMs ?? 'n/a'} ms; iperf3 ${seconds} s client -> netvm`);
    figures.upMbitPerS = await measured('iperf3 client -> netvm', () => iperf(client, seconds, false));
    step(`${kind}: ${figures.upMbitPerS} Mbit/s client -> netvm; iperf3 -R`);
    figures.downMbitPerS = await measured('iperf3 netvm -> client', () => iperf(client, seconds, true));
    step(`${kind}: ${figures.downMbitPerS} Mbit/s netvm -> client`);

    step(`${kind}: 20 client vifs`);
    const devices: Map<string, string>[] = [];
    for (const c of clients.twenty) {
      plugged.push(c);
      devices.push(await measured('plugging 20 client vifs', () => plugClientVifs(lab, c, fw.name, fw.ip)));
    }
    const pings = (
      await Promise.all(clients.twenty.map((c, i) => pingEachVif(c, devices[i] ?? new Map(), UPSTREAM.ip)))
    ).flat();
    figures.twentyClientsPinged = pings.filter((p) => p.ok).length;
    const memory = await measured('memory in use', async () => {
      if (!fw.memoryInUse) throw new Error(`the ${kind} FirewallVm cannot read its memory`);
      return fw.memoryInUse();
    });
    figures.memoryInUseMiB = round(memory / 2 ** 20, 1);
    step(`${kind}: ${figures.twentyClientsPinged} of 20 vifs pinged; ${figures.memoryInUseMiB} MiB in use`);
    return { kind, ok: true, ...figures };
  } catch (error) {
    const message = (error as Error).message;
    step(`${kind}: failed: ${message.split('\n')[0]}`);
    return { kind, ok: false, error: message.slice(0, 3000), ...figures };
  } finally {
    for (const c of plugged) await unplugClientVifs(lab, c).catch(() => undefined);
    await fw.stop().catch(() => undefined);
    await lab.exec(['xl', 'destroy', fw.name]).catch(() => undefined);
  }
}

/** Runs `start`; if it fails, destroys what it made (`names`) and runs it once more. */
async function secondAttempt<T>(
  lab: Lab,
  names: readonly string[],
  step: (text: string) => void,
  start: () => Promise<T>,
): Promise<T> {
  try {
    return await start();
  } catch (error) {
    step(`${names.join(', ')}: ${(error as Error).message.split('\n')[0]}; a second attempt`);
    for (const name of names) await lab.exec(['xl', 'destroy', name]).catch(() => undefined);
    return start();
  }
}

/** Both firewalls in one lab run (sys-moat first), with that run's emulation penalty. */
export async function runFirewallBench(
  options: LabOptions & {
    seconds?: number;
    penaltyIterations?: number;
    only?: FirewallKind;
    onStep?: (text: string) => void;
  } = {},
): Promise<FirewallBenchFigures> {
  const seconds = options.seconds ?? 10;
  const step = options.onStep ?? (() => {});
  step('building the images');
  const linux = await buildLinuxImage({ cacheDir: options.cacheDir });
  const images: Record<FirewallKind, VmImage> = {
    moat: (await buildFirewallImage()).image,
    linux: linux.image,
  };
  const penaltyGuest = await buildVchanGuest(options.cacheDir);
  const iterations = options.penaltyIterations ?? PENALTY_ITERATIONS;
  const host = await measureHostPenalty(iterations, 5, options.cacheDir);
  step('booting the lab');
  const lab = await bootLab({ addon: linux.addon, bootTimeoutMs: 1_200_000, ...options });
  try {
    step('measuring the emulation penalty');
    const penalty = await penaltyInLab(lab, penaltyGuest.image, host, 'fb-penalty');
    step(`emulation penalty: C ${penalty.slowdown.c}x, JS ${penalty.slowdown.js}x slower than here`);
    step('starting the netvm and the client domUs (no vif yet)');
    // Booted side by side: domU boots dominate under emulation.
    // At load 20 one of four simultaneous `xl create`s failed at once (exit 3, no console line):
    // each domU gets a second attempt.
    const [, bench, twenty] = await Promise.all([
      secondAttempt(lab, [UPSTREAM.name], step, () =>
        startLinuxVm(lab, linux.image, {
          name: UPSTREAM.name,
          args: { role: 'netvm', ip: UPSTREAM.ip },
          upTimeoutMs: 1_200_000,
        }),
      ),
      secondAttempt(lab, ['fb-bench1'], step, () => startVifClients(lab, linux.image, 'fb-bench', BENCH_VIF)),
      secondAttempt(lab, ['fb-client1', 'fb-client2'], step, () =>
        startVifClients(lab, linux.image, 'fb-client', TWENTY),
      ),
    ]);
    const clients = { bench: bench[0]!, twenty };
    const skipped = (kind: FirewallKind): FirewallBenchSide => ({
      kind,
      ok: false,
      error: `not run (--only ${options.only})`,
    });
    const moat =
      options.only === 'linux'
        ? skipped('moat')
        : await benchOne(lab, 'moat', images.moat, clients, seconds, step);
    const linuxSide =
      options.only === 'moat'
        ? skipped('linux')
        : await benchOne(lab, 'linux', images.linux, clients, seconds, step);
    const up = ratio(moat.upMbitPerS, linuxSide.upMbitPerS, true);
    const down = ratio(moat.downMbitPerS, linuxSide.downMbitPerS, true);
    const ratios = {
      up: corrected(up, penalty),
      down: corrected(down, penalty),
      ping: corrected(ratio(moat.pingMs, linuxSide.pingMs, false), penalty),
      firstForward: corrected(ratio(moat.firstForwardMs, linuxSide.firstForwardMs, false), penalty),
      memory: { raw: ratio(moat.memoryInUseMiB, linuxSide.memoryInUseMiB, false) },
    };
    const both = [ratios.up.corrected, ratios.down.corrected];
    return {
      note: 'measured in the emulated lab (Xen 4.17 in QEMU TCG on a shared machine), not on hardware',
      seconds,
      moat,
      linux: linuxSide,
      penalty,
      ratios,
      meetsTarget: both.every((r) => r !== undefined) ? both.every((r) => (r ?? 0) >= 0.5) : undefined,
    };
  } finally {
    await lab.shutdown();
  }
}
