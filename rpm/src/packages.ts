import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  readdirSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { kernelDirectoryFiles, runProgram, sha256File } from '@moat/unikernel';
import { PackagingError } from './errors.ts';
import { clientDir, dom0ScriptsDir, packagedVms, specsDir } from './vms.ts';

export interface PackageOptions {
  /** Holds templates/<vm>/root.img and vm-kernels/<vm>/ (buildDist); packages go to <distDir>/packages. */
  readonly distDir: string;
  readonly version: string;
  readonly release: string;
  /** SOURCE_DATE_EPOCH: build time, file times and tar times of every package. */
  readonly epoch: number;
  readonly log?: (line: string) => void;
}

export interface BuiltPackage {
  readonly name: string;
  readonly file: string;
  readonly sha256: string;
  readonly bytes: number;
}

/** Package names, in build order. */
export const packageNames = [
  'qubes-template-moat-firewall',
  'qubes-template-moat-viewer',
  'moat-vm-kernels',
  'moat-dom0',
  'moat-client',
  'moat-client-deb',
] as const;

const version = /^[0-9][A-Za-z0-9.+~]*$/;

/**
 * rpmbuild settings that make the same inputs give the same bytes: build time, host and file
 * times from SOURCE_DATE_EPOCH, no build-id links or debug packages, no distribution
 * post-install scripts, a single-threaded payload compressor.
 */
function rpmbuildDefines(topdir: string, sourcedir: string, rpmdir: string): string[] {
  const defines: Record<string, string> = {
    _topdir: topdir,
    _sourcedir: sourcedir,
    _rpmdir: rpmdir,
    _buildhost: 'reproducible',
    use_source_date_epoch_as_buildtime: '1',
    clamp_mtime_to_source_date_epoch: '1',
    _binary_payload: 'w3.zstdio',
    _binary_filedigest_algorithm: '8',
    __os_install_post: '%{nil}',
    debug_package: '%{nil}',
    _build_id_links: 'none',
    _bindir: '/usr/bin',
    _datadir: '/usr/share',
  };
  return Object.entries(defines).flatMap(([key, value]) => ['--define', `${key} ${value}`]);
}

async function rpmbuild(
  spec: string,
  sources: string,
  outDir: string,
  workDir: string,
  defines: Record<string, string>,
  epoch: number,
): Promise<string> {
  const topdir = join(workDir, 'top');
  mkdirSync(topdir, { recursive: true });
  const before = new Set(readdirSync(join(outDir, 'noarch')));
  await runProgram(
    'rpmbuild',
    'rpmbuild',
    [
      '-bb',
      '--quiet',
      ...rpmbuildDefines(topdir, sources, outDir),
      ...Object.entries(defines).flatMap(([key, value]) => ['--define', `${key} ${value}`]),
      join(specsDir, spec),
    ],
    { env: { ...process.env, SOURCE_DATE_EPOCH: String(epoch), TZ: 'UTC', LC_ALL: 'C' }, timeoutMs: 900_000 },
  );
  const made = readdirSync(join(outDir, 'noarch')).filter((f) => !before.has(f));
  const [file] = made;
  if (made.length !== 1 || !file)
    throw new PackagingError('rpmbuild', `${spec} made ${made.join(', ') || 'nothing'}`);
  return join(outDir, 'noarch', file);
}

/** Sets every file and folder under `dir` to the epoch (mtime) and plain modes. */
function normalizeTree(dir: string, epoch: number): void {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      normalizeTree(path, epoch);
      chmodSync(path, 0o755);
    }
    utimesSync(path, epoch, epoch);
  }
  utimesSync(dir, epoch, epoch);
}

/** Splits root.img into root.img.part.NN: a sparse tar cut in 1 GiB pieces, as qvm-template reads it. */
async function splitRootImage(rootImage: string, sources: string, epoch: number): Promise<void> {
  const tar = join(sources, 'root.img.tar');
  const dir = join(rootImage, '..');
  await runProgram(
    'tar (root.img)',
    'tar',
    [
      ...['--create', '--file', tar, '--format=gnu', '--sparse', '--hole-detection=raw'],
      ...['--owner=0', '--group=0', '--numeric-owner', '--mode=0644', `--mtime=@${epoch}`],
      ...['-C', dir, 'root.img'],
    ],
    { timeoutMs: 900_000 },
  );
  await runProgram('split (root.img)', 'split', ['-d', '-b', '1G', tar, join(sources, 'root.img.part.')]);
  rmSync(tar);
}

/** The Debian client package (dpkg-deb, SOURCE_DATE_EPOCH clamps its times). */
async function buildClientDeb(options: PackageOptions, workDir: string, outDir: string): Promise<string> {
  const root = join(workDir, 'root');
  mkdirSync(join(root, 'DEBIAN'), { recursive: true });
  mkdirSync(join(root, 'usr/share/applications'), { recursive: true });
  mkdirSync(join(root, 'usr/share/nautilus-python/extensions'), { recursive: true });
  copyFileSync(
    join(clientDir, 'moat-viewer.desktop'),
    join(root, 'usr/share/applications/moat-viewer.desktop'),
  );
  copyFileSync(
    join(clientDir, 'moat_viewer_nautilus.py'),
    join(root, 'usr/share/nautilus-python/extensions/moat_viewer_nautilus.py'),
  );
  const debVersion = `${options.version}-${options.release}`;
  writeFileSync(
    join(root, 'DEBIAN', 'control'),
    [
      'Package: moat-client',
      `Version: ${debVersion}`,
      'Architecture: all',
      'Maintainer: moat developers <moat-dev@invalid>',
      'Depends: qubes-core-agent',
      'Section: utils',
      'Priority: optional',
      'Description: Open in moat viewer: file manager action for Qubes client qubes',
      ' A desktop entry for image types and a Nautilus menu item that open the file in a',
      ' disposable moat-viewer qube: qvm-open-in-vm @dispvm:moat-viewer-dvm FILE.',
      '',
    ].join('\n'),
  );
  for (const file of [
    'DEBIAN/control',
    'usr/share/applications/moat-viewer.desktop',
    'usr/share/nautilus-python/extensions/moat_viewer_nautilus.py',
  ]) {
    chmodSync(join(root, file), 0o644);
  }
  normalizeTree(root, options.epoch);
  const out = join(outDir, `moat-client_${debVersion}_all.deb`);
  await runProgram('dpkg-deb', 'dpkg-deb', ['--root-owner-group', '-Zxz', '--build', root, out], {
    env: { ...process.env, SOURCE_DATE_EPOCH: String(options.epoch) },
  });
  return out;
}

