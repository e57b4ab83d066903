import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { buildGuestAddon } from '@moat/lab';
import {
  buildImage,
  buildTemplateRootImage,
  type DiskFile,
  defaultCacheDir,
  kernelDirectoryFiles,
  sha256,
  sha256File,
  writeKernelDirectory,
} from '@moat/unikernel';
import { build } from 'esbuild';
import { PackagingError } from './errors.ts';
import { type PackagedVm, packagedVms, placeholderEntry, repositoryRoot } from './vms.ts';

export interface DistOptions {
  /** Output folder (`<repository>/dist`). */
  readonly distDir: string;
  /** The VM entry (TypeScript) to bundle per VM; a VM without one gets the placeholder. */
  readonly entries?: Partial<Record<PackagedVm['name'], string>>;
  /** Every timestamp in the products (SOURCE_DATE_EPOCH). */
  readonly epoch: number;
  readonly cacheDir?: string;
  readonly log?: (line: string) => void;
}

/** One VM's two deliveries under dist/, with the SHA-256 of every file. */
export interface VmDelivery {
  readonly name: PackagedVm['name'];
  /** The bundled entry, relative to the repository, or `placeholder (issue N)`. */
  readonly entry: string;
  readonly imageKey: string;
  /** dist/templates/<name>/root.img */
  readonly rootImage: string;
  /** dist/vm-kernels/<name>/ */
  readonly kernelDir: string;
  readonly sha256: Record<string, string>;
}

/** Bundles a VM entry into one CommonJS file for node 20 (cached by content hash). */
async function bundleVm(vm: PackagedVm, entry: string | undefined, cacheDir: string): Promise<string> {
  const define: Record<string, string> = entry
    ? {}
    : { MOAT_VM_NAME: JSON.stringify(vm.name), MOAT_VM_ISSUE: JSON.stringify(vm.placeholder.issue) };
  let code: Uint8Array | undefined;
  try {
    const result = await build({
      entryPoints: [entry ?? placeholderEntry],
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      write: false,
      logLevel: 'silent',
      external: ['*.node'],
      // CommonJS has no import.meta: code that resolves files from import.meta.url (the addon
      // loader, the decode worker's default URL) gets the bundle's own URL instead of undefined.
      define: { ...define, 'import.meta.url': '__moatImportMetaUrl' },
      banner: { js: 'var __moatImportMetaUrl = require("node:url").pathToFileURL(__filename).href;' },
    });
    code = result.outputFiles?.[0]?.contents;
  } catch (error) {
    throw new PackagingError(
      'bundle',
      `esbuild failed for ${entry ?? placeholderEntry}: ${(error as Error).message}`,
    );
  }
  if (!code) throw new PackagingError('bundle', `esbuild produced nothing for ${vm.name}`);
  const dir = join(cacheDir, 'rpm', 'bundles');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${sha256(code).slice(0, 32)}.js`);
  writeFileSync(path, code);
  return path;
}

/** Builds every VM's template root image and kernel directory under `distDir`. */
export async function buildDist(options: DistOptions): Promise<VmDelivery[]> {
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const log = options.log ?? (() => {});
  const deliveries: VmDelivery[] = [];
  for (const vm of packagedVms) {
    const entry = options.entries?.[vm.name] ?? vm.app?.entry;
    const bundle = await bundleVm(vm, entry, cacheDir);
    log(`${vm.name}: image from ${entry ?? `placeholder (issue ${vm.placeholder.issue})`}`);
    const files: DiskFile[] = [];
    if (entry && vm.app) {
      for (const extra of vm.app.bundles)
        files.push({ path: extra.path, source: await bundleVm(vm, extra.entry, cacheDir) });
      if (vm.app.xenAddon) files.push(...(await buildGuestAddon(cacheDir)).diskFiles);
    }
    const image = await buildImage({ bundle, cacheDir, files });
    const templateDir = join(options.distDir, 'templates', vm.name);
    mkdirSync(templateDir, { recursive: true });
    const rootImage = join(templateDir, 'root.img');
    await buildTemplateRootImage(
      image,
      vm.name,
      rootImage,
      join(options.distDir, `.staging-${vm.name}`),
      options.epoch,
    );
    const kernelDir = join(options.distDir, 'vm-kernels', vm.name);
    writeKernelDirectory(image, kernelDir, options.epoch);
    const sums: Record<string, string> = {};
    for (const file of [rootImage, ...kernelDirectoryFiles.map((f) => join(kernelDir, f))]) {
      sums[relative(options.distDir, file)] = await sha256File(file);
    }
    log(`${vm.name}: root.img and kernel directory written`);
    deliveries.push({
      name: vm.name,
      entry: entry ? relative(repositoryRoot, entry) : `placeholder (issue ${vm.placeholder.issue})`,
      imageKey: image.key,
      rootImage,
      kernelDir,
      sha256: sums,
    });
  }
  return deliveries;
}
