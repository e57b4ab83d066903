import { existsSync, lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  buildImage,
  type DebianPin,
  type DiskFile,
  debianPins,
  defaultCacheDir,
  defaultGuestModules,
  fetchDebianPackages,
  type KernelModule,
  type UnpackedPackage,
  type VmImage,
} from '@moat/unikernel';
import { buildGuestAddon, type GuestAddon } from './addon.ts';
import { bundleEntry } from './bundle.ts';
import { LabError } from './errors.ts';
import { busyboxPin, dom0LibraryPins, xenPins } from './pins.ts';

/**
 * The lab's Linux domUs (a client qube, a netvm and the Linux reference firewall, one image,
 * the role from the arguments):
 * the unikernel layout (Debian cloud kernel, our C init, node and the guest bundle on a
 * read-only disk) plus a Linux userland on the same disk: busybox, iproute2, nftables, conntrack,
 * iperf3, dnsmasq, and Xen's xl and xenstore tools (the netvm runs `xl devd` for its vifs'
 * hotplug, as a Qubes netvm does). The guest (guests/linux.guest.ts) links the disk's
 * folders into its root at start, so the programs run with their own ELF interpreter.
 */
const v = {
  iproute2: '6.1.0-3',
  nftables: '1.0.6-2+deb12u2',
  iperf: '3.12-1+deb12u2',
  krb: '1.20.1-2+deb12u5',
  tirpc: '1.3.3+ds-1',
};

/** Debian 12 packages of the userland and every library they link (apt-cache depends, closed). */
export const linuxUserlandPins: readonly DebianPin[] = [
  { name: 'iproute2', version: v.iproute2 },
  { name: 'nftables', version: v.nftables },
  { name: 'conntrack', version: '1:1.4.7-1+b2' },
  { name: 'libnftables1', version: v.nftables },
  { name: 'iperf3', version: v.iperf },
  { name: 'libiperf0', version: v.iperf },
  { name: 'dnsmasq-base', version: '2.90-4~deb12u2' },
  { name: 'libbpf1', version: '1:1.1.2-0+deb12u1' },
  { name: 'libbsd0', version: '0.11.7-2' },
  { name: 'libcap2', version: '1:2.66-4+deb12u3+b1' },
  { name: 'libcom-err2', version: '1.47.0-2+b2' },
  { name: 'libdb5.3', version: '5.3.28+dfsg2-1' },
  { name: 'libdbus-1-3', version: '1.14.10-1~deb12u1' },
  { name: 'libedit2', version: '3.1-20221030-2' },
  { name: 'libelf1', version: '0.188-2.1' },
  { name: 'libgcrypt20', version: '1.10.1-3+deb12u1' },
  { name: 'libgmp10', version: '2:6.2.1+dfsg1-1.1' },
  { name: 'libgpg-error0', version: '1.46-1' },
  { name: 'libgssapi-krb5-2', version: v.krb },
  { name: 'libhogweed6', version: '3.8.1-2' },
  { name: 'libidn2-0', version: '2.3.3-1+b1' },
  { name: 'libjansson4', version: '2.14-2' },
  { name: 'libk5crypto3', version: v.krb },
  { name: 'libkeyutils1', version: '1.6.3-2' },
  { name: 'libkrb5-3', version: v.krb },
  { name: 'libkrb5support0', version: v.krb },
  { name: 'liblz4-1', version: '1.9.4-1' },
  { name: 'libmd0', version: '1.0.4-2' },
  { name: 'libmnl0', version: '1.0.4-3' },
  { name: 'libnetfilter-conntrack3', version: '1.0.9-3' },
  { name: 'libnettle8', version: '3.8.1-2' },
  { name: 'libnfnetlink0', version: '1.0.2-2' },
  { name: 'libnftnl11', version: '1.2.4-2' },
  { name: 'libpcre2-8-0', version: '10.42-1' },
  { name: 'libsctp1', version: '1.0.19+dfsg-2' },
  { name: 'libselinux1', version: '3.4-1+b6' },
  { name: 'libssl3', version: '3.0.20-1~deb12u2' },
  { name: 'libsystemd0', version: '252.39-1~deb12u2' },
  { name: 'libtinfo6', version: '6.4-4' },
  { name: 'libtirpc3', version: v.tirpc },
  { name: 'libunistring2', version: '1.0-2' },
  { name: 'libxtables12', version: '1.8.9-2' },
];

