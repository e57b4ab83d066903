import { resolve } from 'node:path';
import { runEngineBench } from '@moat/firewall/bench';
import type { Command } from 'commander';
import { ExitCode, SetupProblem } from '../errors.ts';
import { type CliContext, type CommandModule, handler } from '../program.ts';
import { runEngineAb } from './engine-ab.ts';

/** `moat bench engine` (firewall package). */
export const firewallCommand: CommandModule = {
  register(_program: Command, ctx: CliContext) {
    ctx.bench
      .command('engine')
      .description(
        'firewall packet engine, packets/s of CPU time on one core: (a) established flows with NAT, (b) new flows against 1,000 rules, (c) a mix; each beside the cost of copying the bytes (the floor)',
      )
      .option('--ms <n>', 'CPU milliseconds per measurement', '1000')
      .option(
        '--against <dir>',
        "A/B: this tree's engine against the one in another moat source tree (e.g. `git archive <commit> firewall | tar -x -C <dir>`), both in one process, alternating",
      )
      .option('--rounds <n>', 'A/B rounds (each runs both benches once, order swapped every round)', '10')
      .option('--cpu <n>', 'A/B: pin both benches to this CPU with taskset')
      .action(
        handler(async (reporter, cmd) => {
          const opts = cmd.opts<{ ms: string; against?: string; rounds: string; cpu?: string }>();
          const ms = Number(opts.ms);
          if (!(ms >= 50)) throw new SetupProblem('--ms must be at least 50');
          if (opts.against !== undefined) {
            const rounds = Number(opts.rounds);
            if (!(Number.isInteger(rounds) && rounds >= 1))
              throw new SetupProblem('--rounds must be a positive integer');
            const cpu = opts.cpu === undefined ? undefined : Number(opts.cpu);
            if (cpu !== undefined && !(Number.isInteger(cpu) && cpu >= 0))
              throw new SetupProblem('--cpu must be a CPU number');
            reporter.log(
              `A/B: ${rounds} rounds of both benches, ${ms} ms per measurement, against ${opts.against}`,
            );
            const ab = await runEngineAb({
              root: ctx.root,
              against: resolve(opts.against),
              rounds,
              ms,
              cpu,
              onRound: (round) => reporter.log(`round ${round + 1}/${rounds} done`),
            });
            for (const c of ab.cases) {
              reporter.result(`engine A/B ${c.name}`, {
                medianRatio: c.medianRatio,
                ratios: c.ratios.join(' '),
                medianRatioOfFloorRatios: c.medianFloorRatio,
                floorRatios: c.floorRatios.join(' '),
                medianPacketsPerSecondThisTree: c.medianA,
                medianPacketsPerSecondOther: c.medianB,
              });
            }
            reporter.result('engine A/B', {
              rounds: ab.rounds,
              msPerMeasurement: ab.msPerMeasurement,
              pinnedCpu: ab.cpu ?? 'none',
              loadAverageBefore: ab.loadBefore,
              loadAverageAfter: ab.loadAfter,
            });
            return ExitCode.ok;
          }
          reporter.log(`measuring ${ms} ms per case (engine and floor), one core`);
          const r = await runEngineBench({ minMs: ms });
          for (const c of r.cases) {
            reporter.result(`engine ${c.name}`, {
              packetsPerSecond: c.packetsPerSecond,
              floorPerSecond: c.floorPerSecond,
              ratioToFloor: c.ratioToFloor,
              wallClockPacketsPerSecond: c.wallClockPacketsPerSecond,
              forwardedShare: c.forwardedShare,
              gcRunsDuringMeasurement: c.gcRuns,
              averageFrameBytes: c.frameBytes,
              packets: c.packets,
            });
          }
          const established = r.cases.find((c) => c.name === 'established-nat');
          const fresh = r.cases.find((c) => c.name === 'new-flows-1000-rules');
          reporter.result('engine targets', {
            node: r.node,
            rules: r.rules,
            rulesFrom: r.rulesFrom,
            conntrackMax: r.conntrackMax,
            establishedTarget: r.targets.establishedPps,
            establishedMeetsTarget: (established?.packetsPerSecond ?? 0) >= r.targets.establishedPps,
            newFlowsTarget: r.targets.newFlowsPerSecond,
            newFlowsMeetTarget: (fresh?.packetsPerSecond ?? 0) >= r.targets.newFlowsPerSecond,
          });
          return ExitCode.ok;
        }),
      );
  },
};
