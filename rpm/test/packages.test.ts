/**
 * The package phase of `./moat test`: builds every package twice (same bytes), then checks each
 * package's metadata, file list, permissions and scriptlets, unpacks each template package the
 * way qvm-template does and checks the root image inside it, and runs rpmlint.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type BuiltPackage,
  buildDist,
  buildPackages,
  defaultSourceDateEpoch,
  packagedVms,
  type VmDelivery,
} from '@moat/rpm';
import { sha256File } from '@moat/unikernel';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const repository = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const epoch = defaultSourceDateEpoch;
const work = mkdtempSync(join(tmpdir(), 'moat-packages-'));
const distA = join(work, 'a');
const distB = join(work, 'b');
let deliveries: VmDelivery[] = [];
let packages: BuiltPackage[] = [];
let again: BuiltPackage[] = [];

function sh(program: string, args: readonly string[], input?: Buffer): string {
  return execFileSync(program, args, {
    encoding: 'utf8',
    input,
    maxBuffer: 64 * 2 ** 20,
    // debugfs and e2fsck print their version on stderr; a failure still throws with it.
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

function packageFile(name: string): string {
  const found = packages.find((p) => p.name === name);
  if (!found) throw new Error(`package ${name} was not built`);
  return found.file;
}

function query(file: string, format: string): string {
  return sh('rpm', ['-qp', '--qf', format, file]);
}

/** `mode owner group flags path` per file, as rpm records them. */
function fileList(file: string): string[] {
  return query(
    file,
    '[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]',
  )
    .split('\n')
    .filter(Boolean);
}

