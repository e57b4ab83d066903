import { cpSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  cachedBuild,
  type DiskFile,
  defaultCacheDir,
  fetchDebianPackages,
  inputsKey,
  runProgram,
  sha256,
} from '@moat/unikernel';
import { LabError } from './errors.ts';
import { xenPins } from './pins.ts';

const repoRoot = resolve(new URL('.', import.meta.url).pathname, '..', '..');

/** Where a domU image puts the addon; guests find it through MOAT_XEN_ADDON (see guest.ts). */
export const GUEST_ADDON_PATH = '/app/moat_xen.node';

/** The libxen* libraries the addon links (binding.gyp) and what they link in turn. */
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

export interface GuestAddon {
  /** The compiled @moat/xen addon (N-API, so node 20.20.2 in the guests loads it). */
  readonly path: string;
  /** The addon plus the Xen libraries it needs, for a domU's disk. */
  readonly diskFiles: readonly DiskFile[];
}

/**
 * Compiles @moat/xen's addon for the guests: node-gyp on the host against Debian's libxen-dev,
 * in a copy of xen/'s sources under the cache (keyed by their content), so xen/'s own build
 * folder is never touched. The guests get Debian's libraries from the pinned packages.
 */
export async function buildGuestAddon(cacheDir = defaultCacheDir()): Promise<GuestAddon> {
  const xenDir = join(repoRoot, 'xen');
  const nativeDir = join(xenDir, 'native');
  if (!existsSync(join(xenDir, 'binding.gyp'))) throw new LabError('addon', `no ${xenDir}/binding.gyp`);
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
  const packages = await fetchDebianPackages(cacheDir, xenPins);
  const libraries = addonLibraries.map((name) => {
    for (const pkg of packages) {
      const candidate = join(pkg.root, 'usr', 'lib', 'x86_64-linux-gnu', name);
      if (existsSync(candidate)) return { path: `/lib/${name}`, source: candidate };
    }
    throw new LabError('addon', `${name} not found in the pinned Xen packages`);
  });
  return { path, diskFiles: [{ path: GUEST_ADDON_PATH, source: path }, ...libraries] };
}
