/**
 * The two ways a VM image reaches Qubes (see docs/qubes-packaging.md):
 * - a template root image that boots by itself through Xen's PVH GRUB: an ext2 filesystem with
 *   /boot/grub/grub.cfg, the kernel, the initramfs and the app tree (node, libraries, bundle),
 *   which init mounts read-only from xvda (moat.disk=/dev/xvda on the GRUB command line);
 * - a dom0 kernel directory (Qubes `vm-kernels/<name>/`): vmlinuz, initramfs and modules.img,
 *   the app's squashfs, which Qubes attaches read-only as xvdd (init's default disk).
 * Both are byte-for-byte reproducible: fixed UUIDs and hash seed derived from the inputs, every
 * timestamp set to SOURCE_DATE_EPOCH, owners root.
 */
import { copyFileSync, lstatSync, mkdirSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sha256 } from './cache.ts';
import { ImageBuildError } from './errors.ts';
import { runProgram } from './exec.ts';
import type { VmImage } from './image.ts';

/** The kernel command line both deliveries give the kernel (hvc0 is a PVH guest's console). */
export const kernelCommandLine = 'console=hvc0';

/**
 * grub.cfg of a template root image. Qubes' pvgrub2-pvh (and Debian's grub-i386-xen_pvh.bin)
 * look for /boot/grub/grub.cfg on the VM's disks and set `root` to the disk holding it.
 */
export function templateGrubConfig(name: string): string {
  return [
    'set timeout=0',
    `menuentry '${name}' {`,
    // One console line per step: GRUB's progress display never ends a line.
    `  echo 'moat: loading /boot/vmlinuz'`,
    `  linux /boot/vmlinuz ${kernelCommandLine} moat.disk=/dev/xvda moat.fs=ext4`,
    `  echo 'moat: loading /boot/initramfs'`,
    '  initrd /boot/initramfs',
    `  echo 'moat: starting the kernel'`,
    '}',
    '',
  ].join('\n');
}

/** A UUID (version-4 layout) derived from `seed`, so the same inputs give the same filesystem. */
export function derivedUuid(seed: string): string {
  const hex = sha256(seed).slice(0, 32).split('');
  hex[12] = '4';
  hex[16] = ((Number.parseInt(hex[16] ?? '0', 16) & 0x3) | 0x8).toString(16);
  const h = hex.join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** Every path under `dir` ('' for dir itself), parents before children, sorted. */
function walk(dir: string, prefix = ''): string[] {
  const out = [prefix];
  for (const name of readdirSync(join(dir, prefix)).sort()) {
    const path = prefix ? `${prefix}/${name}` : name;
    if (lstatSync(join(dir, path)).isDirectory()) out.push(...walk(dir, path));
    else out.push(path);
  }
  return out;
}

function treeBytes(dir: string): number {
  let total = 0;
  for (const path of walk(dir)) total += lstatSync(join(dir, path)).size;
  return total;
}

export interface TemplateRootImage {
  readonly path: string;
  readonly bytes: number;
}

/**
 * Builds `out` (the template's root.img) from `image` without root mounts: the tree is staged in
 * `stagingDir`, written into the filesystem by `mke2fs -d`, then every inode's times are set to
 * `epoch` with debugfs (mke2fs copies atime and ctime from the staging files).
 */
export async function buildTemplateRootImage(
  image: VmImage,
  name: string,
  out: string,
  stagingDir: string,
  epoch: number,
): Promise<TemplateRootImage> {
  rmSync(stagingDir, { recursive: true, force: true });
  await runProgram('unsquashfs', 'unsquashfs', ['-q', '-n', '-no-xattrs', '-d', stagingDir, image.disk]);
  mkdirSync(join(stagingDir, 'boot', 'grub'), { recursive: true });
  copyFileSync(image.kernel, join(stagingDir, 'boot', 'vmlinuz'));
  copyFileSync(image.initramfs, join(stagingDir, 'boot', 'initramfs'));
  writeFileSync(join(stagingDir, 'boot', 'grub', 'grub.cfg'), templateGrubConfig(name));
  const paths = walk(stagingDir);
  for (const path of paths.slice().reverse()) utimesSync(join(stagingDir, path), epoch, epoch);

  // Room for the files, their metadata and ext2's own tables; whole MiB.
  const mib = Math.ceil((treeBytes(stagingDir) * 1.1) / 2 ** 20) + 16;
  const seed = `${name} ${image.key}`;
  rmSync(out, { force: true });
  const env = { ...process.env, E2FSPROGS_FAKE_TIME: String(epoch) };
  await runProgram(
    'mke2fs',
    'mke2fs',
    [
      ...['-q', '-F', '-t', 'ext2', '-b', '4096', '-I', '256', '-m', '0', '-L', name.slice(0, 16)],
      ...['-U', derivedUuid(`${seed} fs`), '-E', `root_owner=0:0,hash_seed=${derivedUuid(`${seed} hash`)}`],
      ...['-d', stagingDir, out, `${mib}M`],
    ],
    { env },
  );
  const commands: string[] = [];
  for (const path of [...paths.map((p) => `/${p}`), '/lost+found']) {
    for (const field of ['atime', 'ctime', 'mtime', 'crtime'])
      commands.push(`sif "${path}" ${field} @${epoch}`);
  }
  const script = `${out}.debugfs`;
  writeFileSync(script, `${commands.join('\n')}\n`);
  await runProgram('debugfs (timestamps)', 'debugfs', ['-w', '-f', script, out], { env });
  rmSync(script);
  await runProgram('e2fsck', 'e2fsck', ['-fn', out]);
  rmSync(stagingDir, { recursive: true, force: true });
  return { path: out, bytes: lstatSync(out).size };
}

/** Files of a Qubes kernel directory (R4.2+ reads each of these names). */
export const kernelDirectoryFiles = [
  'vmlinuz',
  'initramfs',
  'modules.img',
  'default-kernelopts-common.txt',
] as const;

/**
 * Writes a Qubes kernel directory for `image` into `dir`. default-kernelopts-common.txt replaces
 * Qubes' built-in options (root=/dev/mapper/dmroot... are for its own initramfs).
 */
export function writeKernelDirectory(image: VmImage, dir: string, epoch: number): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  copyFileSync(image.kernel, join(dir, 'vmlinuz'));
  copyFileSync(image.initramfs, join(dir, 'initramfs'));
  copyFileSync(image.disk, join(dir, 'modules.img'));
  writeFileSync(join(dir, 'default-kernelopts-common.txt'), `${kernelCommandLine}\n`);
  for (const file of kernelDirectoryFiles) utimesSync(join(dir, file), epoch, epoch);
}

export function assertEpoch(value: string | undefined, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  if (!/^\d{1,12}$/.test(value))
    throw new ImageBuildError('SOURCE_DATE_EPOCH', `not a number of seconds: ${value}`);
  return Number(value);
}
