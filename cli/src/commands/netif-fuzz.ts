import { fuzzNetif } from '@moat/netif/fuzz';
import type { Command } from 'commander';
import { CheckFailed, ExitCode, SetupProblem } from '../errors.ts';
import { type CliContext, type CommandModule, handler } from '../program.ts';

const targets = ['netback', 'netfront'] as const;

/** `moat fuzz netif`: generated and mutated ring requests/responses through netback and netfront. */
export const netifFuzzCommand: CommandModule = {
  register(program: Command, _ctx: CliContext) {
    const fuzz =
      program.commands.find((c) => c.name() === 'fuzz') ??
      program.command('fuzz').description('fuzzing campaigns: mutated inputs against our parsers');
    fuzz
      .command('netif')
      .description(
        'generated and mutated Xen netif ring slots and indexes through netback (requests) and netfront (responses): exit 1 on any exception or broken invariant',
      )
      .option('--target <t>', 'netback, netfront or all', 'all')
      .option('--seconds <n>', 'time per target', '10')
      .option('--iterations <n>', 'stop each target after this many cases instead')
      .option('--seed <n>', 'campaign seed (a case is reproduced from seed and iteration)', '1')
      .action(
        handler(async (reporter, cmd) => {
          const o = cmd.opts<{ target: string; seconds: string; iterations?: string; seed: string }>();
          const seconds = Number(o.seconds);
          const iterations = o.iterations === undefined ? undefined : Number(o.iterations);
          const seed = Number(o.seed);
          if (!(seconds > 0) || (iterations !== undefined && !(iterations > 0)) || !Number.isInteger(seed))
            throw new SetupProblem('--seconds and --iterations must be positive, --seed an integer');
          const chosen = o.target === 'all' ? [...targets] : [o.target];
          for (const t of chosen)
            if (!(targets as readonly string[]).includes(t))
              throw new SetupProblem(`unknown target ${t} (netback, netfront or all)`);
          let failed = 0;
          for (const target of chosen as (typeof targets)[number][]) {
            reporter.log(`fuzzing ${target} rings for ${iterations ?? `${seconds} s`}`);
            const r = fuzzNetif({
              target,
              seed,
              ...(iterations === undefined ? { seconds } : { iterations }),
            });
            failed += r.findings.length;
            reporter.result(`fuzz netif ${target}`, {
              executions: r.executions,
              perSecond: Math.round(r.executions / r.seconds),
              seconds: Number(r.seconds.toFixed(1)),
              seed: r.seed,
              framesDelivered: r.framesDelivered,
              cutReasons: Object.keys(r.cuts).length,
              cuts: Object.values(r.cuts).reduce((a, b) => a + b, 0),
              findings: r.findings.map((f) => `${f.iteration}: ${f.detail}`).join('; ') || 'none',
            });
          }
          if (failed > 0) throw new CheckFailed(`${failed} netif fuzzing findings`);
          return ExitCode.ok;
        }),
      );
  },
};
