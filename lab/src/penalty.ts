import { spawnSync } from 'node:child_process';
import { defaultCacheDir, type VmImage } from '@moat/unikernel';
import { expectGuestOk, type GuestRun } from './guest-run.ts';
import { bootLab, type Lab, type LabOptions } from './lab.ts';
import { penaltyWorkloadJs } from './penalty-workload.ts';
import { buildVchanGuest } from './vchan-lab.ts';
import { buildPenaltyWorkload } from './xen-guest-files.ts';

/** Iterations of the penalty workload: about 0.1 s natively, seconds under emulation. */
export const PENALTY_ITERATIONS = 10_000_000;

/** What the guest's `penalty` task reports (vchan-roles.ts). */
export interface PenaltyRun {
  readonly iterations: number;
  readonly jsMs: readonly number[];
  readonly jsHash: number;
  readonly cMs: readonly number[];
  readonly cHash: number;
}

/** The workload natively on this machine: C (the same static binary the guest runs) and JS. */
export async function measureHostPenalty(
  iterations = PENALTY_ITERATIONS,
  runs = 5,
  cacheDir = defaultCacheDir(),
): Promise<PenaltyRun> {
  const binary = await buildPenaltyWorkload(cacheDir);
  const cMs: number[] = [];
  const jsMs: number[] = [];
  let cHash = -1;
  let jsHash = 0;
  // C and JS runs alternate, so that a busy machine's load falls on both alike (their ratio is
  // what corrects a bench's figures).
  for (let i = 0; i < runs; i++) {
    const out = spawnSync(binary, [String(iterations)], { encoding: 'utf8' });
    if (out.status !== 0) throw new Error(`penalty workload failed: ${out.stderr}`);
    const r = JSON.parse(out.stdout) as { hash: number; ms: number };
    cMs.push(r.ms);
    cHash = r.hash;
    const start = performance.now();
    jsHash = penaltyWorkloadJs(iterations);
    jsMs.push(performance.now() - start);
  }
  return { iterations, jsMs, jsHash, cMs, cHash };
}

export interface PenaltyFigures {
  readonly iterations: number;
  /** Fastest run of each, ms. */
  readonly host: { readonly cMs: number; readonly jsMs: number };
  readonly guest: { readonly cMs: number; readonly jsMs: number };
  /** guest / host: how much slower the same code runs in the lab's domU. */
  readonly slowdown: { readonly c: number; readonly js: number };
  /** JS / C on each side. */
  readonly jsOverC: { readonly host: number; readonly guest: number };
  /** Every run of both computed the same hash (the work was really done). */
  readonly hashesAgree: boolean;
}

const best = (xs: readonly number[]) => (xs.length ? Math.min(...xs) : Number.NaN);
const round = (x: number, digits = 2) => Number(x.toFixed(digits));

export function penaltyFigures(host: PenaltyRun, guest: PenaltyRun): PenaltyFigures {
  const h = { cMs: round(best(host.cMs), 1), jsMs: round(best(host.jsMs), 1) };
  const g = { cMs: round(best(guest.cMs), 1), jsMs: round(best(guest.jsMs), 1) };
  return {
    iterations: host.iterations,
    host: h,
    guest: g,
    slowdown: { c: round(g.cMs / h.cMs, 1), js: round(g.jsMs / h.jsMs, 1) },
    jsOverC: { host: round(h.jsMs / h.cMs), guest: round(g.jsMs / g.cMs) },
    hashesAgree: new Set([host.cHash, host.jsHash, guest.cHash, guest.jsHash]).size === 1,
  };
}

/** The guest's penalty result out of a run. */
export function penaltyOfRun(run: GuestRun, step = 'penalty'): PenaltyRun {
  const result = run.results.find((r) => r.name === step);
  if (!result?.ok) throw new Error(`${run.guest}: no penalty result (${result?.error ?? 'missing'})`);
  return result.data as PenaltyRun;
}

/**
 * The workload in a PV domU of a running lab (the vchan guest's image, which carries the C
 * binary) against the host's runs: the emulation penalty of that lab run (`bench netif`,
 * `bench firewall`).
 */
export async function penaltyInLab(
  lab: Lab,
  image: VmImage,
  host: PenaltyRun,
  name: string,
): Promise<PenaltyFigures> {
  const domU = lab.createDomU(image, {
    type: 'pv',
    name,
    memoryMb: 256,
    args: { tasks: [['penalty', { kind: 'penalty', iterations: host.iterations, runs: 5 }]] },
  });
  return penaltyFigures(host, penaltyOfRun(expectGuestOk(await domU.finished({ timeoutMs: 900_000 }))));
}

/**
 * `./moat bench penalty`: the workload natively, then in a PV domU of the lab (the vchan
 * guest's image, which carries the C binary), and the slowdown of each.
 */
export async function runPenaltyBench(
  options: LabOptions & { iterations?: number; guestRuns?: number; type?: 'pv' | 'pvh' } = {},
): Promise<PenaltyFigures> {
  const iterations = options.iterations ?? PENALTY_ITERATIONS;
  const guest = await buildVchanGuest(options.cacheDir);
  const host = await measureHostPenalty(iterations, 5, options.cacheDir);
  const lab = await bootLab(options);
  try {
    const domU = lab.createDomU(guest.image, {
      type: options.type ?? 'pv',
      name: 'penalty',
      memoryMb: 256,
      args: { tasks: [['penalty', { kind: 'penalty', iterations, runs: options.guestRuns ?? 5 }]] },
    });
    const run = expectGuestOk(await domU.finished({ timeoutMs: 600_000 }));
    return penaltyFigures(host, penaltyOfRun(run));
  } finally {
    await lab.shutdown();
  }
}
