import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { CheckFailed, ExitCode, SetupProblem } from '../errors.ts';
import { type CliContext, type CommandModule, handler } from '../program.ts';
import { ensureDebianPackages, run } from '../system.ts';

/** One phase of `moat test`. Later packages add theirs to `testPhases`. */
export interface TestPhase {
  name: string;
  description: string;
  /** Debian packages this phase needs (installed with apt-get when missing). */
  debianPackages?: readonly string[];
  /** Whether the phase applies to this checkout (e.g. the folder exists). */
  applies?(root: string): boolean;
  run(root: string, log: (line: string) => void): Promise<void>;
}

const bin = (root: string, name: string) => join(root, 'node_modules', '.bin', name);

async function step(root: string, program: string, args: string[], what: string): Promise<void> {
  const code = await run(program, args, { cwd: root });
  if (code !== 0) throw new CheckFailed(`${what} failed (exit code ${code})`);
}

export const testPhases: TestPhase[] = [
  {
    name: 'lint',
    description: 'biome: formatting and lint rules',
    run: (root) =>
      step(root, bin(root, 'biome'), ['check', '--error-on-warnings', '.'], 'lint (biome check)'),
  },
  {
    name: 'typecheck',
    description: 'tsc --noEmit over every package (strict)',
    run: (root) => step(root, bin(root, 'tsc'), ['-p', 'tsconfig.json'], 'typecheck (tsc)'),
  },
  {
    name: 'addon',
    description: 'xen/ native addon: node-gyp build against libxen-dev, then its load and no-Xen error tests',
    debianPackages: ['libxen-dev', 'python3', 'make', 'g++'],
    applies: hasFolder('xen/binding.gyp'),
    run: async (root) => {
      const xen = join(root, 'xen');
      const code = await run(bin(root, 'node-gyp'), ['rebuild', '--nodedir=/usr'], { cwd: xen });
      if (code !== 0)
        throw new CheckFailed(`addon build (node-gyp rebuild in xen/) failed (exit code ${code})`);
      // MOAT_REQUIRE_ADDON turns "addon not built, skip" into a failure in these tests.
      const tests = await run(bin(root, 'vitest'), ['run', 'xen/src/native'], {
        cwd: root,
        env: { ...process.env, MOAT_REQUIRE_ADDON: '1' },
      });
      if (tests !== 0) throw new CheckFailed(`addon tests failed (exit code ${tests})`);
    },
  },
  {
    name: 'unit',
    description: 'vitest: unit, property and host integration tests',
    // viewer's BMP tests use GraphicsMagick and Pillow as oracles, its scaled JPEG tests
    // libjpeg-turbo's djpeg; gui-agent's keymap test checks its tables against xkb-data and
    // X11/keysymdef.h (x11proto-dev).
    debianPackages: ['graphicsmagick', 'python3-pil', 'libjpeg-turbo-progs', 'xkb-data', 'x11proto-dev'],
    run: (root) => step(root, bin(root, 'vitest'), ['run'], 'unit tests (vitest)'),
  },
  {
    name: 'package',
    description:
      'Qubes packages: shellcheck moat-setup; build every package twice (same bytes), check file lists, modes, scriptlets, metadata, template payloads and root images; rpmlint',
    // The firewall and viewer images carry @moat/xen's addon, compiled with node-gyp against libxen-dev.
    debianPackages: [
      'libxen-dev',
      'python3',
      'make',
      'g++',
      'rpm',
      'rpmlint',
      'shellcheck',
      'squashfs-tools',
      'e2fsprogs',
      'tar',
      'gcc',
      'libc6-dev',
    ],
    applies: hasFolder('rpm/vitest.config.ts'),
    run: async (root) => {
      await step(
        root,
        'shellcheck',
        ['dom0-scripts/moat-setup', 'dom0-scripts/src/fake-dom0/fake-qubes'],
        'shellcheck (dom0-scripts)',
      );
      await step(
        root,
        bin(root, 'vitest'),
        ['run', '--config', 'rpm/vitest.config.ts'],
        'package tests (rpm/test)',
      );
    },
  },
  {
    name: 'lab',
    description:
      'real Xen 4.17 in QEMU (TCG): dom0, PV and PVH domUs run our code (lab/test and test/, one boot shared by every lab file)',
    // QEMU for Xen; squashfs-tools, gcc and libc6-dev for the images; libxen-dev, python3, make
    // and g++ for the Xen addon the real VMs carry (node-gyp); e2fsprogs for the template root
    // images test/templates.lab.test.ts boots through PVH GRUB. GRUB itself (grub-xen-host) is a
    // pinned package fetched with apt-get download, like the guests' packages, never installed.
    debianPackages: [
      'qemu-system-x86',
      'squashfs-tools',
      'gcc',
      'libc6-dev',
      'libxen-dev',
      'python3',
      'make',
      'g++',
      'e2fsprogs',
    ],
    applies: hasFolder('lab/vitest.config.ts'),
    run: (root) =>
      step(
        root,
        bin(root, 'vitest'),
        ['run', '--config', 'lab/vitest.config.ts'],
        'lab tests (vitest, lab/)',
      ),
  },
  {
    name: 'fuzz',
    description:
      'image decoders: 20 s of mutated corpus files per format (no crash, hang or overrun); netif rings: 10 s each of mutated requests (netback) and responses (netfront)',
    applies: hasFolder('viewer'),
    run: async (root) => {
      await step(
        root,
        join(root, 'moat'),
        ['fuzz', 'decoders', '--seconds', '20'],
        'decoder fuzzing (moat fuzz decoders)',
      );
      await step(
        root,
        join(root, 'moat'),
        ['fuzz', 'netif', '--seconds', '10'],
        'netif ring fuzzing (moat fuzz netif)',
      );
    },
  },
];

