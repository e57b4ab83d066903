import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { cachedBuild, defaultCacheDir, inputsKey, sha256, sha256File } from './cache.ts';
import { type CpioEntry, writeCpio } from './cpio.ts';
import { fetchDebianPackages, type UnpackedPackage } from './debian.ts';
import { ImageBuildError } from './errors.ts';
import { runProgram } from './exec.ts';
import { indexModules, resolveModules } from './kmod.ts';
import { fetchNodeBinary } from './node-binary.ts';
import { type DebianPin, debianPins, kernelRelease, nodePin } from './pins.ts';

/** Bumped whenever the builder's output changes for the same inputs. */
const BUILDER_VERSION = 1;

export interface KernelModule {
  /** Module name as modprobe knows it (`xen-gntalloc`). */
  readonly name: string;
  /** Parameters passed when loading it (`limit=65536`). */
  readonly params?: string;
}

/**
 * The Xen modules a moat VM loads, in this order (their own dependencies are added first).
 * gntalloc's `limit` (pages one domain may share, default 1024 = 4 MiB) is raised so ring
 * buffers and window buffers fit; gntdev's `limit` bounds the grants one mapping request maps.
 */
export const defaultGuestModules: readonly KernelModule[] = [
  { name: 'xen-evtchn' },
  { name: 'xen-gntdev', params: 'limit=65536' },
  { name: 'xen-gntalloc', params: 'limit=65536' },
  { name: 'xen-privcmd' },
  { name: 'xen-blkfront' },
  { name: 'squashfs' },
];

/** A file to put on the image's read-only disk. */
export interface DiskFile {
  /** Absolute path inside the disk, e.g. `/app/xen.node` (the disk is mounted on /mnt). */
  readonly path: string;
  /** Path of the file on the build machine. */
  readonly source: string;
  readonly mode?: number;
}

export interface ImageOptions {
  /** The esbuild bundle node runs (`/app/main.js` on the disk). */
  readonly bundle: string;
  /** More files for the disk (a native addon, its libraries, data). */
  readonly files?: readonly DiskFile[];
  /** Debian's cloud kernel (domUs, default) or the generic one. */
  readonly kernel?: 'cloud' | 'generic';
  readonly modules?: readonly KernelModule[];
  /** Where downloads and products are cached; default `<repository>/.cache`. */
  readonly cacheDir?: string;
  /**
   * Assemble the image afresh in this folder instead of the cache (inputs still come from the
   * cache): two such builds compared byte for byte prove the build reproducible.
   */
  readonly outputDir?: string;
}

/** A bootable VM image: what a Xen domain config's kernel, ramdisk and disk point at. */
export interface VmImage {
  /** Content hash of every input; the products' folder name. */
  readonly key: string;
  readonly kernel: string;
  readonly initramfs: string;
  /** Read-only squashfs for xvdd: node, its libraries, the bundle. */
  readonly disk: string;
  readonly kernelRelease: string;
  /** Whether this call built the image (false: it came from the cache). */
  readonly built: boolean;
}

/** Debian packages whose files go into node's disk. */
const nodeLibraryPins: readonly DebianPin[] = [debianPins.libc, debianPins.libstdcxx, debianPins.libgcc];
/** node's shared libraries (see `ldd node`), found in the unpacked packages above. */
const nodeLibraries = [
  'libc.so.6',
  'libm.so.6',
  'libdl.so.2',
  'libpthread.so.0',
  'libstdc++.so.6',
  'libgcc_s.so.1',
];

function findInPackages(packages: readonly UnpackedPackage[], name: string): string {
  for (const pkg of packages) {
    for (const dir of ['lib/x86_64-linux-gnu', 'usr/lib/x86_64-linux-gnu']) {
      const path = join(pkg.root, dir, name);
      if (existsSync(path)) return path;
    }
  }
  throw new ImageBuildError(
    'node libraries',
    `${name} not found in ${packages.map((p) => p.pin.name).join(', ')}`,
  );
}

/** Builds (or finds in the cache) node's libraries, shared by every disk. */
export async function nodeRuntimeFiles(cacheDir: string): Promise<{ files: DiskFile[]; identity: string[] }> {
  const node = await fetchNodeBinary(cacheDir);
  const packages = await fetchDebianPackages(cacheDir, nodeLibraryPins);
  const files: DiskFile[] = [
    { path: '/bin/node', source: node, mode: 0o755 },
    {
      path: '/lib64/ld-linux-x86-64.so.2',
      source: findInPackages(packages, 'ld-linux-x86-64.so.2'),
      mode: 0o755,
    },
    ...nodeLibraries.map((name) => ({ path: `/lib/${name}`, source: findInPackages(packages, name) })),
  ];
  return {
    files,
    identity: [`node ${nodePin.version} ${nodePin.binarySha256}`, ...packages.map((p) => p.debSha256)],
  };
}

/** A read-only squashfs holding `files` (lz4: the fastest to unpack under emulation). */
export async function buildSquashfs(
  out: string,
  stagingDir: string,
  files: readonly DiskFile[],
): Promise<void> {
  for (const file of files) {
    if (!file.path.startsWith('/') || file.path.includes('..')) {
      throw new ImageBuildError('disk', `disk paths must be absolute and plain: ${file.path}`);
    }
    const target = join(stagingDir, file.path);
    mkdirSync(dirname(target), { recursive: true });
    copyFileSync(file.source, target);
    chmodSync(target, file.mode ?? 0o644);
  }
  await runProgram('mksquashfs', 'mksquashfs', [
    stagingDir,
    out,
    ...['-noappend', '-quiet', '-no-progress', '-comp', 'lz4', '-all-root', '-no-xattrs'],
    ...['-mkfs-time', '0', '-all-time', '0'],
  ]);
}

