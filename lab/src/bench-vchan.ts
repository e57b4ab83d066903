import { expectGuestOk, type GuestRun } from './guest-run.ts';
import { bootLab, type LabOptions } from './lab.ts';
import {
  measureHostPenalty,
  PENALTY_ITERATIONS,
  type PenaltyFigures,
  penaltyFigures,
  penaltyOfRun,
} from './penalty.ts';
import { buildVchanGuest, startVchanRun, type VchanPlan } from './vchan-lab.ts';
import type { VchanTask } from './vchan-roles.ts';

const MiB = 1024 * 1024;

export interface VchanBenchDirection {
  /** MB/s (10^6 bytes) at the receiver, first to last byte: the best round. */
  readonly c: number;
  /** Our VchanStream as listenVchan makes it (native pump thread, 64 KiB local buffers). */
  readonly ours: number;
  /** Median over rounds of ours / C in the same round: the target is at least 0.8. */
  readonly ratio: number;
  /** Best ours / best C. */
  readonly bestRatio: number;
  readonly roundRatios: readonly number[];
  /** Our VchanStream driven from the event loop (localBuffer 0), for comparison. */
  readonly oursUnbuffered: number;
  readonly unbufferedRatio: number;
}

export interface VchanBenchFigures {
  readonly bytes: number;
  /** Rounds of alternating variants. */
  readonly rounds: number;
  /** libxenvchan ring sizes of the measured channels (the C proxy's server asks for the smallest). */
  readonly rings: string;
  readonly domUToDom0: VchanBenchDirection;
  readonly dom0ToDomU: VchanBenchDirection;
  /** The same run's emulation penalty, so the MB/s can be read as emulated figures. */
  readonly penalty?: PenaltyFigures;
  readonly domid: number;
}

/** The three domU ends measured in each direction (see vchanBenchPlan). */
const VARIANTS = ['C', 'ours', 'ours unbuffered'] as const;
type Variant = (typeof VARIANTS)[number];
const DIRECTIONS = ['domU->dom0', 'dom0->domU'] as const;

const stepName = (variant: Variant, direction: string, round: number) =>
  `${variant} ${direction} #${round + 1}`;

/**
 * The bench's plan. Each measured channel has the domU end under test and the same C
 * vchan-socket-proxy end in dom0, so "C" and "ours" differ only in the domU end:
 * - C: vchan-socket-proxy in the domU (server), from /dev/zero or to a counting pipe;
 * - ours: VchanStream over the addon (server, the same ring sizes as the proxy's server), as
 *   listenVchan makes it (pumped by a native thread) and, for comparison, unbuffered.
 * The receiver times from its first byte to the last; the sender sends until the receiver closes.
 * The variants alternate for `rounds` rounds: the figures are bound by event latency, which a
 * busy host disturbs by whole factors, and alike for all variants only when they are measured
 * close together (see vchanDirection for how rounds are combined).
 */
export function vchanBenchPlan(bytes: number, penaltyIterations: number | undefined, rounds = 3): VchanPlan {
  const t = 600_000;
  const domU: [string, VchanTask][] = [];
  const dom0: [string, VchanTask][] = [];
  if (penaltyIterations) domU.push(['penalty', { kind: 'penalty', iterations: penaltyIterations, runs: 5 }]);
  let port = 7001;
  for (let round = 0; round < rounds; round++) {
    for (const direction of DIRECTIONS) {
      const domUSends = direction === 'domU->dom0';
      for (const variant of VARIANTS) {
        const name = stepName(variant, direction, round);
        const ours =
          variant === 'C'
            ? {}
            : { ringBytes: 0, ...(variant === 'ours unbuffered' ? { localBuffer: 0 } : {}) };
        const impl = variant === 'C' ? 'c' : 'ours';
        domU.push([
          name,
          domUSends
            ? { kind: 'source', impl, role: 'server', port, timeoutMs: t, ...ours }
            : { kind: 'sink', impl, role: 'server', port, bytes, timeoutMs: t, ...ours },
        ]);
        dom0.push([
          name,
          domUSends
            ? { kind: 'sink', impl: 'c', role: 'client', port, bytes, timeoutMs: t }
            : { kind: 'source', impl: 'c', role: 'client', port, timeoutMs: t },
        ]);
        port++;
      }
    }
  }
  return { domU, dom0 };
}