function formatDuration(ms: number): string {
  const s = ms / 1000;
  return s < 60 ? `${s.toFixed(1)}s` : `${Math.floor(s / 60)}m${Math.round(s % 60)}s`;
}

export const testCommand: CommandModule = {
  register(program: Command, ctx: CliContext) {
    program
      .command('test')
      .description('run the whole test suite: every phase in order, with the duration of each')
      .option('--only <phases>', 'comma-separated phases to run')
      .option('--skip <phases>', 'comma-separated phases to skip')
      .option('--list', 'list the phases and exit')
      .action(
        handler(async (reporter, cmd) => {
          const opts = cmd.opts<{ only?: string; skip?: string; list?: boolean }>();
          const phases = testPhases.filter((p) => p.applies?.(ctx.root) ?? true);
          if (opts.list) {
            for (const p of phases) reporter.result(p.name, { description: p.description });
            return ExitCode.ok;
          }
          const only = opts.only?.split(',');
          const skip = new Set(opts.skip?.split(',') ?? []);
          for (const name of [...(only ?? []), ...skip]) {
            if (!testPhases.some((p) => p.name === name))
              throw new SetupProblem(`unknown test phase: ${name}`);
          }
          const selected = phases.filter((p) => (only ? only.includes(p.name) : true) && !skip.has(p.name));
          const log = (line: string) => reporter.log(line);

          const durations: { phase: string; ms: number; ok: boolean }[] = [];
          const setupStart = performance.now();
          await ensureDebianPackages([...new Set(selected.flatMap((p) => p.debianPackages ?? []))], log);
          durations.push({ phase: 'setup', ms: performance.now() - setupStart, ok: true });

          let failure: unknown;
          for (const phase of selected) {
            reporter.log(`== phase ${phase.name}: ${phase.description}`);
            const start = performance.now();
            try {
              await phase.run(ctx.root, log);
              durations.push({ phase: phase.name, ms: performance.now() - start, ok: true });
            } catch (error) {
              durations.push({ phase: phase.name, ms: performance.now() - start, ok: false });
              failure = error;
              break;
            }
            reporter.log(`== phase ${phase.name}: ok in ${formatDuration(performance.now() - start)}`);
          }
          reporter.result('test phases', {
            phases: durations
              .map((d) => `${d.phase} ${d.ok ? 'ok' : 'FAILED'} ${formatDuration(d.ms)}`)
              .join(', '),
          });
          if (failure) throw failure;
          return ExitCode.ok;
        }),
      );
  },
};

export function hasFolder(folder: string): (root: string) => boolean {
  return (root) => existsSync(join(root, folder));
}
