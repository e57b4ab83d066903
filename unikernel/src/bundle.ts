/**
 * Bundles a VM entry (TypeScript, imports resolved) into one CommonJS file for node 20, named by
 * its content hash under `<cache>/<subdir>/`, so an unchanged entry keeps its name and every
 * image built from it stays cached. Paths in the bundle are relative to the repository, so the
 * same sources give the same bytes in any checkout.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { defaultCacheDir, sha256 } from './cache.ts';
import { ImageBuildError } from './errors.ts';

const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..');

export interface BundleOptions {
  cacheDir?: string;
  /** Folder under the cache (default `lab/bundles`, where the lab's guests have always gone). */
  subdir?: string;
}

export async function bundleVmEntry(entry: string, options: BundleOptions = {}): Promise<string> {
  let result: Awaited<ReturnType<typeof build>>;
  try {
    result = await build({
      entryPoints: [entry],
      absWorkingDir: repoRoot,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      write: false,
      logLevel: 'silent',
      // Native addons are shipped next to the bundle on the disk, never inlined.
      external: ['*.node'],
      // CommonJS has no import.meta: esbuild would make it `{}`, and code that resolves files
      // from import.meta.url (createRequire in @moat/xen's addon loader) would get undefined.
      define: { 'import.meta.url': '__moatImportMetaUrl' },
      banner: { js: 'var __moatImportMetaUrl = require("node:url").pathToFileURL(__filename).href;' },
    });
  } catch (error) {
    throw new ImageBuildError('bundle', `esbuild failed for ${entry}: ${(error as Error).message}`);
  }
  const code = result.outputFiles?.[0]?.contents;
  if (!code) throw new ImageBuildError('bundle', `esbuild produced nothing for ${entry}`);
  const dir = join(options.cacheDir ?? defaultCacheDir(), options.subdir ?? join('lab', 'bundles'));
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${sha256(code).slice(0, 32)}.js`);
  if (!existsSync(path)) writeFileSync(path, code);
  return path;
}