/** Programs taken from the packages onto the disk's /bin (package-relative path). */
const programs: readonly { pkg: string; from: string; name: string }[] = [
  { pkg: busyboxPin.name, from: 'bin/busybox', name: 'busybox' },
  { pkg: 'iproute2', from: 'bin/ip', name: 'ip' },
  { pkg: 'iproute2', from: 'bin/ss', name: 'ss' },
  { pkg: 'nftables', from: 'usr/sbin/nft', name: 'nft' },
  { pkg: 'conntrack', from: 'usr/sbin/conntrack', name: 'conntrack' },
  { pkg: 'iperf3', from: 'usr/bin/iperf3', name: 'iperf3' },
  { pkg: 'dnsmasq-base', from: 'usr/sbin/dnsmasq', name: 'dnsmasq' },
  { pkg: 'xen-utils-4.17', from: 'usr/lib/xen-4.17/bin/xl', name: 'xl' },
  { pkg: 'xenstore-utils', from: 'usr/bin/xenstore', name: 'xenstore' },
];

/**
 * The modules a Linux guest loads besides the unikernel's: both network ends of Xen, the
 * bridge, and what the Linux reference firewall's nftables rules use (the Debian kernel has
 * them as modules and the guest has no modprobe to load them on demand): conntrack, NAT
 * (masquerade, DNAT), reject, and conntrack's netlink for `conntrack -L/-D`.
 */
export const linuxGuestModules: readonly KernelModule[] = [
  ...defaultGuestModules,
  { name: 'xen-netfront' },
  { name: 'xen-netback' },
  { name: 'bridge' },
  { name: 'nf_tables' },
  { name: 'nft_ct' },
  { name: 'nft_chain_nat' },
  { name: 'nft_nat' },
  { name: 'nft_masq' },
  { name: 'nft_reject_ipv4' },
  { name: 'nft_reject_ipv6' },
  { name: 'nf_conntrack_netlink' },
];

/** Every shared library (files and symlinks, by name) in a package's library folders. */
function libraryFiles(pkg: UnpackedPackage): DiskFile[] {
  const files: DiskFile[] = [];
  for (const dir of ['lib/x86_64-linux-gnu', 'usr/lib/x86_64-linux-gnu']) {
    const from = join(pkg.root, dir);
    if (!existsSync(from)) continue;
    for (const name of readdirSync(from).sort()) {
      if (!name.includes('.so')) continue;
      const path = join(from, name);
      // A dangling link (to a -dev package's file) is skipped; links are copied as files.
      if (lstatSync(path).isSymbolicLink() && !existsSync(path)) continue;
      if (!lstatSync(path).isDirectory()) files.push({ path: `/lib/${name}`, source: path, mode: 0o755 });
    }
  }
  return files;
}

/** The userland's files for the disk: programs in /bin, every library in /lib. */
export async function linuxUserlandFiles(cacheDir: string): Promise<DiskFile[]> {
  const pins = [...linuxUserlandPins, ...xenPins, ...dom0LibraryPins, busyboxPin, debianPins.libc];
  const packages = await fetchDebianPackages(cacheDir, pins);
  const byName = new Map(packages.map((p) => [p.pin.name, p]));
  const files = new Map<string, DiskFile>();
  for (const program of programs) {
    const pkg = byName.get(program.pkg);
    const source = pkg && join(pkg.root, program.from);
    if (!source || !existsSync(source))
      throw new LabError('linux image', `${program.from} not found in package ${program.pkg}`);
    files.set(`/bin/${program.name}`, { path: `/bin/${program.name}`, source, mode: 0o755 });
  }
  for (const pkg of packages) {
    if (pkg.pin.name === 'xen-hypervisor-4.17-amd64') continue;
    for (const file of libraryFiles(pkg)) if (!files.has(file.path)) files.set(file.path, file);
  }
  return [...files.values()].sort((a, b) => (a.path < b.path ? -1 : 1));
}

export const LINUX_GUEST = new URL('./guests/linux.guest.ts', import.meta.url).pathname;

export interface LinuxGuestImage {
  readonly bundle: string;
  readonly image: VmImage;
  readonly addon: GuestAddon;
}

/** Builds (or finds cached) the Linux guest image: kernel, init, node, userland, the guest bundle. */
export async function buildLinuxImage(
  options: { cacheDir?: string; addon?: GuestAddon } = {},
): Promise<LinuxGuestImage> {
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const addon = options.addon ?? (await buildGuestAddon(cacheDir));
  const bundle = await bundleEntry(LINUX_GUEST, cacheDir);
  const userland = await linuxUserlandFiles(cacheDir);
  const addonPaths = new Set(addon.diskFiles.map((f) => f.path));
  const image = await buildImage({
    bundle,
    cacheDir,
    modules: linuxGuestModules,
    files: [...addon.diskFiles, ...userland.filter((f) => !addonPaths.has(f.path))],
  });
  return { bundle, image, addon };
}
