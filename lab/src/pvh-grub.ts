import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  buildTemplateRootImage,
  debianPins,
  defaultCacheDir,
  fetchDebianPackages,
  type VmImage,
} from '@moat/unikernel';
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

/** A domU booted like a Qubes template (`DomUOptions.pvhGrub`): Xen starts `grub`, which boots `rootImage` (xvda). */
export interface PvhGrubBoot {
  readonly grub: string;
  readonly rootImage: string;
}

/** The timestamp inside lab-made root images (2026-01-01), as SOURCE_DATE_EPOCH is in packages. */
const ROOT_IMAGE_EPOCH = 1_767_225_600;

/**
 * `image` as a template root image called `name` (buildTemplateRootImage, as `./moat package`
 * makes the packaged ones) and the PVH GRUB that boots it. The root image is built again on
 * every call (a few seconds), not cached: its bytes depend on the builder's code as well as on
 * the image, and a stale one would boot an old grub.cfg.
 */
export async function pvhGrubBoot(
  image: VmImage,
  name: string,
  cacheDir = defaultCacheDir(),
): Promise<PvhGrubBoot> {
  const dir = join(cacheDir, 'lab', 'template-root', image.key);
  mkdirSync(dir, { recursive: true });
  const root = await buildTemplateRootImage(
    image,
    name,
    join(dir, `${name}.img`),
    join(dir, `${name}.staging`),
    ROOT_IMAGE_EPOCH,
  );
  return { grub: await fetchPvhGrub(cacheDir), rootImage: root.path };
}
