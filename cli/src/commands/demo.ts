import type { Command } from 'commander';
import { ExitCode } from '../errors.ts';
import { type CliContext, type CommandModule, handler } from '../program.ts';

export const demoCommand: CommandModule = {
  register(program: Command, _ctx: CliContext) {
    program
      .command('demo')
      .description('the main job: a demonstration of what moat does today (says honestly what it runs)')
      .action(
        handler(async (reporter) => {
          reporter.log('moat demo: nothing but the CLI exists yet');
          return ExitCode.ok;
        }),
      );
  },
};
