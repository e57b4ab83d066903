import { mkdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  buildImage,
  buildTemplateRootImage,
  buildVmImage,
  bundleVmEntry,
  defaultCacheDir,
  ImageBuildError,
  kernelDirectoryFiles,
  sha256File,
  type VmImage,
  writeKernelDirectory,
} from '@moat/unikernel';
import { PackagingError } from './errors.ts';
import { type PackagedVm, packagedVms, placeholderEntry } from './vms.ts';

const repoRoot = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');

export interface DistOptions {
  /** Output folder (`<repository>/dist`). */
  readonly distDir: string;
  /** The VM entry (TypeScript) to bundle per VM, instead of its own (PackagedVm.app). */
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

/** The VM's image: its entry with @moat/xen's addon, or the placeholder (no addon: it touches no Xen device). */
async function vmImage(vm: PackagedVm, entry: string | undefined, cacheDir: string): Promise<VmImage> {
  try {
    const app = entry ?? ('entry' in vm.app ? vm.app.entry : undefined);
    if (app) return (await buildVmImage(app, { cacheDir })).image;
    const issue = 'placeholderIssue' in vm.app ? vm.app.placeholderIssue : '?';
    const bundle = await bundleVmEntry(placeholderEntry, {
      cacheDir,
      subdir: join('rpm', 'bundles'),
      define: { MOAT_VM_NAME: JSON.stringify(vm.name), MOAT_VM_ISSUE: JSON.stringify(issue) },
    });
    return await buildImage({ bundle, cacheDir });
  } catch (error) {
    if (error instanceof ImageBuildError && error.step === 'bundle')
      throw new PackagingError('bundle', error.message);
    throw error;
  }
}

/** What a delivery says it runs: the entry relative to the repository, or `placeholder (issue N)`. */
function appName(vm: PackagedVm, entry: string | undefined): string {
  const app = entry ?? ('entry' in vm.app ? vm.app.entry : undefined);
  if (app) return relative(repoRoot, app);
  return `placeholder (issue ${'placeholderIssue' in vm.app ? vm.app.placeholderIssue : '?'})`;
}

/** Builds every VM's template root image and kernel directory under `distDir`. */
export async function buildDist(options: DistOptions): Promise<VmDelivery[]> {
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const log = options.log ?? (() => {});
  const deliveries: VmDelivery[] = [];
  for (const vm of packagedVms) {
    const entry = options.entries?.[vm.name];
    log(`${vm.name}: image from ${appName(vm, entry)}`);
    const image = await vmImage(vm, entry, cacheDir);
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
      entry: appName(vm, entry),
      imageKey: image.key,
      rootImage,
      kernelDir,
      sha256: sums,
    });
  }
  return deliveries;
}
