import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { build } from 'esbuild';
import { ExitCode } from '../errors.ts';
import { type CliContext, type CommandModule, handler } from '../program.ts';

const ENTRY = join(dirname(fileURLToPath(import.meta.url)), '..', 'bundle-entries', 'vm-api.ts');

interface BundleFigures {
  bytes: number;
  /** Our source files the bundle's imports reach, and their size: what an auditor has to read. */
  sourceFiles: number;
  sourceBytes: number;
}

/** An esbuild bundle (node 20, ESM, `*.node` external) of `entry` or of `contents`. */
async function bundle(
  source: { entry: string } | { contents: string },
  options: { root: string; minify: boolean; treeShaking: boolean },
): Promise<BundleFigures> {
  const result = await build({
    ...('entry' in source
      ? { entryPoints: [source.entry] }
      : { stdin: { contents: source.contents, resolveDir: options.root, loader: 'ts' as const } }),
    absWorkingDir: options.root,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    write: false,
    logLevel: 'silent',
    metafile: true,
    minify: options.minify,
    treeShaking: options.treeShaking,
    external: ['*.node', 'sharp', 'esbuild'],
  });
  // Node's built-ins are external, so every input is one of our source files (or the stdin entry).
  const inputs = Object.values(result.metafile.inputs);
  return {
    bytes: result.outputFiles[0]?.contents.length ?? 0,
    sourceFiles: inputs.length,
    sourceBytes: inputs.reduce((sum, input) => sum + input.bytes, 0),
  };
}

/** Every entry of the packages below the VMs: what a VM would reach if the test tools were on the main entries. */
const EVERYTHING = [
  '@moat/xen',
  '@moat/xen/sim',
  '@moat/xen/conformance',
  '@moat/xen/bench',
  '@moat/xenstore',
  '@moat/xenstore/sim',
  '@moat/xenstore/conformance',
  '@moat/xenstore/bench',
  '@moat/vchan',
  '@moat/vchan/socket',
  '@moat/vchan/memory',
  '@moat/vchan/record',
  '@moat/qubesdb',
  '@moat/qubesdb/dom0',
  '@moat/qubesdb/bench',
  '@moat/qrexec',
  '@moat/qrexec/dom0',
  '@moat/qrexec/run',
  '@moat/qrexec/bench',
  '@moat/gui-agent',
  '@moat/gui-agent/daemon',
  '@moat/gui-agent/lab',
]
  .map((entry, i) => `export * as e${i} from '${entry}';`)
  .join('\n');

/**
 * `moat bench vm-bundle`: the bundle of the VM-side API (cli/src/bundle-entries/vm-api.ts) beside,
 * in the same run, a bundle of every entry of the same packages (main and test-tool subpaths).
 * With esbuild's tree shaking (what a VM ships) and without it (what the imports reach, which is
 * what a reader auditing the VM has to follow, and what a bundler that cannot prove a module
 * free of side effects keeps).
 */
export const bundleSizeCommand: CommandModule = {
  register(_program: Command, ctx: CliContext) {
    ctx.bench
      .command('vm-bundle')
      .description('esbuild bundle of the VM-side library API vs every entry of the same packages')
      .action(
        handler(async (reporter) => {
          const figures: Record<string, number | string> = {};
          for (const treeShaking of [true, false]) {
            for (const minify of [false, true]) {
              const name = `${treeShaking ? 'shaken' : 'unshaken'}${minify ? 'Minified' : ''}`;
              const options = { root: ctx.root, minify, treeShaking };
              const vm = await bundle({ entry: ENTRY }, options);
              const all = await bundle({ contents: EVERYTHING }, options);
              figures[`${name}VmBytes`] = vm.bytes;
              figures[`${name}EverythingBytes`] = all.bytes;
              figures[`${name}Ratio`] = Number((vm.bytes / all.bytes).toFixed(3));
              if (name === 'shaken') {
                figures.vmSourceFiles = vm.sourceFiles;
                figures.vmSourceBytes = vm.sourceBytes;
                figures.everythingSourceFiles = all.sourceFiles;
                figures.everythingSourceBytes = all.sourceBytes;
              }
            }
          }
          reporter.result('VM-side API bundle (esbuild, node20, esm)', figures);
          return ExitCode.ok;
        }),
      );
  },
};
