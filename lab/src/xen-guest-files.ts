import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  cachedBuild,
  type DiskFile,
  fetchDebianPackages,
  inputsKey,
  runProgram,
  sha256,
  type UnpackedPackage,
} from '@moat/unikernel';
import { nativeAddonPath } from '@moat/xen';
import { LabError } from './errors.ts';
import { xenPins } from './pins.ts';

/**
 * The Xen libraries our addon and vchan-socket-proxy link (`ldd`), by soname. node's own
 * libraries (libc, libstdc++, libgcc_s, libm) are on every disk already.
 */
const xenLibraries = [
  'libxenvchan.so.4.17',
  'libxenctrl.so.4.17',
  'libxenevtchn.so.1',
  'libxengnttab.so.1',
  'libxenstore.so.4',
  'libxentoollog.so.1',
  'libxentoolcore.so.1',
  'libxencall.so.1',
  'libxenforeignmemory.so.1',
  'libxendevicemodel.so.1',
];

function findFile(packages: readonly UnpackedPackage[], dirs: readonly string[], name: string): string {
  for (const pkg of packages) {
    for (const dir of dirs) {
      const path = join(pkg.root, dir, name);
      if (existsSync(path)) return path;
    }
  }
  throw new LabError('guest files', `${name} not found in ${packages.map((p) => p.pin.name).join(', ')}`);
}

const workloadSource = fileURLToPath(new URL('./penalty/workload.c', import.meta.url));

/** The C emulation-penalty workload, compiled statically (cached by its source and gcc). */
export async function buildPenaltyWorkload(cacheDir: string): Promise<string> {
  const source = readFileSync(workloadSource);
  const gcc = (await runProgram('gcc', 'gcc', ['--version'])).split('\n')[0] ?? '';
  const key = inputsKey({ v: 1, source: sha256(source), gcc });
  const { dir } = await cachedBuild(join(cacheDir, 'lab', 'penalty-workload'), key, async (tmp) => {
    await runProgram('gcc', 'gcc', ['-static', '-O2', '-s', '-o', join(tmp, 'workload'), workloadSource]);
  });
  return join(dir, 'workload');
}

/**
 * Files that let a domU image talk Xen from JS and from C: our compiled addon
 * (`/app/moat_xen.node`, loaded through MOAT_XEN_ADDON), the Xen libraries it and Debian's
 * `vchan-socket-proxy` need (in `/lib`, which is node's --library-path, so dlopen finds them),
 * the proxy itself (`/bin/vchan-socket-proxy`) and the C penalty workload (`/bin/penalty-workload`).
 * The addon is the one `node-gyp rebuild` left in xen/build (N-API, so node 20.20.2 in the
 * guest loads what the host's node 20 built).
 */
export async function xenGuestFiles(cacheDir: string): Promise<DiskFile[]> {
  const addon = nativeAddonPath();
  if (!existsSync(addon)) {
    throw new LabError(
      'guest files',
      `the native addon ${addon} is not built: run ./moat test --only addon (or node-gyp rebuild in xen/)`,
    );
  }
  const packages = await fetchDebianPackages(cacheDir, xenPins);
  const libDirs = ['lib/x86_64-linux-gnu', 'usr/lib/x86_64-linux-gnu'];
  return [
    { path: '/app/moat_xen.node', source: addon, mode: 0o755 },
    ...xenLibraries.map((name) => ({ path: `/lib/${name}`, source: findFile(packages, libDirs, name) })),
    {
      path: '/bin/vchan-socket-proxy',
      source: findFile(packages, ['usr/lib/xen-4.17/bin'], 'vchan-socket-proxy'),
      mode: 0o755,
    },
    { path: '/bin/penalty-workload', source: await buildPenaltyWorkload(cacheDir), mode: 0o755 },
  ];
}
