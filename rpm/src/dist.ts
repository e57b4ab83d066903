import { mkdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  buildTemplateRootImage,
  buildVmImage,
  defaultCacheDir,
  ImageBuildError,
  kernelDirectoryFiles,
  sha256File,
  type VmImage,
  writeKernelDirectory,
} from '@moat/unikernel';
import { PackagingError } from './errors.ts';
import { type PackagedVm, packagedVms } from './vms.ts';

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
  /** The bundled entry, relative to the repository. */
  readonly entry: string;
  readonly imageKey: string;
  /** dist/templates/<name>/root.img */
  readonly rootImage: string;
  /** dist/vm-kernels/<name>/ */
  readonly kernelDir: string;
  readonly sha256: Record<string, string>;
}

/**
 * The image a package of `vm` carries: its own entry with its bundles, node environment and
 * @moat/xen's addon, or `entry` alone. The lab's template test boots this same image, so both build it here.
 */
export async function buildPackagedVmImage(
  vm: PackagedVm,
  cacheDir: string,
  entry?: string,
): Promise<VmImage> {
  try {
    const bundles = entry ? [] : (vm.app.bundles ?? []);
    const env = entry ? undefined : vm.app.env;
    return (await buildVmImage(entry ?? vm.app.entry, { cacheDir, bundles, ...(env ? { env } : {}) })).image;
  } catch (error) {
    if (error instanceof ImageBuildError && error.step === 'bundle')
      throw new PackagingError('bundle', error.message);
    throw error;
  }
}

/** What a delivery says it runs: the entry relative to the repository. */
function appName(vm: PackagedVm, entry: string | undefined): string {
  return relative(repoRoot, entry ?? vm.app.entry);
}

/** Builds every VM's template root image and kernel directory under `distDir`. */
export async function buildDist(options: DistOptions): Promise<VmDelivery[]> {
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const log = options.log ?? (() => {});
  const deliveries: VmDelivery[] = [];
  for (const vm of packagedVms) {
    const entry = options.entries?.[vm.name];
    log(`${vm.name}: image from ${appName(vm, entry)}`);
    const image = await buildPackagedVmImage(vm, cacheDir, entry);
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
