import { benchCases, benchDecoders, benchScaled, fuzzFormat, viewerFixtures } from '@moat/viewer/host';
import type { Command } from 'commander';
import { CheckFailed, ExitCode, SetupProblem } from '../errors.ts';
import { type CliContext, type CommandModule, handler } from '../program.ts';
import { ensureDebianPackages } from '../system.ts';
import { labDebianPackages } from './lab.ts';
import { runViewerBench, viewAndSave } from './viewer-lab.ts';

const formats = ['png', 'gif', 'jpeg', 'bmp', 'webp'] as const;
type Format = (typeof formats)[number];

function parseFormats(value: string): Format[] {
  if (value === 'all') return [...formats];
  const chosen = value.split(',');
  for (const f of chosen)
    if (!(formats as readonly string[]).includes(f))
      throw new SetupProblem(`unknown format ${f} (one of ${formats.join(', ')}, or all)`);
  return chosen as Format[];
}

/** `moat fuzz decoders` and `moat bench decoders` (viewer package). */
export const viewerCommand: CommandModule = {
  register(program: Command, ctx: CliContext) {
    const fuzz =
      program.commands.find((c) => c.name() === 'fuzz') ??
      program.command('fuzz').description('fuzzing campaigns: mutated corpus files against our parsers');
    fuzz
      .command('decoders')
      .description(
        'mutated corpus files through the image decoders: counts crashes, hangs and budget overruns (exit 1 on any)',
      )
      .option('--format <formats>', 'png, gif, jpeg, bmp, webp (comma-separated) or all', 'all')
      .option('--seconds <n>', 'time per format', '20')
      .option('--iterations <n>', 'stop each format after this many inputs instead')
      .option('--seed <n>', 'campaign seed (an input is reproduced from seed and iteration)', '1')
      .action(
        handler(async (reporter, cmd) => {
          const o = cmd.opts<{ format: string; seconds: string; iterations?: string; seed: string }>();
          const seconds = Number(o.seconds);
          const iterations = o.iterations === undefined ? undefined : Number(o.iterations);
          const seed = Number(o.seed);
          if (!(seconds > 0) || (iterations !== undefined && !(iterations > 0)) || !Number.isInteger(seed))
            throw new SetupProblem('--seconds and --iterations must be positive, --seed an integer');
          let failed = 0;
          for (const format of parseFormats(o.format)) {
            reporter.log(`fuzzing ${format} for ${iterations ?? `${seconds} s`}`);
            const r = await fuzzFormat({
              format,
              fixtures: viewerFixtures,
              seed,
              ...(iterations === undefined ? { seconds } : { iterations }),
            });
            failed += r.crashes + r.hangs + r.overruns;
            reporter.result(`fuzz ${format}`, {
              executions: r.executions,
              perSecond: Math.round(r.executions / r.seconds),
              seconds: Number(r.seconds.toFixed(1)),
              seeds: r.seeds,
              seed: r.seed,
              decoded: r.decoded,
              refused: JSON.stringify(r.refused),
              crashes: r.crashes,
              hangs: r.hangs,
              overruns: r.overruns,
              slowestMs: Number(r.slowestMs.toFixed(1)),
              findings: r.findings.map((f) => `${f.kind}@${f.iteration}: ${f.detail}`).join('; ') || 'none',
            });
          }
          if (failed > 0) throw new CheckFailed(`${failed} fuzzing findings (crash, hang or budget overrun)`);
          return ExitCode.ok;
        }),
      );

    program
      .command('view')
      .description(
        'open an image in a moat-viewer VM in the lab (Xen in QEMU) as qvm-open-in-dvm does, and save its window as PNG',
      )
      .argument('<image>', 'the file to open')
      .option(
        '--keys <keys>',
        'input after it opened: keysyms (r,R,plus,minus,Left...), wheel-up, wheel-down, frames:N; KEY~MS: its screenshot once no frame came for MS ms (space~3000 pauses an animation)',
      )
      .requiredOption(
        '--png <file>',
        'where to save the window (the last screenshot; earlier ones as <file>-N.png)',
      )
      .option('--memory <mib>', 'the VM memory in MiB', '400')
      .action(
        handler(async (reporter, cmd) => {
          const o = cmd.opts<{ keys?: string; png: string; memory: string }>();
          const memoryMb = Number(o.memory);
          if (!Number.isInteger(memoryMb) || memoryMb < 96)
            throw new SetupProblem('--memory must be at least 96 MiB');
          await ensureDebianPackages(labDebianPackages, (line) => reporter.log(line));
          await viewAndSave(reporter, {
            file: cmd.args[0]!,
            png: o.png,
            memoryMb,
            ...(o.keys ? { keys: o.keys } : {}),
          });
          return ExitCode.ok;
        }),
      );

    ctx.bench
      .command('viewer')
      .description(
        'moat-viewer in the lab: qubes.OpenInVM to first frame and the VM memory; the least memory at which a 24-megapixel JPEG opens',
      )
      .option('--memory <mib>', 'VM memory for the first-frame runs', '400')
      .action(
        handler(async (reporter, cmd) => {
          await ensureDebianPackages(labDebianPackages, (line) => reporter.log(line));
          await runViewerBench(reporter, ctx.root, Number(cmd.opts<{ memory: string }>().memory));
          return ExitCode.ok;
        }),
      );

    ctx.bench
      .command('decoders')
      .description(
        'decode time of our decoders vs sharp (libvips, 1 thread) per format, same inputs, same run; then 24 MP stills at full size and 1/4 (time, peak memory)',
      )
      .option('--reps <n>', 'decodes per file and decoder (the fastest counts)', '10')
      .action(
        handler(async (reporter, cmd) => {
          const reps = Number(cmd.opts<{ reps: string }>().reps);
          if (!Number.isInteger(reps) || reps < 1)
            throw new SetupProblem('--reps must be a positive integer');
          const rows = await benchDecoders(await benchCases(viewerFixtures), reps);
          for (const row of rows) {
            reporter.result(`decode ${row.row}`, {
              files: row.files,
              megapixels: Number(row.megapixels.toFixed(2)),
              oursMs: Number(row.oursMs.toFixed(2)),
              sharpMs:
                row.sharpMs === null ? 'n/a (sharp has no BMP loader)' : Number(row.sharpMs.toFixed(2)),
              oursMpPerS: Number(row.oursMpPerS.toFixed(1)),
              speedVsSharp: row.speedVsSharp === null ? 'n/a' : Number(row.speedVsSharp.toFixed(3)),
            });
          }
          const scaled = await benchScaled(viewerFixtures, Math.min(reps, 3));
          for (const row of scaled) {
            const full = scaled.find((r) => r.name === row.name && r.scale === 1);
            reporter.result(`decode ${row.name} at 1/${row.scale}`, {
              size: row.size,
              ms: Number(row.ms.toFixed(1)),
              peakMb: Number(row.peakMb.toFixed(1)),
              ...(full && row.scale > 1
                ? {
                    timeVsFull: Number((row.ms / full.ms).toFixed(3)),
                    peakVsFull: Number((row.peakMb / full.peakMb).toFixed(3)),
                  }
                : {}),
            });
          }
          return ExitCode.ok;
        }),
      );
  },
};
