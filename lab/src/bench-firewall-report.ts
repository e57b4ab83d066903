/**
 * `./moat bench firewall`'s figures and how they are compared and printed (pure: no lab here).
 * Every ratio is sys-moat / Linux, and each row says which way is better. Emulation slows our
 * JavaScript by the penalty workload's JS factor and the kernel's C by its C factor, so a
 * throughput ratio is corrected by × (JS slowdown / C slowdown) and a time ratio by the inverse;
 * memory does not depend on emulation speed and is compared raw only.
 */
import type { ProfileSummary } from './cpu-profile.ts';
import type { PenaltyFigures } from './penalty.ts';

export type FirewallKind = 'moat' | 'linux';

/** Memory in a firewall VM with the 20 clients served, MiB, from the VM's own /proc/meminfo. */
export interface FirewallMemoryFigures {
  /** The domain's `memory = maxmem`, MiB. */
  readonly memoryMb: number;
  /** MemTotal - MemAvailable: what the kernel could not hand to a new program. */
  readonly inUseMiB: number;
  /** MemTotal: the domain's memory less what the kernel reserved at boot. */
  readonly memTotalMiB: number;
  readonly slabMiB: number;
  /** sys-moat only: its node process (resident set, JS heap used, buffers outside the heap). */
  readonly node?: { readonly rssMiB: number; readonly heapUsedMiB: number; readonly externalMiB: number };
}

/** One firewall's figures, or why one could not be measured. */
export interface FirewallBenchSide {
  readonly kind: FirewallKind;
  readonly ok: boolean;
  /** Why a figure is missing (the first failure, with the VM's console tail). */
  readonly error?: string;
  /** `xl create` of the firewall to the first ping answered through it, ms. */
  readonly firstForwardMs?: number;
  /** Round trip of 10 pings client -> netvm through the firewall, ms: average, fastest, slowest. */
  readonly pingMs?: number;
  readonly pingMinMs?: number;
  readonly pingMaxMs?: number;
  /**
   * iperf3 client -> netvm and netvm -> client (`-R`), receiver's rate, Mbit/s: the median of
   * the measured rounds (each round one run each way, after the warm-up runs).
   */
  readonly upMbitPerS?: number;
  readonly downMbitPerS?: number;
  /** Every measured round's rate, in order. */
  readonly upRoundsMbitPerS?: readonly number[];
  readonly downRoundsMbitPerS?: readonly number[];
  /**
   * The first bulk transfer through the freshly started firewall (the warm-up, not in the
   * median): sys-moat's JavaScript is still being compiled by V8 then, the kernel's C is not.
   */
  readonly coldUpMbitPerS?: number;
  readonly coldDownMbitPerS?: number;
  /** Client vifs plugged for the memory figure, and how many of them pinged through. */
  readonly clients?: number;
  readonly clientsPinged?: number;
  readonly memory?: FirewallMemoryFigures;
  /** sys-moat only: one more iperf3 client -> netvm with V8's profiler on in the VM, and where its time went. */
  readonly profiled?: { readonly upMbitPerS: number; readonly profile: ProfileSummary };
}

/** sys-moat / Linux, raw and with the emulation penalty divided out (undefined: a side is missing). */
export interface FirewallBenchRatio {
  readonly raw?: number;
  readonly corrected?: number;
}

export type FirewallBenchRow =
  | 'up'
  | 'down'
  | 'coldUp'
  | 'coldDown'
  | 'ping'
  | 'pingMin'
  | 'firstForward'
  | 'memory';

export interface FirewallBenchFigures {
  readonly note: string;
  /** iperf3's seconds per run and measured rounds (after one warm-up run each way); client vifs over client domUs for the memory figure. */
  readonly seconds: number;
  readonly rounds: number;
  readonly clients: number;
  readonly clientDomains: number;
  readonly moat: FirewallBenchSide;
  readonly linux: FirewallBenchSide;
  readonly penalty: PenaltyFigures;
  /** JS slowdown / C slowdown of this run (what a throughput ratio is multiplied by). */
  readonly correction?: number;
  /** sys-moat / Linux for each row; `better` says which way favours sys-moat. */
  readonly ratios: Readonly<Record<FirewallBenchRow, FirewallBenchRatio>>;
  readonly aim: string;
  /** Corrected throughput both ways at least 0.5 of Linux's; undefined when a figure is missing. */
  readonly meetsAim: boolean | undefined;
  /** Load average of the machine when the bench started and ended (its figures depend on it). */
  readonly load?: { readonly start: string; readonly end: string };
}

export const FIREWALL_BENCH_NOTE =
  'measured in the emulated lab (Xen 4.17 in QEMU TCG on a shared machine), not on hardware';
export const FIREWALL_BENCH_AIM =
  'corrected throughput (both ways, median of the rounds after the warm-up) at least 0.5 of the Linux reference';

const round = (x: number, digits: number) => Number(x.toFixed(digits));

/** The median of a non-empty list (the mean of the middle two for an even count). */
export function median(xs: readonly number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
}

