import { bundleVmEntry, defaultCacheDir } from '@moat/unikernel';

/**
 * Bundles a guest entry into one CommonJS file for node 20 under `<cache>/lab/bundles/`
 * (unikernel's bundleVmEntry, the same bundling the VM images use).
 */
export function bundleEntry(entry: string, cacheDir = defaultCacheDir()): Promise<string> {
  return bundleVmEntry(entry, { cacheDir });
}
