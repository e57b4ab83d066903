import { buildXenAddon, defaultCacheDir, XEN_ADDON_DISK_PATH, type XenAddon } from '@moat/unikernel';

/** Where a domU image puts the addon; guests find it through MOAT_XEN_ADDON (see guest.ts). */
export const GUEST_ADDON_PATH = XEN_ADDON_DISK_PATH;

/** The compiled @moat/xen addon and its Xen libraries for a domU's disk (built by unikernel/). */
export type GuestAddon = XenAddon;

/** @moat/xen's addon for the lab's guests: unikernel's buildXenAddon (the same build the VM images use). */
export function buildGuestAddon(cacheDir = defaultCacheDir()): Promise<GuestAddon> {
  return buildXenAddon(cacheDir);
}
