import { resolve } from 'node:path';
import { buildDist, buildPackages, sourceDateEpoch } from '@moat/rpm';
import type { Command } from 'commander';
import { ExitCode } from '../errors.ts';
import { type CliContext, type CommandModule, handler } from '../program.ts';

/**
 * `moat package`: builds each VM's template root image and kernel directory into dist/, then every
 * package (templates, kernel directories, moat-dom0, client packages) into dist/packages with
 * their SHA-256. Same inputs and SOURCE_DATE_EPOCH give the same bytes.
 */
export const packageCommand: CommandModule = {
  register(program: Command, ctx: CliContext) {
    program
      .command('package')
      .description(
        'build the Qubes packages into dist/packages (template RPMs, moat-vm-kernels, moat-dom0, moat-client rpm+deb) with SHA-256 sums',
      )
      .option(
        '--firewall-entry <file>',
        'TypeScript entry of the firewall VM (default: sys-moat, firewall/src/vm/main.ts)',
      )
      .option(
        '--viewer-entry <file>',
        'TypeScript entry of the viewer VM (default: moat-viewer, viewer/src/vm/main.ts)',
      )
      .option('--dist <dir>', 'output folder', 'dist')
      .option('--version <version>', 'package version', '0.1.0')
      .option('--release <release>', 'package release', '1')
      .option('--packages-only', 'reuse the template images and kernel directories already in dist/')
      .action(
        handler(async (reporter, cmd) => {
          const opts = cmd.opts<{
            firewallEntry?: string;
            viewerEntry?: string;
            dist: string;
            version: string;
            release: string;
            packagesOnly?: boolean;
          }>();
          const epoch = sourceDateEpoch(process.env.SOURCE_DATE_EPOCH);
          const distDir = resolve(ctx.root, opts.dist);
          const log = (line: string) => reporter.log(line);
          if (!opts.packagesOnly) {
            const deliveries = await buildDist({
              distDir,
              epoch,
              log,
              entries: {
                'moat-firewall': opts.firewallEntry && resolve(opts.firewallEntry),
                'moat-viewer': opts.viewerEntry && resolve(opts.viewerEntry),
              },
            });
            for (const d of deliveries) reporter.result(`${d.name} deliveries (${d.entry})`, d.sha256);
          }
          const built = await buildPackages({
            distDir,
            version: opts.version,
            release: opts.release,
            epoch,
            log,
          });
          reporter.result(
            'packages (dist/packages/SHA256SUMS)',
            Object.fromEntries(
              built.map((p) => [p.file.split('/').at(-1) ?? p.name, `${p.sha256} ${p.bytes} bytes`]),
            ),
          );
          return ExitCode.ok;
        }),
      );
  },
};