/** sys-moat / Linux; undefined when either is missing or not a positive number. */
export function moatOverLinux(moat: number | undefined, linux: number | undefined): number | undefined {
  if (moat === undefined || linux === undefined) return undefined;
  if (!(moat > 0) || !(linux > 0)) return undefined;
  return round(moat / linux, 3);
}

/**
 * JS slowdown / C slowdown of a penalty run, from its fastest times (not the rounded slowdowns:
 * a C slowdown near 1 rounded to 0.1 would move the factor by 10%). Undefined when the run is not
 * usable (hashes disagree, a time missing).
 */
export function penaltyCorrection(p: PenaltyFigures): number | undefined {
  if (!p.hashesAgree) return undefined;
  const factor = p.guest.jsMs / p.host.jsMs / (p.guest.cMs / p.host.cMs);
  return Number.isFinite(factor) && factor > 0 ? round(factor, 3) : undefined;
}

/** Which way of a row's ratio favours sys-moat. */
export const HIGHER_IS_BETTER: Readonly<Record<FirewallBenchRow, boolean>> = {
  up: true,
  down: true,
  coldUp: true,
  coldDown: true,
  ping: false,
  pingMin: false,
  firstForward: false,
  memory: false,
};

export function firewallRatios(
  moat: FirewallBenchSide,
  linux: FirewallBenchSide,
  correction: number | undefined,
): Record<FirewallBenchRow, FirewallBenchRatio> {
  const speed = (raw: number | undefined, higherIsBetter: boolean): FirewallBenchRatio => {
    if (raw === undefined) return {};
    if (correction === undefined) return { raw };
    // throughput: our rate was divided by the JS slowdown, Linux's by C's; times multiplied
    return { raw, corrected: round(higherIsBetter ? raw * correction : raw / correction, 3) };
  };
  const memory = moatOverLinux(moat.memory?.inUseMiB, linux.memory?.inUseMiB);
  return {
    up: speed(moatOverLinux(moat.upMbitPerS, linux.upMbitPerS), true),
    down: speed(moatOverLinux(moat.downMbitPerS, linux.downMbitPerS), true),
    coldUp: speed(moatOverLinux(moat.coldUpMbitPerS, linux.coldUpMbitPerS), true),
    coldDown: speed(moatOverLinux(moat.coldDownMbitPerS, linux.coldDownMbitPerS), true),
    ping: speed(moatOverLinux(moat.pingMs, linux.pingMs), false),
    pingMin: speed(moatOverLinux(moat.pingMinMs, linux.pingMinMs), false),
    firstForward: speed(moatOverLinux(moat.firstForwardMs, linux.firstForwardMs), false),
    memory: memory === undefined ? {} : { raw: memory },
  };
}

export function meetsAim(ratios: Record<FirewallBenchRow, FirewallBenchRatio>): boolean | undefined {
  const both = [ratios.up.corrected, ratios.down.corrected];
  if (both.some((r) => r === undefined)) return undefined;
  return both.every((r) => (r ?? 0) >= 0.5);
}

/** The figures of one run, with ratios, correction and aim worked out. */
export function firewallBenchFigures(o: {
  seconds: number;
  rounds: number;
  clients: number;
  clientDomains: number;
  moat: FirewallBenchSide;
  linux: FirewallBenchSide;
  penalty: PenaltyFigures;
  load?: FirewallBenchFigures['load'];
}): FirewallBenchFigures {
  const correction = penaltyCorrection(o.penalty);
  const ratios = firewallRatios(o.moat, o.linux, correction);
  return {
    note: FIREWALL_BENCH_NOTE,
    seconds: o.seconds,
    rounds: o.rounds,
    clients: o.clients,
    clientDomains: o.clientDomains,
    moat: o.moat,
    linux: o.linux,
    penalty: o.penalty,
    ...(correction !== undefined ? { correction } : {}),
    ratios,
    aim: FIREWALL_BENCH_AIM,
    meetsAim: meetsAim(ratios),
    ...(o.load ? { load: o.load } : {}),
  };
}

const NA = 'n/a';
const num = (x: number | undefined, digits: number) => (x === undefined ? NA : x.toFixed(digits));

