/**
 * `./moat bench firewall`: sys-moat and the Linux reference firewall in one lab run, side by side,
 * each started through the FirewallVm interface (firewall-vm.ts) between the same Linux netvm and
 * the same Linux client domUs, one after the other (they would compete for the emulated CPU):
 * - time from `xl create` of the firewall to the first packet it forwards (a client vif is
 *   plugged once the firewall says its rules are in force, then pings until one is answered);
 * - ping round trip, client -> netvm through the firewall;
 * - TCP throughput (iperf3) client -> netvm and back (`-R`): one warm-up run each way (reported
 *   as the cold figures: sys-moat's JavaScript is compiled by V8 under that first traffic), then
 *   `rounds` measured rounds, each one run each way, of which the median is the figure;
 * - memory in use in the firewall with 20 client vifs (over two client domUs), each pinged.
 * The emulation penalty (`./moat bench penalty`'s workload) is measured in the same lab; the
 * comparison, correction and report are bench-firewall-report.ts. Every figure is measured in
 * the emulated lab (Xen 4.17 in QEMU TCG on a shared machine), not on hardware.
 */
import { loadavg } from 'node:os';
import type { VmImage } from '@moat/unikernel';
import { buildFirewallImage } from '@moat/unikernel';
import {
  type FirewallBenchFigures,
  type FirewallBenchSide,
  type FirewallKind,
  type FirewallMemoryFigures,
  firewallBenchFigures,
  median,
} from './bench-firewall-report.ts';
import {
  type ClientVifSpec,
  clientVifPlan,
  pingEachVif,
  plugClientVifs,
  startVifClients,
  unplugClientVifs,
  type VifClient,
} from './firewall-life.ts';
import { type FirewallVm, type FirewallVmMemory, firewallVm } from './firewall-vm.ts';
import { bootLab, type Lab, type LabOptions } from './lab.ts';
import { buildLinuxImage } from './linux-image.ts';
import { measureHostPenalty, PENALTY_ITERATIONS, penaltyInLab } from './penalty.ts';
import { type LinuxVm, startLinuxVm } from './topology.ts';
import { NETVM_PORTS } from './topology-wire.ts';
import { buildVchanGuest } from './vchan-lab.ts';

const UPSTREAM = { name: 'fb-netvm', ip: '10.137.0.2' };
const FIREWALL_IP: Record<FirewallKind, string> = { moat: '10.137.0.3', linux: '10.137.0.4' };
/** The bench client's one vif (iperf3, ping, first forward); the memory clients' from .21 up. */
const BENCH_VIF: ClientVifSpec[][] = clientVifPlan(1, 1, 20);
const FIRST_MEMORY_CLIENT = 21;
/** What every client may do: iperf3, the echo, ping; the policy drops the rest. */
export const BENCH_RULES: ReadonlyMap<number, string> = new Map([
  [0, `action=accept proto=tcp dstports=${NETVM_PORTS.iperf3}-${NETVM_PORTS.iperf3}`],
  [1, `action=accept proto=tcp dstports=${NETVM_PORTS.tcpEcho}-${NETVM_PORTS.tcpEcho}`],
  [2, 'action=accept proto=icmp'],
]);
const FIRST_FORWARD_TIMEOUT_MS = 600_000;

const round = (x: number, digits = 2) => Number(x.toFixed(digits));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mib = (bytes: number) => round(bytes / 2 ** 20, 1);
const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');

function memoryFigures(m: FirewallVmMemory): FirewallMemoryFigures {
  return {
    memoryMb: m.memoryMb,
    inUseMiB: mib(m.memTotal - m.memAvailable),
    memTotalMiB: mib(m.memTotal),
    slabMiB: mib(m.slab),
    ...(m.node
      ? {
          node: {
            rssMiB: mib(m.node.rss),
            heapUsedMiB: mib(m.node.heapUsed),
            externalMiB: mib(m.node.external),
          },
        }
      : {}),
  };
}

async function iperf(client: LinuxVm, seconds: number, reverse: boolean): Promise<number> {
  const r = await client.command<{ outcome: string; bitsPerSecond?: number; error?: string }>(
    { op: 'iperf3', to: UPSTREAM.ip, seconds, reverse, waitSeconds: 300 },
    { timeoutMs: (seconds + 400) * 1000 },
  );
  if (r.outcome !== 'accepted' || !r.bitsPerSecond)
    throw new Error(
      `iperf3${reverse ? ' -R' : ''} to ${UPSTREAM.ip} failed: ${r.error ?? JSON.stringify(r)}`,
    );
  return round(r.bitsPerSecond / 1e6, 1);
}