beforeAll(async () => {
  deliveries = await buildDist({ distDir: distA, epoch });
  packages = await buildPackages({ distDir: distA, version: '0.1.0', release: '1', epoch });
  // The second build makes its own root images, kernel directories and packages from the same
  // VM images (the unikernel cache; its squashfs is built with fixed times and owners).
  await buildDist({ distDir: distB, epoch });
  again = await buildPackages({ distDir: distB, version: '0.1.0', release: '1', epoch });
}, 1_200_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('./moat package', () => {
  it('builds every package twice with the same bytes, and lists their SHA-256', () => {
    expect(packages.map((p) => p.name)).toEqual([
      'qubes-template-moat-firewall',
      'qubes-template-moat-viewer',
      'moat-vm-kernels',
      'moat-dom0',
      'moat-client',
      'moat-client-deb',
    ]);
    expect(again.map((p) => p.sha256)).toEqual(packages.map((p) => p.sha256));
    const sums = readFileSync(join(distA, 'packages', 'SHA256SUMS'), 'utf8');
    for (const p of packages) expect(sums).toContain(`${p.sha256}  ${p.file.split('/').at(-1)}\n`);
    for (const d of deliveries) {
      for (const [path, sum] of Object.entries(d.sha256)) expect(sum, path).toMatch(/^[0-9a-f]{64}$/);
    }
  });

  it('gives every RPM the metadata qvm-template and dnf accept (noarch, licence without spaces, no |)', () => {
    for (const p of packages.filter((x) => x.file.endsWith('.rpm'))) {
      const [name, version, release, arch, license, buildhost, buildtime] = query(
        p.file,
        '%{NAME}|%{VERSION}|%{RELEASE}|%{ARCH}|%{LICENSE}|%{BUILDHOST}|%{BUILDTIME}',
      ).split('|');
      expect(name).toBe(p.name);
      expect([version, release, arch, license]).toEqual(['0.1.0', '1', 'noarch', 'BSD-2-Clause']);
      expect(license).toMatch(/^[A-Za-z0-9._+()][A-Za-z0-9._+()-]*$/);
      expect([buildhost, buildtime]).toEqual(['reproducible', String(epoch)]);
      expect(query(p.file, '%{SUMMARY}%{DESCRIPTION}')).not.toContain('|');
    }
  });

  it('has scriptlets only where meant: the templates refuse rpm -i, nothing else runs code', () => {
    for (const vm of packagedVms) {
      const scripts = sh('rpm', ['-qp', '--scripts', packageFile(`qubes-template-${vm.name}`)]);
      expect(scripts).toBe(
        'preinstall scriptlet (using /bin/sh):\n' +
          `echo "Do not install qubes-template-${vm.name} with rpm or dnf; use: qvm-template install --skip-start <file.rpm>" >&2\n` +
          'exit 1\n',
      );
    }
    for (const name of ['moat-vm-kernels', 'moat-dom0', 'moat-client']) {
      expect(sh('rpm', ['-qp', '--scripts', packageFile(name)]), name).toBe('');
      expect(query(packageFile(name), '%{TRIGGERSCRIPTS}'), name).toBe('(none)');
    }
    const control = join(work, 'deb-control');
    sh('dpkg-deb', ['-e', packageFile('moat-client-deb'), control]);
    expect(sh('ls', [control]).split('\n').filter(Boolean)).toEqual(['control']);
  });

  it('lays out each template package as qvm-template expects', () => {
    for (const vm of packagedVms) {
      const dir = `/var/lib/qubes/vm-templates/${vm.name}`;
      expect(fileList(packageFile(`qubes-template-${vm.name}`))).toEqual([
        `drwxr-xr-x root root  ${dir}`,
        `drwxr-xr-x root root  ${dir}/apps`,
        `drwxr-xr-x root root  ${dir}/apps.tempicons`,
        `drwxr-xr-x root root  ${dir}/apps.templates`,
        `-rw-r--r-- root root  ${dir}/netvm-whitelisted-appmenus.list`,
        `-rw-r--r-- root root  ${dir}/root.img.part.00`,
        `-rw-r--r-- root root  ${dir}/template.conf`,
        `-rw-r--r-- root root  ${dir}/vm-whitelisted-appmenus.list`,
        `-rw-r--r-- root root  ${dir}/whitelisted-appmenus.list`,
      ]);
    }
  });

  it('lists the kernel directories, moat-dom0 and moat-client with their owners and modes', () => {
    const kernels = ['moat-firewall', 'moat-viewer'].flatMap((vm) => [
      `drwxr-xr-x root root  /var/lib/qubes/vm-kernels/${vm}`,
      `-rw-r--r-- root root  /var/lib/qubes/vm-kernels/${vm}/default-kernelopts-common.txt`,
      `-rw-r--r-- root root  /var/lib/qubes/vm-kernels/${vm}/initramfs`,
      `-rw-r--r-- root root  /var/lib/qubes/vm-kernels/${vm}/modules.img`,
      `-rw-r--r-- root root  /var/lib/qubes/vm-kernels/${vm}/vmlinuz`,
    ]);
    expect(fileList(packageFile('moat-vm-kernels'))).toEqual(kernels);
    expect(fileList(packageFile('moat-dom0'))).toEqual([
      '-rw-r--r-- root root cn /etc/qubes/policy.d/40-moat.policy',
      '-rwxr-xr-x root root  /usr/bin/moat-setup',
    ]);
    expect(fileList(packageFile('moat-client'))).toEqual([
      '-rw-r--r-- root root  /usr/share/applications/moat-viewer.desktop',
      '-rw-r--r-- root root  /usr/share/nautilus-python/extensions/moat_viewer_nautilus.py',
    ]);
    const deb = sh('dpkg-deb', ['--contents', packageFile('moat-client-deb')])
      .split('\n')
      .filter((line) => line && !line.endsWith('/'))
      .map((line) => {
        const words = line.split(/\s+/);
        return `${words[0]} ${words[1]} ${words.at(-1)}`;
      });
    expect(deb).toEqual([
      '-rw-r--r-- root/root ./usr/share/applications/moat-viewer.desktop',
      '-rw-r--r-- root/root ./usr/share/nautilus-python/extensions/moat_viewer_nautilus.py',
    ]);
  });

  it('ships moat-setup and the policy it prints in moat-dom0', () => {
    const root = join(work, 'dom0');
    mkdirSync(root);
    unpackRpm(packageFile('moat-dom0'), root);
    const setup = join(repository, 'dom0-scripts', 'moat-setup');
    expect(readFileSync(join(root, 'usr/bin/moat-setup'), 'utf8')).toBe(readFileSync(setup, 'utf8'));
    expect(readFileSync(join(root, 'etc/qubes/policy.d/40-moat.policy'), 'utf8')).toBe(
      sh('bash', [setup, '--print-policy']),
    );
  });

  it('opens files in @dispvm:moat-viewer-dvm from the client packages', () => {
    const root = join(work, 'client');
    mkdirSync(root);
    unpackRpm(packageFile('moat-client'), root);
    const desktop = readFileSync(join(root, 'usr/share/applications/moat-viewer.desktop'), 'utf8');
    expect(desktop).toContain('Exec=qvm-open-in-vm @dispvm:moat-viewer-dvm %f\n');
    expect(desktop).toContain('Name=Open in moat viewer\n');
    expect(desktop).toMatch(/MimeType=image\/png;image\/jpeg;image\/gif;image\/webp;image\/bmp;/);
    const nautilus = readFileSync(
      join(root, 'usr/share/nautilus-python/extensions/moat_viewer_nautilus.py'),
      'utf8',
    );
    expect(nautilus).toContain("TARGET = '@dispvm:moat-viewer-dvm'");
    expect(nautilus).toContain("subprocess.Popen(['qvm-open-in-vm', TARGET, path])");
  });

  it('carries the same kernel directories that dist/ holds', async () => {
    const root = join(work, 'kernels');
    mkdirSync(root);
    unpackRpm(packageFile('moat-vm-kernels'), root);
    for (const d of deliveries) {
      for (const [path, sum] of Object.entries(d.sha256)) {
        if (!path.startsWith('vm-kernels/')) continue;
        expect(await sha256File(join(root, 'var/lib/qubes', path)), path).toBe(sum);
      }
      const listing = sh('unsquashfs', ['-l', join(d.kernelDir, 'modules.img')]);
      for (const file of ['/app/main.js', '/bin/node', '/lib64/ld-linux-x86-64.so.2']) {
        expect(listing).toContain(`squashfs-root${file}`);
      }
      expect(readFileSync(join(d.kernelDir, 'default-kernelopts-common.txt'), 'utf8')).toBe('console=hvc0\n');
    }
  });
});

describe('rpmlint', () => {
  it('finds nothing beyond the findings rpm/rpmlint.toml explains', () => {
    const rpms = packages.filter((p) => p.file.endsWith('.rpm')).map((p) => p.file);
    const result = spawnSync('rpmlint', ['-c', join(repository, 'rpm', 'rpmlint.toml'), ...rpms], {
      encoding: 'utf8',
    });
    expect(result.stdout).toMatch(/5 packages and 0 specfiles checked; 0 errors, 0 warnings/);
    expect(result.status).toBe(0);
  });
});

/** rpm2archive | tar x, the way qvm-template extracts a payload (no rpm database, no scriptlet). */
function unpackRpm(file: string, root: string, only?: string): void {
  const archive = execFileSync('rpm2archive', ['-'], { input: readFileSync(file), maxBuffer: 512 * 2 ** 20 });
  const result = spawnSync('tar', ['xzf', '-', '-C', root, ...(only ? [only] : [])], { input: archive });
  if (result.status !== 0) throw new Error(`tar failed on ${file}: ${result.stderr}`);
}

/** The real size of the file in a GNU tar header: 'S' (sparse) headers keep it at offset 483. */
function tarHeaderSize(header: Buffer): { name: string; type: string; size: number } {
  const name = header.subarray(0, 100).toString('latin1').replace(/\0.*$/s, '');
  const type = String.fromCharCode(header[156] ?? 0);
  const field = type === 'S' ? header.subarray(483, 495) : header.subarray(124, 136);
  return { name, type, size: Number.parseInt(field.toString('latin1').replace(/\0.*$/s, '').trim(), 8) };
}

describe('a template package unpacked the way qvm-template does', () => {
  for (const vm of packagedVms) {
    it(`${vm.name}: the payload, template.conf and a root image that boots through PVH GRUB`, async () => {
      const root = join(work, `unpacked-${vm.name}`);
      mkdirSync(root);
      const dir = `./var/lib/qubes/vm-templates/${vm.name}/`;
      unpackRpm(packageFile(`qubes-template-${vm.name}`), root, dir);
      const here = join(root, dir);
      const conf = readFileSync(join(here, 'template.conf'), 'utf8');
      expect(conf).toBe(vm.templateConf);
      // qvm-template-postprocess splits every line on '=' and knows only these keys.
      for (const line of conf.split('\n').filter(Boolean)) {
        expect(line).toMatch(
          /^(virt-mode=(pvh|hvm)|kernel=|(gui|qrexec|selinux|linux-stubdom|gui-emulated|pci-e820-host|no-monitor-layout)=1)$/,
        );
      }
      for (const list of [
        'whitelisted-appmenus.list',
        'vm-whitelisted-appmenus.list',
        'netvm-whitelisted-appmenus.list',
      ]) {
        expect(readFileSync(join(here, list), 'utf8')).toBe('');
      }
      // qvm-template keeps the first 512 bytes of part.00 and reads root.img's size from them.
      const delivery = deliveries.find((d) => d.name === vm.name);
      if (!delivery) throw new Error(`no delivery for ${vm.name}`);
      const header = Buffer.alloc(512);
      const fd = openSync(join(here, 'root.img.part.00'), 'r');
      readSync(fd, header, 0, 512, 0);
      closeSync(fd);
      expect(tarHeaderSize(header)).toEqual({
        name: 'root.img',
        type: 'S',
        size: statSync(delivery.rootImage).size,
      });
      // qvm-template-postprocess streams the parts through tar into the root volume.
      const image = join(work, `${vm.name}-root.img`);
      const parts = readFileSync(join(here, 'root.img.part.00'));
      const restored = spawnSync('tar', ['xSOf', '-'], { input: parts, maxBuffer: 1024 * 2 ** 20 });
      expect(restored.status).toBe(0);
      writeFileSync(image, restored.stdout);
      expect(await sha256File(image)).toBe(delivery.sha256[`templates/${vm.name}/root.img`]);

      sh('e2fsck', ['-fn', image]);
      const debugfs = (command: string) => sh('debugfs', ['-R', command, image]);
      expect(debugfs('cat /boot/grub/grub.cfg')).toBe(
        [
          'set timeout=0',
          `menuentry '${vm.name}' {`,
          "  echo 'moat: loading /boot/vmlinuz'",
          '  linux /boot/vmlinuz console=hvc0 moat.disk=/dev/xvda moat.fs=ext4',
          "  echo 'moat: loading /boot/initramfs'",
          '  initrd /boot/initramfs',
          "  echo 'moat: starting the kernel'",
          '}',
          '',
        ].join('\n'),
      );
      const kernelDir = delivery.kernelDir;
      for (const [inImage, inKernelDir] of [
        ['/boot/vmlinuz', 'vmlinuz'],
        ['/boot/initramfs', 'initramfs'],
      ] as const) {
        const out = join(work, `${vm.name}-${inKernelDir}`);
        debugfs(`dump ${inImage} ${out}`);
        expect(await sha256File(out), inImage).toBe(await sha256File(join(kernelDir, inKernelDir)));
      }
      const main = debugfs('cat /app/main.js');
      // The VM itself, with the addon it opens Xen through (and the bundles beside its main).
      expect(main).toContain(vm.name === 'moat-firewall' ? 'moat.FirewallStats' : 'qubes.OpenInVM');
      for (const extra of vm.app.bundles ?? []) expect(debugfs(`stat ${extra.path}`)).toMatch(/Mode: +0644/);
      expect(main).not.toContain('placeholder: the real VM comes with issue');
      expect(debugfs('stat /app/moat_xen.node')).toMatch(/Mode: +0644/);
      expect(debugfs('stat /lib/libxenvchan.so.4.17')).toMatch(/User: +0 +Group: +0/);
      // Nothing the VM does not run: no shell, no package manager.
      for (const absent of ['/bin/sh', '/bin/bash', '/bin/busybox', '/usr/bin/apt', '/usr/bin/dnf']) {
        const looked = spawnSync('debugfs', ['-R', `stat ${absent}`, image], { encoding: 'utf8' });
        expect(looked.stderr, absent).toMatch(/File not found/);
      }
      const node = debugfs('stat /bin/node');
      expect(node).toMatch(/Mode: +0755/);
      expect(node).toMatch(/User: +0 +Group: +0/);
      expect(node).toContain(`mtime: 0x${epoch.toString(16)}`);
    });
  }
});
