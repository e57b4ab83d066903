import { buildImage, defaultCacheDir, type VmImage } from '@moat/unikernel';
import type { GuestAddon } from './addon.ts';
import { bundleEntry } from './bundle.ts';

/** Bundles a guest entry and builds its domU image (with the Xen addon and its libraries if given). */
export async function guestImage(
  entry: string,
  options: { addon?: GuestAddon; cacheDir?: string } = {},
): Promise<{ bundle: string; image: VmImage }> {
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const bundle = await bundleEntry(entry, cacheDir);
  const image = await buildImage({ bundle, cacheDir, files: options.addon?.diskFiles ?? [] });
  return { bundle, image };
}
