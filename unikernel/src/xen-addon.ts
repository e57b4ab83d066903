/**
 * @moat/xen's native addon for VM images: compiled with node-gyp on the build machine against
 * Debian's libxen-dev, in a copy of xen/'s sources under the cache (keyed by their content, so
 * xen/'s own build folder is never touched), shipped on the VM's disk with the pinned Debian
 * Xen libraries it links. A VM's bundle finds it through MOAT_XEN_ADDON.
 */
import { cpSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cachedBuild, defaultCacheDir, inputsKey, sha256 } from './cache.ts';
import { fetchDebianPackages } from './debian.ts';
import { ImageBuildError } from './errors.ts';
import { runProgram } from './exec.ts';
import type { DiskFile } from './image.ts';
import { xenLibraryPins } from './pins.ts';

const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..');

/** Where an image puts the addon (the disk is mounted on /mnt, so node sees /mnt/app/moat_xen.node). */
export const XEN_ADDON_DISK_PATH = '/app/moat_xen.node';

/** The libxen* libraries the addon links (xen/binding.gyp) and what they link in turn. */
const addonLibraries = [
  'libxenvchan.so.4.17',
  'libxenevtchn.so.1',
  'libxengnttab.so.1',
  'libxenstore.so.4',
  'libxentoollog.so.1',
  'libxentoolcore.so.1',
  'libxencall.so.1',
  'libxenctrl.so.4.17',
  'libxenforeignmemory.so.1',
  'libxendevicemodel.so.1',
];

export interface XenAddon {
  /** The compiled addon (N-API, so the images' node 20.20.2 loads it). */
  readonly path: string;
  /** The addon plus the Xen libraries it needs, for a VM's disk. */
  readonly diskFiles: readonly DiskFile[];
}

export async function buildXenAddon(cacheDir = defaultCacheDir()): Promise<XenAddon> {
  const xenDir = join(repoRoot, 'xen');
  const nativeDir = join(xenDir, 'native');
  if (!existsSync(join(xenDir, 'binding.gyp')))
    throw new ImageBuildError('addon', `no ${xenDir}/binding.gyp`);
  const sources = readdirSync(nativeDir)
    .sort()
    .map((name) => `${name} ${sha256(readFileSync(join(nativeDir, name)))}`);
  const key = inputsKey({ v: 1, gyp: sha256(readFileSync(join(xenDir, 'binding.gyp'))), sources });
  const { dir } = await cachedBuild(join(cacheDir, 'lab', 'addon'), key, async (tmp) => {
    cpSync(join(xenDir, 'binding.gyp'), join(tmp, 'binding.gyp'));
    cpSync(nativeDir, join(tmp, 'native'), { recursive: true });
    await runProgram(
      'node-gyp',
      join(repoRoot, 'node_modules', '.bin', 'node-gyp'),
      ['rebuild', '--nodedir=/usr', '--jobs', '2'],
      { cwd: tmp, env: { ...process.env, NODE_PATH: join(repoRoot, 'node_modules') }, timeoutMs: 600_000 },
    );
  });
  const path = join(dir, 'build', 'Release', 'moat_xen.node');
  const packages = await fetchDebianPackages(cacheDir, xenLibraryPins);
  const libraries = addonLibraries.map((name) => {
    for (const pkg of packages) {
      const candidate = join(pkg.root, 'usr', 'lib', 'x86_64-linux-gnu', name);
      if (existsSync(candidate)) return { path: `/lib/${name}`, source: candidate };
    }
    throw new ImageBuildError('addon', `${name} not found in the pinned Xen packages`);
  });
  return { path, diskFiles: [{ path: XEN_ADDON_DISK_PATH, source: path }, ...libraries] };
}
