import { join } from 'node:path';
import { debianPins, defaultCacheDir, fetchDebianPackages } from '@moat/unikernel';
import { LabError } from './errors.ts';

/**
 * Debian's PVH GRUB (grub-xen-host's grub-i386-xen_pvh.bin, pinned): the same kind as Qubes'
 * pvgrub2-pvh, which boots a template whose `kernel` is empty. Xen starts it as the PVH
 * domain's kernel; it reads /boot/grub/grub.cfg from the domain's disks.
 */
export async function fetchPvhGrub(cacheDir = defaultCacheDir()): Promise<string> {
  const [grubPackage] = await fetchDebianPackages(cacheDir, [debianPins.pvhGrub]);
  if (!grubPackage) throw new LabError('pvh-grub', 'grub-xen-host was not fetched');
  return join(grubPackage.root, 'usr', 'lib', 'grub-xen', 'grub-i386-xen_pvh.bin');
}
