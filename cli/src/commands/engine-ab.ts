import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { SetupProblem } from '../errors.ts';

/**
 * `./moat bench engine --against <dir>`: this tree's engine (A) against another source tree's
 * (B, e.g. an older commit unpacked with `git archive`). Each tree's bench module is bundled by
 * esbuild the same way and both are loaded into one node process, which runs A's whole bench
 * and B's alternately (A B, then B A), round after round, so that both see the same load on a
 * shared machine within seconds of each other. Compared are per-round ratios A/B of the
 * packets per CPU second, and of each case's ratio to its floor (the copy loop measured just
 * before it, which cancels most of the load's drift); their median and spread say whether a
 * difference is real (`--against .` gives the noise: two copies of one engine).
 *
 * Both sides must run the same rules on the same packets. Benches from before ClientRules
 * set the compiled rule set on the engine directly (and, for the established flows, a
 * function that accepts everything), so each side is asked for that (`rulesThrough:
 * 'rule-set'`; an older bench ignores the option and does it anyway). Through ClientRules
 * the newer bench would add the two-family wrapper's call to every new flow, a cost of the
 * rules' entry point and not of the engine compared.
 */

const BENCH = join('firewall', 'src', 'engine', 'bench.ts');

interface CaseFigure {
  name: string;
  packetsPerSecond: number;
  ratioToFloor: number;
}

export interface AbCase {
  name: string;
  /** Median packets per CPU second over the rounds. */
  medianA: number;
  medianB: number;
  /** Per-round A/B ratios of packets per CPU second, sorted. */
  ratios: number[];
  medianRatio: number;
  /** Per-round A/B ratios of the cases' ratios to their floors, sorted. */
  floorRatios: number[];
  medianFloorRatio: number;
}

export interface AbResult {
  rounds: number;
  msPerMeasurement: number;
  cpu: number | undefined;
  /** 1-minute load average when the runs began and when they ended. */
  loadBefore: number;
  loadAfter: number;
  cases: AbCase[];
}

async function bundleBench(tree: string, outfile: string): Promise<void> {
  const entry = join(tree, BENCH);
  if (!existsSync(entry))
    throw new SetupProblem(`${entry} does not exist: --against takes a moat source tree`);
  await build({
    entryPoints: [entry],
    absWorkingDir: tree,
    outfile,
    bundle: true,
    // one module per tree, imported side by side: each keeps its own functions and JIT feedback
    platform: 'node',
    target: 'node20',
    format: 'esm',
    logLevel: 'silent',
  });
}

/** The child: imports both bundles and prints one JSON line per bench run, alternating. */
const RUNNER = `
const [a, b, rounds, ms] = process.argv.slice(2);
const benches = { a: await import(a), b: await import(b) };
for (let round = 0; round < Number(rounds); round++) {
  for (const side of round % 2 === 0 ? ['a', 'b'] : ['b', 'a']) {
    const r = await benches[side].runEngineBench({ minMs: Number(ms), rulesThrough: 'rule-set' });
    process.stdout.write(JSON.stringify({ round, side, cases: r.cases }) + '\\n');
  }
}
`;

interface RunLine {
  round: number;
  side: 'a' | 'b';
  cases: CaseFigure[];
}

function runAlternating(
  runner: string,
  bundles: [string, string],
  rounds: number,
  ms: number,
  cpu: number | undefined,
  onLine: (line: RunLine) => void,
): Promise<void> {
  const argv = [runner, ...bundles, String(rounds), String(ms)];
  const [cmd, args] =
    cpu === undefined
      ? [process.execPath, argv]
      : ['taskset', ['-c', String(cpu), process.execPath, ...argv]];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let pending = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      pending += d;
      let nl = pending.indexOf('\n');
      while (nl >= 0) {
        onLine(JSON.parse(pending.slice(0, nl)) as RunLine);
        pending = pending.slice(nl + 1);
        nl = pending.indexOf('\n');
      }
    });
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`the A/B runner exited with ${code}`)),
    );
  });
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

export async function runEngineAb(options: {
  root: string;
  against: string;
  rounds: number;
  ms: number;
  cpu?: number;
  onRound?: (round: number) => void;
}): Promise<AbResult> {
  const dir = mkdtempSync(join(tmpdir(), 'moat-engine-ab-'));
  try {
    const a = join(dir, 'a.mjs');
    const b = join(dir, 'b.mjs');
    await bundleBench(options.root, a);
    await bundleBench(options.against, b);
    const runner = join(dir, 'runner.mjs');
    writeFileSync(runner, RUNNER);
    const loadBefore = loadavg()[0]!;
    const perCase = new Map<string, { a: number[]; b: number[]; ratios: number[]; floorRatios: number[] }>();
    let held: RunLine | undefined;
    await runAlternating(runner, [a, b], options.rounds, options.ms, options.cpu, (line) => {
      if (!held || held.round !== line.round) {
        held = line;
        return;
      }
      const [fa, fb] = line.side === 'a' ? [line.cases, held.cases] : [held.cases, line.cases];
      for (const c of fa) {
        const other = fb.find((x) => x.name === c.name);
        if (!other) continue;
        const entry = perCase.get(c.name) ?? { a: [], b: [], ratios: [], floorRatios: [] };
        entry.a.push(c.packetsPerSecond);
        entry.b.push(other.packetsPerSecond);
        entry.ratios.push(c.packetsPerSecond / other.packetsPerSecond);
        entry.floorRatios.push(c.ratioToFloor / other.ratioToFloor);
        perCase.set(c.name, entry);
      }
      options.onRound?.(line.round);
    });
    return {
      rounds: options.rounds,
      msPerMeasurement: options.ms,
      cpu: options.cpu,
      loadBefore,
      loadAfter: loadavg()[0]!,
      cases: [...perCase].map(([name, e]) => ({
        name,
        medianA: Math.round(median(e.a)),
        medianB: Math.round(median(e.b)),
        ratios: e.ratios.sort((x, y) => x - y).map((r) => Number(r.toFixed(3))),
        medianRatio: Number(median(e.ratios).toFixed(3)),
        floorRatios: e.floorRatios.sort((x, y) => x - y).map((r) => Number(r.toFixed(3))),
        medianFloorRatio: Number(median(e.floorRatios).toFixed(3)),
      })),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
