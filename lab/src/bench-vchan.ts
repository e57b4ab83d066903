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
  /** MB/s (10^6 bytes) at the receiver, first to last byte. */
  readonly c: number;
  readonly ours: number;
  /** ours / c: the target is at least 0.8. */
  readonly ratio: number;
}

export interface VchanBenchFigures {
  readonly bytes: number;
  /** libxenvchan ring sizes of the measured channels (the C proxy's server asks for the smallest). */
  readonly rings: string;
  readonly domUToDom0: VchanBenchDirection;
  readonly dom0ToDomU: VchanBenchDirection;
  /** The same run's emulation penalty, so the MB/s can be read as emulated figures. */
  readonly penalty?: PenaltyFigures;
  readonly domid: number;
}

/**
 * The bench's plan. Each measured channel has the domU end under test and the same C
 * vchan-socket-proxy end in dom0, so "C" and "ours" differ only in the domU end:
 * - C: vchan-socket-proxy in the domU (server), from /dev/zero or to a counting pipe;
 * - ours: VchanStream over the addon (server, the same ring sizes as the proxy's server).
 * The receiver times from its first byte to the last; the sender sends until the receiver closes.
 */
export function vchanBenchPlan(bytes: number, penaltyIterations: number | undefined): VchanPlan {
  const t = 600_000;
  const domU: [string, VchanTask][] = [];
  if (penaltyIterations) domU.push(['penalty', { kind: 'penalty', iterations: penaltyIterations, runs: 5 }]);
  domU.push(
    ['C domU->dom0', { kind: 'source', impl: 'c', role: 'server', port: 7001, timeoutMs: t }],
    [
      'ours domU->dom0',
      { kind: 'source', impl: 'ours', role: 'server', port: 7002, ringBytes: 0, timeoutMs: t },
    ],
    ['C dom0->domU', { kind: 'sink', impl: 'c', role: 'server', port: 7003, bytes, timeoutMs: t }],
    [
      'ours dom0->domU',
      { kind: 'sink', impl: 'ours', role: 'server', port: 7004, bytes, ringBytes: 0, timeoutMs: t },
    ],
  );
  const dom0: [string, VchanTask][] = [
    ['C domU->dom0', { kind: 'sink', impl: 'c', role: 'client', port: 7001, bytes, timeoutMs: t }],
    ['ours domU->dom0', { kind: 'sink', impl: 'c', role: 'client', port: 7002, bytes, timeoutMs: t }],
    ['C dom0->domU', { kind: 'source', impl: 'c', role: 'client', port: 7003, timeoutMs: t }],
    ['ours dom0->domU', { kind: 'source', impl: 'c', role: 'client', port: 7004, timeoutMs: t }],
  ];
  return { domU, dom0 };
}

function rate(run: GuestRun, step: string): number {
  const result = run.results.find((r) => r.name === step);
  if (!result?.ok) throw new Error(`${run.guest}: ${step}: ${result?.error ?? 'no result'}`);
  return (result.data as { mbPerS: number }).mbPerS;
}

/** Four significant digits: emulated rates are small (tens of KB/s), two decimals would hide them. */
const figure = (x: number) => Number(x.toPrecision(4));

function direction(c: number, ours: number): VchanBenchDirection {
  return { c: figure(c), ours: figure(ours), ratio: Number((ours / c).toFixed(2)) };
}

/** `./moat bench vchan`: boots the lab, measures both directions for C and ours, and the penalty. */
export async function runVchanBench(
  options: LabOptions & { mib?: number; penalty?: boolean; onStep?: (text: string) => void } = {},
): Promise<VchanBenchFigures> {
  const bytes = (options.mib ?? 1) * MiB;
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
      vchanBenchPlan(bytes, host ? PENALTY_ITERATIONS : undefined),
      {
        name: 'vchan-bench',
      },
    );
    const domU = expectGuestOk(await run.domU.finished({ timeoutMs: 1_200_000 }));
    const dom0 = expectGuestOk(await run.dom0.finished({ timeoutMs: 300_000 }));
    return {
      bytes,
      rings: 'server read 1024 B, write 2048 B (libxenvchan in-page rings; vchan-socket-proxy -m server)',
      domUToDom0: direction(rate(dom0, 'C domU->dom0'), rate(dom0, 'ours domU->dom0')),
      dom0ToDomU: direction(rate(domU, 'C dom0->domU'), rate(domU, 'ours dom0->domU')),
      ...(host ? { penalty: penaltyFigures(host, penaltyOfRun(domU)) } : {}),
      domid: run.domid,
    };
  } finally {
    await lab.shutdown();
  }
}