async function fileIdentities(files: readonly DiskFile[]): Promise<string[]> {
  return Promise.all(files.map(async (f) => `${f.path} ${f.mode ?? 0o644} ${await sha256File(f.source)}`));
}

const initSource = join(dirname(fileURLToPath(import.meta.url)), 'init', 'init.c');

/** Compiles the C init statically (cached by its source). */
export async function buildInit(cacheDir: string): Promise<string> {
  const source = readFileSync(initSource);
  const gcc = (await runProgram('gcc', 'gcc', ['--version'])).split('\n')[0] ?? '';
  const key = inputsKey({ v: BUILDER_VERSION, source: sha256(source), gcc });
  const { dir } = await cachedBuild(join(cacheDir, 'unikernel', 'init'), key, async (tmp) => {
    await runProgram('gcc', 'gcc', [
      ...['-static', '-Os', '-s', '-Wall', '-Wextra', '-Werror'],
      ...['-o', join(tmp, 'init'), initSource],
    ]);
  });
  return join(dir, 'init');
}

/** The initramfs: /init, the modules in load order, and the list init loads them from. */
export function initramfsEntries(init: Uint8Array, modules: { path: string; params: string }[]): CpioEntry[] {
  const entries: CpioEntry[] = [
    ...['dev', 'proc', 'sys', 'tmp', 'mnt', 'etc', 'etc/moat', 'lib', 'lib/modules'].map(
      (path): CpioEntry => ({ kind: 'dir', path }),
    ),
    { kind: 'chardev', path: 'dev/console', major: 5, minor: 1 },
    { kind: 'file', path: 'init', data: init, mode: 0o755 },
  ];
  const lines: string[] = [];
  for (const module of modules) {
    const name = basename(module.path);
    entries.push({ kind: 'file', path: `lib/modules/${name}`, data: readFileSync(module.path) });
    lines.push(module.params ? `/lib/modules/${name} ${module.params}` : `/lib/modules/${name}`);
  }
  entries.push({
    kind: 'file',
    path: 'etc/moat/modules',
    data: new TextEncoder().encode(`${lines.join('\n')}\n`),
  });
  return entries;
}

/** Kernel image and module tree of a pinned Debian kernel. */
export async function fetchKernel(
  cacheDir: string,
  kind: 'cloud' | 'generic',
): Promise<{ vmlinuz: string; modulesDir: string; release: string; identity: string }> {
  const pin = kind === 'cloud' ? debianPins.cloudKernel : debianPins.genericKernel;
  const [pkg] = await fetchDebianPackages(cacheDir, [pin]);
  if (!pkg) throw new ImageBuildError('kernel', `no package for ${pin.name}`);
  const release = kernelRelease(pin);
  return {
    vmlinuz: join(pkg.root, 'boot', `vmlinuz-${release}`),
    modulesDir: join(pkg.root, 'lib', 'modules', release),
    release,
    identity: pkg.debSha256,
  };
}

/** Builds a VM image from pinned inputs, or returns the cached one with the same content hash. */
export async function buildImage(options: ImageOptions): Promise<VmImage> {
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const kernel = await fetchKernel(cacheDir, options.kernel ?? 'cloud');
  const runtime = await nodeRuntimeFiles(cacheDir);
  const init = await buildInit(cacheDir);
  const files: DiskFile[] = [
    ...runtime.files,
    { path: '/app/main.js', source: options.bundle },
    ...(options.files ?? []),
  ];
  const wanted = options.modules ?? defaultGuestModules;
  const key = inputsKey({
    v: BUILDER_VERSION,
    kernel: kernel.identity,
    runtime: runtime.identity,
    init: await sha256File(init),
    modules: wanted.map((m) => `${m.name} ${m.params ?? ''}`),
    files: await fileIdentities(files.slice(runtime.files.length)),
  });
  const assemble = async (tmp: string) => {
    const index = indexModules(kernel.modulesDir);
    const params = new Map(wanted.map((m) => [m.name.replaceAll('-', '_'), m.params ?? '']));
    const modules = resolveModules(
      index,
      wanted.map((m) => m.name),
    ).map((path) => ({ path, params: params.get(basename(path, '.ko').replaceAll('-', '_')) ?? '' }));
    const cpio = writeCpio(initramfsEntries(readFileSync(init), modules));
    writeFileSync(join(tmp, 'initramfs.cpio.gz'), gzipSync(cpio, { level: 9 }));
    copyFileSync(kernel.vmlinuz, join(tmp, 'vmlinuz'));
    await buildSquashfs(join(tmp, 'disk.squashfs'), join(tmp, 'staging'), files);
    await runProgram('cleanup', 'rm', ['-rf', join(tmp, 'staging')]);
    writeFileSync(
      join(tmp, 'manifest.json'),
      `${JSON.stringify({ key, kernelRelease: kernel.release, modules: modules.map((m) => basename(m.path)), files: files.map((f) => f.path) }, null, 2)}\n`,
    );
  };
  let dir: string;
  let built = true;
  if (options.outputDir) {
    dir = options.outputDir;
    await runProgram('cleanup', 'rm', ['-rf', dir]);
    mkdirSync(dir, { recursive: true });
    await assemble(dir);
  } else {
    ({ dir, built } = await cachedBuild(join(cacheDir, 'unikernel', 'images'), key, assemble));
  }
  return {
    key,
    kernel: join(dir, 'vmlinuz'),
    initramfs: join(dir, 'initramfs.cpio.gz'),
    disk: join(dir, 'disk.squashfs'),
    kernelRelease: kernel.release,
    built,
  };
}
