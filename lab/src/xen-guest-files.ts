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
import { buildGuestAddon } from './addon.ts';
import { LabError } from './errors.ts';
import { xenPins } from './pins.ts';

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
 * Files that let a domU image talk Xen from JS and from C: our addon and the Xen libraries
 * (buildGuestAddon: `/app/moat_xen.node`, libraries in `/lib`, node's --library-path, where
 * they also serve Debian's `vchan-socket-proxy`), the proxy itself (`/bin/vchan-socket-proxy`)
 * and the C penalty workload (`/bin/penalty-workload`).
 */
export async function xenGuestFiles(cacheDir: string): Promise<DiskFile[]> {
  const addon = await buildGuestAddon(cacheDir);
  const packages = await fetchDebianPackages(cacheDir, xenPins);
  return [
    ...addon.diskFiles,
    {
      path: '/bin/vchan-socket-proxy',
      source: findFile(packages, ['usr/lib/xen-4.17/bin'], 'vchan-socket-proxy'),
      mode: 0o755,
    },
    { path: '/bin/penalty-workload', source: await buildPenaltyWorkload(cacheDir), mode: 0o755 },
  ];
}
