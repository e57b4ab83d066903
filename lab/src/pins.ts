import { type DebianPin, debianPins, xenLibraryPins, xenVersion } from '@moat/unikernel';

/**
 * The lab's Debian inputs beyond the unikernel's (kernels and node's libraries come from
 * there): Xen 4.17 and its tools, the libraries they link, busybox for dom0's init script.
 * Fetched with apt-get download, unpacked with dpkg -x, never installed (unikernel/src/debian.ts).
 */
export const xenPins: readonly DebianPin[] = [
  { name: 'xen-hypervisor-4.17-amd64', version: xenVersion },
  { name: 'xen-utils-4.17', version: xenVersion },
  { name: 'xenstore-utils', version: xenVersion },
  ...xenLibraryPins,
];

/** What xl, xenstored and xen-init-dom0 link besides Xen's own libraries (from `ldd`). */
export const dom0LibraryPins: readonly DebianPin[] = [
  debianPins.libc,
  debianPins.libgcc,
  debianPins.libstdcxx,
  { name: 'libyajl2', version: '2.1.0-3+deb12u2' },
  { name: 'libuuid1', version: '2.38.1-5+deb12u3' },
  { name: 'zlib1g', version: '1:1.2.13.dfsg-1' },
  { name: 'liblzma5', version: '5.4.1-1+deb12u1' },
  { name: 'libzstd1', version: '1.5.4+dfsg2-5' },
];

export const busyboxPin: DebianPin = { name: 'busybox-static', version: '1:1.35.0-4+deb12u1+b1' };
