import { runEngineBench } from '@moat/firewall/bench';
import type { Command } from 'commander';
import { ExitCode, SetupProblem } from '../errors.ts';
import { type CliContext, type CommandModule, handler } from '../program.ts';

/** `moat bench engine` (firewall package). */
export const firewallCommand: CommandModule = {
  register(_program: Command, ctx: CliContext) {
    ctx.bench
      .command('engine')
      .description(
        'firewall packet engine, packets/s of CPU time on one core: (a) established flows with NAT, (b) new flows against 1,000 rules, (c) a mix; each beside the cost of copying the bytes (the floor)',
      )
      .option('--ms <n>', 'CPU milliseconds per measurement', '1000')
      .action(
        handler(async (reporter, cmd) => {
          const ms = Number(cmd.opts<{ ms: string }>().ms);
          if (!(ms >= 50)) throw new SetupProblem('--ms must be at least 50');
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