/**
 * Builds every package into `<distDir>/packages` from the deliveries under `distDir`, and writes
 * SHA256SUMS there. Each package is built in a fresh work folder.
 */
export async function buildPackages(options: PackageOptions): Promise<BuiltPackage[]> {
  if (!version.test(options.version) || !version.test(options.release)) {
    throw new PackagingError(
      'version',
      `version and release must match ${version}: ${options.version}-${options.release}`,
    );
  }
  const log = options.log ?? (() => {});
  const outDir = join(options.distDir, 'packages');
  const work = join(options.distDir, '.package-work');
  rmSync(outDir, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
  mkdirSync(join(outDir, 'noarch'), { recursive: true });
  const files: { name: string; file: string }[] = [];
  const common = { moat_version: options.version, moat_release: options.release };

  for (const vm of packagedVms) {
    const workDir = join(work, vm.name);
    const sources = join(workDir, 'sources');
    mkdirSync(sources, { recursive: true });
    await splitRootImage(join(options.distDir, 'templates', vm.name, 'root.img'), sources, options.epoch);
    writeFileSync(join(sources, 'template.conf'), vm.templateConf);
    for (const list of [
      'whitelisted-appmenus.list',
      'vm-whitelisted-appmenus.list',
      'netvm-whitelisted-appmenus.list',
    ]) {
      writeFileSync(join(sources, list), '');
    }
    normalizeTree(sources, options.epoch);
    log(`building qubes-template-${vm.name}`);
    const file = await rpmbuild(
      'qubes-template.spec',
      sources,
      outDir,
      workDir,
      {
        template_name: vm.name,
        template_version: options.version,
        template_release: options.release,
        template_description: vm.description,
      },
      options.epoch,
    );
    files.push({ name: `qubes-template-${vm.name}`, file });
  }

  {
    const workDir = join(work, 'moat-vm-kernels');
    const sources = join(workDir, 'sources');
    for (const vm of packagedVms) {
      mkdirSync(join(sources, vm.name), { recursive: true });
      for (const f of kernelDirectoryFiles) {
        copyFileSync(join(options.distDir, 'vm-kernels', vm.name, f), join(sources, vm.name, f));
      }
    }
    normalizeTree(sources, options.epoch);
    log('building moat-vm-kernels');
    files.push({
      name: 'moat-vm-kernels',
      file: await rpmbuild('moat-vm-kernels.spec', sources, outDir, workDir, common, options.epoch),
    });
  }

  {
    const workDir = join(work, 'moat-dom0');
    const sources = join(workDir, 'sources');
    mkdirSync(sources, { recursive: true });
    copyFileSync(join(dom0ScriptsDir, 'moat-setup'), join(sources, 'moat-setup'));
    // One source for the policy: what moat-setup itself writes.
    const policy = await runProgram('moat-setup --print-policy', 'bash', [
      join(dom0ScriptsDir, 'moat-setup'),
      '--print-policy',
    ]);
    writeFileSync(join(sources, '40-moat.policy'), policy);
    normalizeTree(sources, options.epoch);
    log('building moat-dom0');
    files.push({
      name: 'moat-dom0',
      file: await rpmbuild('moat-dom0.spec', sources, outDir, workDir, common, options.epoch),
    });
  }

  {
    const workDir = join(work, 'moat-client');
    const sources = join(workDir, 'sources');
    mkdirSync(sources, { recursive: true });
    for (const f of ['moat-viewer.desktop', 'moat_viewer_nautilus.py'])
      copyFileSync(join(clientDir, f), join(sources, f));
    normalizeTree(sources, options.epoch);
    log('building moat-client (rpm and deb)');
    files.push({
      name: 'moat-client',
      file: await rpmbuild('moat-client.spec', sources, outDir, workDir, common, options.epoch),
    });
    files.push({
      name: 'moat-client-deb',
      file: await buildClientDeb(options, join(work, 'moat-client-deb'), outDir),
    });
  }

  const built: BuiltPackage[] = [];
  for (const { name, file } of files) {
    const flat = join(outDir, file.split('/').at(-1) ?? file);
    if (flat !== file) {
      copyFileSync(file, flat);
      rmSync(file);
    }
    built.push({ name, file: flat, sha256: await sha256File(flat), bytes: statSync(flat).size });
  }
  rmSync(join(outDir, 'noarch'), { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
  writeFileSync(
    join(outDir, 'SHA256SUMS'),
    built.map((p) => `${p.sha256}  ${p.file.split('/').at(-1)}\n`).join(''),
  );
  return built;
}