/** Runs `fn`; its error names the step (the rest of the bench goes on). */
async function measured<T>(step: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw new Error(`${step}: ${(error as Error).message}`);
  }
}

interface BenchClients {
  readonly bench: VifClient;
  readonly memory: readonly VifClient[];
  readonly plan: readonly (readonly ClientVifSpec[])[];
}

async function benchOne(
  lab: Lab,
  kind: FirewallKind,
  image: VmImage,
  clients: BenchClients,
  seconds: number,
  rounds: number,
  step: (text: string) => void,
): Promise<FirewallBenchSide> {
  const fw: FirewallVm = firewallVm(kind, `fb-${kind}`, FIREWALL_IP[kind], { moatImage: image });
  const figures: { -readonly [K in keyof FirewallBenchSide]?: FirewallBenchSide[K] } = {};
  const plugged = new Set<VifClient>();
  const total = clients.plan.flat().length;
  try {
    step(`${kind}: starting the firewall VM`);
    const t0 = performance.now();
    await measured('start', () =>
      fw.start({
        lab,
        image,
        virtMode: 'pv',
        upstream: UPSTREAM,
        clients: [...BENCH_VIF.flat(), ...clients.plan.flat()].map((v) => ({ ip: v.ip, rules: BENCH_RULES })),
      }),
    );
    plugged.add(clients.bench);
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
    step(`${kind}: first packet forwarded ${figures.firstForwardMs} ms after xl create; 10 pings`);
    const ping = await client.command<{ received: number; avgMs?: number; minMs?: number; maxMs?: number }>({
      op: 'ping',
      to: UPSTREAM.ip,
      count: 10,
    });
    if (ping.avgMs !== undefined) figures.pingMs = ping.avgMs;
    if (ping.minMs !== undefined) figures.pingMinMs = ping.minMs;
    if (ping.maxMs !== undefined) figures.pingMaxMs = ping.maxMs;
    step(
      `${kind}: ping min/avg/max ${figures.pingMinMs ?? 'n/a'}/${figures.pingMs ?? 'n/a'}/${figures.pingMaxMs ?? 'n/a'} ms; warm-up: iperf3 ${seconds} s each way`,
    );
    figures.coldUpMbitPerS = await measured('warm-up iperf3 client -> netvm', () =>
      iperf(client, seconds, false),
    );
    figures.coldDownMbitPerS = await measured('warm-up iperf3 netvm -> client', () =>
      iperf(client, seconds, true),
    );
    step(
      `${kind}: cold ${figures.coldUpMbitPerS} Mbit/s up, ${figures.coldDownMbitPerS} down; ${rounds} rounds`,
    );
    const up: number[] = [];
    const down: number[] = [];
    for (let r = 1; r <= rounds; r++) {
      up.push(await measured(`iperf3 client -> netvm, round ${r}`, () => iperf(client, seconds, false)));
      down.push(await measured(`iperf3 netvm -> client, round ${r}`, () => iperf(client, seconds, true)));
      step(`${kind}: round ${r}: ${up[r - 1]} Mbit/s client -> netvm, ${down[r - 1]} back`);
    }
    figures.upRoundsMbitPerS = up;
    figures.downRoundsMbitPerS = down;
    figures.upMbitPerS = median(up);
    figures.downMbitPerS = median(down);
    if (fw.profile) {
      step(`${kind}: one more iperf3 client -> netvm, profiled`);
      // The profile outlasts the run a little (iperf3's connect and result exchange around it).
      // A profile that fails costs its figures only, not the side's.
      try {
        const { result, profile } = await fw.profile((seconds + 5) * 1000, () =>
          iperf(client, seconds, false),
        );
        figures.profiled = { upMbitPerS: result, profile };
      } catch (error) {
        step(`${kind}: the profiled run failed: ${(error as Error).message.split('\n')[0]}`);
      }
    }

    // Exactly `total` clients for the memory figure: the bench client goes first.
    await unplugClientVifs(lab, clients.bench);
    plugged.delete(clients.bench);
    step(`${kind}: plugging ${total} client vifs over ${clients.memory.length} domUs`);
    const devices: Map<string, string>[] = [];
    for (const c of clients.memory) {
      plugged.add(c);
      devices.push(
        await measured(`plugging ${total} client vifs`, () => plugClientVifs(lab, c, fw.name, fw.ip)),
      );
    }
    figures.clients = total;
    const pings = (
      await Promise.all(clients.memory.map((c, i) => pingEachVif(c, devices[i] ?? new Map(), UPSTREAM.ip)))
    ).flat();
    figures.clientsPinged = pings.filter((p) => p.ok).length;
    const memory = await measured('memory in use', async () => {
      if (!fw.memory) throw new Error(`the ${kind} FirewallVm cannot read its memory`);
      return fw.memory();
    });
    figures.memory = memoryFigures(memory);
    step(`${kind}: ${figures.clientsPinged} of ${total} vifs pinged; ${figures.memory.inUseMiB} MiB in use`);
    return {
      kind,
      ok: figures.clientsPinged === total,
      ...figures,
      ...(figures.clientsPinged === total
        ? {}
        : {
            error: `client vifs without an answer: ${pings
              .filter((p) => !p.ok)
              .map((p) => `${p.ip} (${p.out})`)
              .join(', ')}`,
          }),
    };
  } catch (error) {
    const message = (error as Error).message;
    step(`${kind}: failed: ${message.split('\n')[0]}`);
    const tail = fw.consoleTail?.(30);
    return {
      kind,
      ok: false,
      error: `${message.slice(0, 3000)}${tail ? `\n${fw.name} console:\n${tail}` : ''}`,
      ...figures,
    };
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

export interface FirewallBenchOptions extends LabOptions {
  /** Seconds of each iperf3 run (default 10). */
  readonly seconds?: number;
  /** Measured rounds after the warm-up, each one iperf3 run each way (default 3). */
  readonly rounds?: number;
  /** Client vifs for the memory figure (default 20) over this many client domUs (default 2). */
  readonly clients?: number;
  readonly clientDomains?: number;
  readonly penaltyIterations?: number;
  /** Measure one firewall only (no ratios then). */
  readonly only?: FirewallKind;
  readonly onStep?: (text: string) => void;
}

/** Both firewalls in one lab run (sys-moat first), with that run's emulation penalty. */
export async function runFirewallBench(options: FirewallBenchOptions = {}): Promise<FirewallBenchFigures> {
  const loadAtStart = load();
  const seconds = options.seconds ?? 10;
  const rounds = options.rounds ?? 3;
  const clientCount = options.clients ?? 20;
  const plan = clientVifPlan(clientCount, options.clientDomains ?? 2, FIRST_MEMORY_CLIENT);
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
    step(`starting the netvm, the bench client and ${plan.length} client domUs (no vif yet)`);
    // Booted side by side: domU boots dominate under emulation.
    // At load 20 one of four simultaneous `xl create`s failed at once (exit 3, no console line):
    // each domU gets a second attempt.
    const memoryNames = plan.map((_, i) => `fb-client${i + 1}`);
    const [, bench, memory] = await Promise.all([
      secondAttempt(lab, [UPSTREAM.name], step, () =>
        startLinuxVm(lab, linux.image, {
          name: UPSTREAM.name,
          args: { role: 'netvm', ip: UPSTREAM.ip },
          upTimeoutMs: 1_200_000,
        }),
      ),
      secondAttempt(lab, ['fb-bench1'], step, () => startVifClients(lab, linux.image, 'fb-bench', BENCH_VIF)),
      secondAttempt(lab, memoryNames, step, () => startVifClients(lab, linux.image, 'fb-client', plan)),
    ]);
    const bench1 = bench[0];
    if (!bench1) throw new Error('no bench client');
    const clients: BenchClients = { bench: bench1, memory, plan };
    const skipped = (kind: FirewallKind): FirewallBenchSide => ({
      kind,
      ok: false,
      error: `not run (--only ${options.only})`,
    });
    const moat =
      options.only === 'linux'
        ? skipped('moat')
        : await benchOne(lab, 'moat', images.moat, clients, seconds, rounds, step);
    const linuxSide =
      options.only === 'moat'
        ? skipped('linux')
        : await benchOne(lab, 'linux', images.linux, clients, seconds, rounds, step);
    return firewallBenchFigures({
      seconds,
      rounds,
      clients: clientCount,
      clientDomains: plan.length,
      moat,
      linux: linuxSide,
      penalty,
      load: { start: loadAtStart, end: load() },
    });
  } finally {
    await lab.shutdown();
  }
}
