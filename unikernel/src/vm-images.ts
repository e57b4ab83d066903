/**
 * The images of moat's VMs: each VM's entry bundled, with @moat/xen's addon and the Xen
 * libraries on its disk, and nothing else than the unikernel's kernel, init and node. Used by
 * `./moat build firewall`, `./moat package` and the lab.
 */
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleVmEntry } from './bundle.ts';
import { defaultCacheDir, sha256File } from './cache.ts';
import { buildImage, type VmImage } from './image.ts';
import { buildXenAddon } from './xen-addon.ts';

const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..');

/** sys-moat's entry (firewall/src/vm/main.ts). */
export const FIREWALL_VM_ENTRY = join(repoRoot, 'firewall', 'src', 'vm', 'main.ts');
/** sys-moat's node environment (malloc tunables), /app/env on its disk for init. */
export const FIREWALL_VM_ENV = join(repoRoot, 'firewall', 'src', 'vm', 'node.env');

export interface BuiltVmImage {
  readonly image: VmImage;
  /** The bundle on the disk as /app/main.js. */
  readonly bundle: string;
  /** SHA-256 of the image's three files, by name (vmlinuz, initramfs.cpio.gz, disk.squashfs). */
  readonly sha256: Record<string, string>;
}

/**
 * A VM image from an entry that runs on Xen through @moat/xen. With `outputDir` the image is
 * assembled afresh there (see ImageOptions.outputDir), else taken from or put in the cache.
 */
export async function buildVmImage(
  entry: string,
  options: {
    cacheDir?: string;
    outputDir?: string;
    /** More entries bundled onto the disk beside main.js (moat-viewer's decode worker). */
    bundles?: readonly { readonly path: string; readonly entry: string }[];
    /** A file of NAME=value lines init adds to node's environment (/app/env on the disk). */
    env?: string;
  } = {},
): Promise<BuiltVmImage> {
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const addon = await buildXenAddon(cacheDir);
  const bundle = await bundleVmEntry(entry, { cacheDir, subdir: join('unikernel', 'bundles') });
  const extra = [];
  for (const b of options.bundles ?? [])
    extra.push({
      path: b.path,
      source: await bundleVmEntry(b.entry, { cacheDir, subdir: join('unikernel', 'bundles') }),
    });
  const image = await buildImage({
    bundle,
    cacheDir,
    files: [
      ...addon.diskFiles,
      ...extra,
      ...(options.env ? [{ path: '/app/env', source: options.env }] : []),
    ],
    ...(options.outputDir ? { outputDir: options.outputDir } : {}),
  });
  const sha256: Record<string, string> = {};
  for (const [name, path] of [
    ['vmlinuz', image.kernel],
    ['initramfs.cpio.gz', image.initramfs],
    ['disk.squashfs', image.disk],
  ] as const)
    sha256[name] = await sha256File(path);
  return { image, bundle, sha256 };
}

export function buildFirewallImage(
  options: { cacheDir?: string; outputDir?: string } = {},
): Promise<BuiltVmImage> {
  return buildVmImage(FIREWALL_VM_ENTRY, { ...options, env: FIREWALL_VM_ENV });
}
