import { runNetifSimBench } from '@moat/netif/bench';
import type { Command } from 'commander';
import { ExitCode, SetupProblem } from '../errors.ts';
import { type CliContext, type CommandModule, handler } from '../program.ts';

/** `moat bench netif-sim` (netif package, on the host): the lab bench's path on SimHypervisor. */
export const netifBenchCommand: CommandModule = {
  register(_program: Command, ctx: CliContext) {
    ctx.bench
      .command('netif-sim')
      .description(
        "@moat/netif on the host (SimHypervisor): 64 KiB GSO frames, ACK-clocked, client -> a middle domain (our netback, a hub, our netfront) -> a netvm's netback, beside the same traffic client -> netvm directly; MB per CPU second, events and grant-copy calls per frame (the lab bench's path without emulation: `./moat bench netif` measures it on Xen)",
      )
      .option('--frames <n>', 'data frames per path', '4000')
      .option('--window <n>', 'frames in flight (ACK-clocked, one ACK per two frames)', '16')
      .action(
        handler(async (reporter, cmd) => {
          const o = cmd.opts<{ frames: string; window: string }>();
          const frames = Number(o.frames);
          const window = Number(o.window);
          if (!Number.isInteger(frames) || frames < 100)
            throw new SetupProblem('--frames must be an integer >= 100');
          if (!Number.isInteger(window) || window < 1 || window > 64)
            throw new SetupProblem('--window must be an integer from 1 to 64');
          const f = await runNetifSimBench({ frames, window });
          for (const [name, p] of [
            ['direct (client -> netvm)', f.direct],
            ['middle (client -> our domain -> netvm)', f.middle],
          ] as const)
            reporter.result(`netif sim ${name}`, { ...p, frameBytes: f.frameBytes, window: f.window });
          reporter.result('netif sim: the middle hop', {
            ratioPerCpuSecond: f.ratio,
            middleCpuUsPerFrame: f.middle.cpuUsPerFrame,
            directCpuUsPerFrame: f.direct.cpuUsPerFrame,
          });
          return ExitCode.ok;
        }),
      );
  },
};
