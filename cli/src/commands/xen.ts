import { XenError } from '@moat/xen';
import { measureIndexAccess } from '@moat/xen/bench';
import type { Command } from 'commander';
import { ExitCode, SetupProblem } from '../errors.ts';
import { type CliContext, type CommandModule, handler } from '../program.ts';

/** `moat bench xen-index`: how shared ring indexes are best read and written. */
export const xenCommand: CommandModule = {
  register(_program: Command, ctx: CliContext) {
    ctx.bench
      .command('xen-index')
      .description(
        'shared-page index access: Atomics on an Int32Array vs addon calls, on an external buffer (needs the built addon)',
      )
      .option('--ops <n>', 'operations per variant', '2000000')
      .action(
        handler(async (reporter, cmd) => {
          const ops = Number(cmd.opts<{ ops: string }>().ops);
          if (!Number.isInteger(ops) || ops < 1000)
            throw new SetupProblem('--ops must be an integer >= 1000');
          let f: ReturnType<typeof measureIndexAccess>;
          try {
            f = measureIndexAccess(ops);
          } catch (error) {
            if (error instanceof XenError && error.operation === 'load native addon')
              throw new SetupProblem(`${error.message}`);
            throw error;
          }
          const ns = (x: number) => Number(x.toFixed(2));
          reporter.result('shared index access (ns/op)', {
            ops: f.ops,
            atomicsLoad: ns(f.atomicsLoadNs),
            atomicsStore: ns(f.atomicsStoreNs),
            addonLoad32: ns(f.addonLoadNs),
            addonStore32: ns(f.addonStoreNs),
            addonOverAtomics: ns(f.addonOverAtomics),
            faster: f.addonOverAtomics > 1 ? 'Atomics' : 'addon',
          });
          return ExitCode.ok;
        }),
      );
  },
};
