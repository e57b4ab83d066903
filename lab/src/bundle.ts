import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultCacheDir, sha256 } from '@moat/unikernel';
import { build } from 'esbuild';
import { LabError } from './errors.ts';

/**
 * Bundles a guest entry (TypeScript, imports resolved) into one CommonJS file for node 20,
 * named by its content hash under `<cache>/lab/bundles/`, so an unchanged entry keeps its
 * name and every image built from it stays cached.
 */
export async function bundleEntry(entry: string, cacheDir = defaultCacheDir()): Promise<string> {
  let result: Awaited<ReturnType<typeof build>>;
  try {
    result = await build({
      entryPoints: [entry],
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
    throw new LabError('bundle', `esbuild failed for ${entry}: ${(error as Error).message}`);
  }
  const code = result.outputFiles?.[0]?.contents;
  if (!code) throw new LabError('bundle', `esbuild produced nothing for ${entry}`);
  const dir = join(cacheDir, 'lab', 'bundles');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${sha256(code).slice(0, 32)}.js`);
  if (!existsSync(path)) writeFileSync(path, code);
  return path;
}