function rate(run: GuestRun, step: string): number {
  const result = run.results.find((r) => r.name === step);
  if (!result?.ok) throw new Error(`${run.guest}: ${step}: ${result?.error ?? 'no result'}`);
  return (result.data as { mbPerS: number }).mbPerS;
}

/** Each round's rate of one variant, measured at the receiver. */
function roundRates(receiver: GuestRun, variant: Variant, direction: string, rounds: number): number[] {
  return Array.from({ length: rounds }, (_, round) => rate(receiver, stepName(variant, direction, round)));
}

/** Four significant digits: emulated rates are small (tens of KB/s), two decimals would hide them. */
const figure = (x: number) => Number(x.toPrecision(4));
const ratio2 = (x: number) => Number(x.toFixed(2));

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/**
 * The headline ratio is the median over rounds of ours / C within the round (variants measured
 * seconds apart), which one disturbed round cannot move; best / best is given beside it.
 */
export function vchanDirection(c: number[], ours: number[], unbuffered: number[]): VchanBenchDirection {
  const best = (xs: number[]) => Math.max(...xs);
  const perRound = (xs: number[]) => xs.map((x, i) => x / (c[i] as number));
  return {
    c: figure(best(c)),
    ours: figure(best(ours)),
    ratio: ratio2(median(perRound(ours))),
    bestRatio: ratio2(best(ours) / best(c)),
    roundRatios: perRound(ours).map(ratio2),
    oursUnbuffered: figure(best(unbuffered)),
    unbufferedRatio: ratio2(median(perRound(unbuffered))),
  };
}

/** `./moat bench vchan`: boots the lab, measures both directions for C and ours, and the penalty. */
export async function runVchanBench(
  options: LabOptions & {
    mib?: number;
    rounds?: number;
    penalty?: boolean;
    onStep?: (text: string) => void;
  } = {},
): Promise<VchanBenchFigures> {
  const bytes = (options.mib ?? 1) * MiB;
  const rounds = options.rounds ?? 3;
  const withPenalty = options.penalty ?? true;
  options.onStep?.('building the guest image');
  const guest = await buildVchanGuest(options.cacheDir);
  const host = withPenalty ? await measureHostPenalty(PENALTY_ITERATIONS, 5, options.cacheDir) : undefined;
  options.onStep?.('booting the lab');
  const lab = await bootLab(options);
  try {
    options.onStep?.('running the domU and dom0 sides');
    const run = await startVchanRun(
      lab,
      guest,
      vchanBenchPlan(bytes, host ? PENALTY_ITERATIONS : undefined, rounds),
      {
        name: 'vchan-bench',
      },
    );
    const domU = expectGuestOk(await run.domU.finished({ timeoutMs: 1_200_000 }));
    const dom0 = expectGuestOk(await run.dom0.finished({ timeoutMs: 300_000 }));
    return {
      bytes,
      rings: 'server read 1024 B, write 2048 B (libxenvchan in-page rings; vchan-socket-proxy -m server)',
      rounds,
      domUToDom0: vchanDirection(
        roundRates(dom0, 'C', 'domU->dom0', rounds),
        roundRates(dom0, 'ours', 'domU->dom0', rounds),
        roundRates(dom0, 'ours unbuffered', 'domU->dom0', rounds),
      ),
      dom0ToDomU: vchanDirection(
        roundRates(domU, 'C', 'dom0->domU', rounds),
        roundRates(domU, 'ours', 'dom0->domU', rounds),
        roundRates(domU, 'ours unbuffered', 'dom0->domU', rounds),
      ),
      ...(host ? { penalty: penaltyFigures(host, penaltyOfRun(domU)) } : {}),
      domid: run.domid,
    };
  } finally {
    await lab.shutdown();
  }
}
