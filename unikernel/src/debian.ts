import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { cachedBuild, sha256File } from './cache.ts';
import { ImageBuildError } from './errors.ts';
import { runProgram } from './exec.ts';
import type { DebianPin } from './pins.ts';

/** An unpacked Debian package: its files under `root`, and the .deb's SHA-256 (its identity). */
export interface UnpackedPackage {
  readonly pin: DebianPin;
  readonly root: string;
  readonly debSha256: string;
}

/** The file name apt-get gives a downloaded package (the epoch's ':' is URL-encoded). */
function debFileName(pin: DebianPin): string {
  return `${pin.name}_${pin.version.replace(':', '%3a')}_amd64.deb`;
}

/**
 * Downloads (apt-get download, once) and unpacks (dpkg -x, once) pinned Debian packages into
 * `<cacheDir>/debian/`. Nothing is installed on the build machine.
 */
export async function fetchDebianPackages(
  cacheDir: string,
  pins: readonly DebianPin[],
): Promise<UnpackedPackage[]> {
  const debs = join(cacheDir, 'debian', 'debs');
  mkdirSync(debs, { recursive: true });
  const missing = pins.filter((pin) => !existsSync(join(debs, debFileName(pin))));
  if (missing.length > 0) {
    try {
      await runProgram(
        'apt-get download',
        'apt-get',
        ['download', '-q', ...missing.map((p) => `${p.name}=${p.version}`)],
        { cwd: debs },
      );
    } catch (error) {
      throw new ImageBuildError(
        'apt-get download',
        `could not download ${missing.map((p) => `${p.name}=${p.version}`).join(' ')}; if Debian replaced ` +
          `these versions, update unikernel/src/pins.ts (or the lab's pins). ${(error as Error).message}`,
      );
    }
  }
  const unpacked: UnpackedPackage[] = [];
  for (const pin of pins) {
    const deb = join(debs, debFileName(pin));
    if (!existsSync(deb)) {
      throw new ImageBuildError('apt-get download', `${debFileName(pin)} is missing after download`, {
        have: readdirSync(debs),
      });
    }
    const debSha256 = await sha256File(deb);
    const { dir } = await cachedBuild(join(cacheDir, 'debian', 'unpacked'), debSha256.slice(0, 32), (tmp) =>
      runProgram('dpkg -x', 'dpkg', ['-x', deb, tmp]).then(() => undefined),
    );
    unpacked.push({ pin, root: dir, debSha256 });
  }
  return unpacked;
}
