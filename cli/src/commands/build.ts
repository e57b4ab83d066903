import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { buildFirewallImage } from '@moat/unikernel';
import type { Command } from 'commander';
import { CheckFailed, ExitCode } from '../errors.ts';
import { type CliContext, type CommandModule, handler } from '../program.ts';

/**
 * `moat build firewall`: sys-moat's VM image (kernel, initramfs, read-only disk with node, the
 * bundle of firewall/src/vm/main.ts and @moat/xen's addon), assembled twice from the same
 * inputs into fresh folders and compared byte for byte; prints each file's SHA-256.
 */
export const buildCommand: CommandModule = {
  register(program: Command, ctx: CliContext) {
    const build = program.command('build').description('build VM images');
    build
      .command('firewall')
      .description('the sys-moat image, built twice (same bytes required), into <dist>/images/moat-firewall')
      .option('--dist <dir>', 'output folder', 'dist')
      .action(
        handler(async (reporter, cmd) => {
          const dist = resolve(ctx.root, cmd.opts<{ dist: string }>().dist);
          const out = join(dist, 'images', 'moat-firewall');
          const again = join(dist, 'images', '.moat-firewall-again');
          reporter.log('building the firewall image (first build)');
          const first = await buildFirewallImage({ outputDir: out });
          reporter.log('building it again from the same inputs');
          const second = await buildFirewallImage({ outputDir: again });
          rmSync(again, { recursive: true, force: true });
          const differ = Object.keys(first.sha256).filter((k) => first.sha256[k] !== second.sha256[k]);
          reporter.result('firewall image (SHA-256)', {
            folder: out,
            imageKey: first.image.key,
            ...first.sha256,
            reproducible: differ.length === 0,
          });
          if (differ.length > 0) throw new CheckFailed(`two builds differ in ${differ.join(', ')}`);
          return ExitCode.ok;
        }),
      );
  },
};