/** The side-by-side table `./moat bench firewall` prints (one string per line). */
export function formatFirewallBench(f: FirewallBenchFigures): string[] {
  const rows: [string, string, string, FirewallBenchRow | undefined][] = [
    [
      `TCP client -> netvm, Mbit/s (iperf3, median of ${f.rounds})`,
      num(f.moat.upMbitPerS, 1),
      num(f.linux.upMbitPerS, 1),
      'up',
    ],
    [
      `TCP netvm -> client, Mbit/s (iperf3 -R, median of ${f.rounds})`,
      num(f.moat.downMbitPerS, 1),
      num(f.linux.downMbitPerS, 1),
      'down',
    ],
    [
      'first TCP client -> netvm, Mbit/s (cold)',
      num(f.moat.coldUpMbitPerS, 1),
      num(f.linux.coldUpMbitPerS, 1),
      'coldUp',
    ],
    [
      'first TCP netvm -> client, Mbit/s (cold)',
      num(f.moat.coldDownMbitPerS, 1),
      num(f.linux.coldDownMbitPerS, 1),
      'coldDown',
    ],
    ['ping round trip, ms (avg of 10)', num(f.moat.pingMs, 2), num(f.linux.pingMs, 2), 'ping'],
    ['ping round trip, ms (fastest of 10)', num(f.moat.pingMinMs, 2), num(f.linux.pingMinMs, 2), 'pingMin'],
    [
      'xl create -> first forwarded ping, s',
      num(f.moat.firstForwardMs === undefined ? undefined : f.moat.firstForwardMs / 1000, 1),
      num(f.linux.firstForwardMs === undefined ? undefined : f.linux.firstForwardMs / 1000, 1),
      'firstForward',
    ],
    [
      `memory in use, ${f.clients} clients, MiB`,
      num(f.moat.memory?.inUseMiB, 1),
      num(f.linux.memory?.inUseMiB, 1),
      'memory',
    ],
    [
      `client vifs pinging through (of ${f.clients})`,
      f.moat.clientsPinged === undefined ? NA : String(f.moat.clientsPinged),
      f.linux.clientsPinged === undefined ? NA : String(f.linux.clientsPinged),
      undefined,
    ],
  ];
  const header = ['', 'sys-moat', 'Linux', 'moat/Linux', 'corrected', 'better'];
  const cells = rows.map(([label, moat, linux, key]) => {
    const r = key ? f.ratios[key] : undefined;
    return [
      label,
      moat,
      linux,
      key ? num(r?.raw, 3) : '',
      key === 'memory' ? '(raw only)' : key ? num(r?.corrected, 3) : '',
      key ? (HIGHER_IS_BETTER[key] ? 'higher' : 'lower') : '',
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] ?? '').length)));
  const line = (c: string[]) =>
    c
      .map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  const p = f.penalty;
  const mem = (s: FirewallBenchSide, name: string) => {
    const m = s.memory;
    if (!m) return `  ${name}: ${NA}`;
    const node = m.node
      ? `; node: RSS ${m.node.rssMiB}, JS heap used ${m.node.heapUsedMiB}, outside the heap ${m.node.externalMiB}`
      : '';
    return `  ${name}: memory = maxmem ${m.memoryMb}, MemTotal ${m.memTotalMiB}, in use ${m.inUseMiB}, slab ${m.slabMiB}${node}`;
  };
  const out = [
    `sys-moat beside the Linux reference firewall: every figure ${f.note}`,
    line(header),
    ...cells.map(line),
    `emulation penalty of this run (fastest of 5, ${p.iterations} iterations): C ${p.host.cMs} ms here, ${p.guest.cMs} ms in a domU (${p.slowdown.c}x); JS ${p.host.jsMs} ms here, ${p.guest.jsMs} ms in a domU (${p.slowdown.js}x)${p.hashesAgree ? '' : '; HASHES DISAGREE: no correction'}`,
    `corrected = moat/Linux x ${f.correction ?? NA} (JS slowdown / C slowdown) for throughput, / ${f.correction ?? NA} for times; ping and first-forward also count Linux's own work in the client and netvm (and sys-moat's kernel), so their correction overstates`,
    `memory, MiB: in use = MemTotal - MemAvailable of the VM's own /proc/meminfo with every client vif up and pinged:`,
    mem(f.moat, 'sys-moat'),
    mem(f.linux, 'Linux'),
    `iperf3 ${f.seconds} s each way from one client: one warm-up run each way (the cold rows), then ${f.rounds} measured rounds; ${f.clients} client vifs over ${f.clientDomains} client domUs for memory`,
    ...[f.moat, f.linux].flatMap((s) =>
      s.upRoundsMbitPerS || s.downRoundsMbitPerS
        ? [
            `  ${s.kind === 'moat' ? 'sys-moat' : 'Linux'} rounds, Mbit/s: up ${(s.upRoundsMbitPerS ?? []).join(', ')}; down ${(s.downRoundsMbitPerS ?? []).join(', ')}`,
          ]
        : [],
    ),
    `aim: ${f.aim}: ${f.meetsAim === undefined ? 'unknown (a figure is missing)' : f.meetsAim ? 'met' : 'not met'}`,
  ];
  const pr = f.moat.profiled;
  if (pr) {
    const share = (x: number) => `${Math.round(x * 100)}%`;
    out.push(
      `sys-moat profiled (one more iperf3 client -> netvm, ${pr.upMbitPerS} Mbit/s, V8 profiler in the VM over ${(pr.profile.ms / 1000).toFixed(1)} s): idle ${share(pr.profile.idle)}, GC ${share(pr.profile.gc)}, V8/native outside JS ${share(pr.profile.program)}; busiest (self time, share of busy):`,
      ...pr.profile.top.slice(0, 12).map((t) => `  ${t.fn}  ${t.ms} ms  ${share(t.busyShare)}`),
    );
  }
  if (f.load) out.push(`load average at start: ${f.load.start}; at end: ${f.load.end}`);
  for (const s of [f.moat, f.linux])
    if (!s.ok) out.push(`${s.kind === 'moat' ? 'sys-moat' : 'Linux'} failed: ${s.error ?? 'unknown'}`);
  return out;
}
