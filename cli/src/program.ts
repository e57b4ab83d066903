import { Command, CommanderError } from 'commander';
import { CliError, ExitCode } from './errors.ts';
import { createReporter, type Reporter } from './output.ts';

/** What a command module gets when it registers its subcommands. */
export interface CliContext {
  /** The repository root (where `./moat` lives). */
  readonly root: string;
  /** `moat bench`: benchmark modules add their subcommands here. */
  readonly bench: Command;
  /** `moat lab`: lab modules add their subcommands here. */
  readonly lab: Command;
}

/**
 * The registration hook: each package's CLI module (cli/src/commands/<package>.ts)
 * exports one of these and is listed in commands/index.ts.
 */
export interface CommandModule {
  register(program: Command, ctx: CliContext): void;
}

/** The space-separated command path, e.g. `bench vchan`. */
function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/**
 * Wraps a command handler: builds its Reporter from `--json`, maps errors to exit
 * codes, and emits the end envelope. Handlers return the exit code (default ok).
 */
export function handler<Args extends unknown[]>(
  run: (
    reporter: Reporter,
    cmd: Command,
    ...args: Args
  ) => Promise<ExitCode | undefined> | ExitCode | undefined,
): (...args: unknown[]) => Promise<void> {
  return async (...all: unknown[]) => {
    const cmd = all[all.length - 1] as Command;
    const args = all.slice(0, -1) as Args;
    const json = Boolean(cmd.optsWithGlobals().json);
    const reporter = createReporter(commandPath(cmd), json);
    let code: ExitCode;
    try {
      code = (await run(reporter, cmd, ...args)) ?? ExitCode.ok;
    } catch (error) {
      if (error instanceof CliError) {
        reporter.error(error.message, error.details);
        code = error.exitCode;
      } else {
        const e = error instanceof Error ? error : new Error(String(error));
        reporter.error(`unexpected error: ${e.message}`, { stack: e.stack });
        code = ExitCode.checkFailed;
      }
    }
    reporter.end(code);
    process.exitCode = code;
  };
}

export function createProgram(root: string, modules: readonly CommandModule[]): Command {
  const program = new Command('moat')
    .description(
      'moat: small, memory-safe Qubes OS VMs in TypeScript, and the Xen/Qubes libraries beneath them',
    )
    .option('--json', 'print one JSON object per line (see README: Machine-readable output)')
    .showHelpAfterError()
    .exitOverride();

  const bench = program
    .command('bench')
    .description('benchmarks: figures and ratios against a baseline measured in the same run');
  const lab = program.command('lab').description('real Xen in QEMU: boot the lab, run scenarios');
  const ctx: CliContext = { root, bench, lab };
  for (const module of modules) module.register(program, ctx);
  // Commander exits on its own for usage errors; route that through our exit codes.
  for (const cmd of [program, ...allSubcommands(program)]) cmd.exitOverride();
  return program;
}

function allSubcommands(cmd: Command): Command[] {
  return cmd.commands.flatMap((c) => [c, ...allSubcommands(c)]);
}

/** Runs the program and returns the process exit code. */
export async function runProgram(program: Command, argv: readonly string[]): Promise<number> {
  try {
    await program.parseAsync(argv as string[], { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : ExitCode.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      // help and version are not errors
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version') return ExitCode.ok;
      if (error.code === 'commander.help') return ExitCode.ok;
      return ExitCode.usage;
    }
    throw error;
  }
}
