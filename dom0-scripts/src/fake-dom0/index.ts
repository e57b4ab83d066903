import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const fakeQubes = join(here, 'fake-qubes');
/** dom0-scripts/moat-setup */
export const moatSetupPath = join(here, '..', '..', 'moat-setup');

/** Tools the stand-in answers for (it refuses any other name). */
const tools = [
  'qvm-check',
  'qvm-prefs',
  'qvm-features',
  'qvm-create',
  'qvm-start',
  'qvm-shutdown',
  'qvm-remove',
  'qvm-ls',
  'qubes-prefs',
  'id',
  'rpm',
];

export interface QubeSetup {
  readonly prefs?: Record<string, string>;
  readonly features?: Record<string, string>;
  readonly running?: boolean;
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** The qvm-* calls of this run, one line each ('' marks an empty argument). */
  readonly calls: string[];
}

/**
 * A scratch Qubes dom0 for moat-setup: stand-in qvm-* tools on PATH that record every call and
 * keep qubes, properties and features as files, and a root folder for dom0's own files.
 */
export class FakeDom0 {
  readonly dir = mkdtempSync(join(tmpdir(), 'moat-dom0-'));
  readonly world = join(this.dir, 'world');
  /** What moat-setup sees as `/` (MOAT_SETUP_ROOT). */
  readonly root = join(this.dir, 'root');
  private readonly bin = join(this.dir, 'bin');

  constructor() {
    for (const dir of [
      this.world,
      join(this.world, 'qubes'),
      join(this.world, 'global'),
      this.root,
      this.bin,
    ]) {
      mkdirSync(dir, { recursive: true });
    }
    mkdirSync(join(this.world, 'rpms'));
    for (const tool of tools) symlinkSync(fakeQubes, join(this.bin, tool));
    writeFileSync(join(this.world, 'calls'), '');
  }

  /** A Qubes install as it comes: sys-net, sys-firewall, two app qubes using sys-firewall. */
  static stockQubes(): FakeDom0 {
    const dom0 = new FakeDom0();
    dom0.qube('sys-net', { prefs: { netvm: '', provides_network: 'True' }, running: true });
    dom0.qube('sys-firewall', { prefs: { netvm: 'sys-net', provides_network: 'True' }, running: true });
    dom0.qube('work', { prefs: { netvm: 'sys-firewall' }, running: true });
    dom0.qube('personal', { prefs: { netvm: 'sys-firewall' } });
    dom0.qube('vault', { prefs: { netvm: '' } });
    dom0.qube('fedora-42-xfce', { prefs: { klass: 'TemplateVM' } });
    dom0.global('default_netvm', 'sys-firewall');
    dom0.global('updatevm', 'sys-net');
    dom0.global('default_template', 'fedora-42-xfce');
    dom0.global('default_dispvm', 'default-dvm');
    dom0.file(
      'etc/qubes/policy.d/50-config-updates.policy',
      'qubes.UpdatesProxy * @type:TemplateVM @default allow target=sys-net\n',
    );
    return dom0;
  }

  qube(name: string, setup: QubeSetup = {}): this {
    const dir = join(this.world, 'qubes', name);
    mkdirSync(join(dir, 'prefs'), { recursive: true });
    mkdirSync(join(dir, 'features'), { recursive: true });
    for (const [key, value] of Object.entries(setup.prefs ?? {}))
      writeFileSync(join(dir, 'prefs', key), value);
    for (const [key, value] of Object.entries(setup.features ?? {}))
      writeFileSync(join(dir, 'features', key), value);
    if (setup.running) writeFileSync(join(dir, 'running'), '');
    return this;
  }

  /** The installed template (qvm-template install) of a moat VM. */
  template(name: string): this {
    return this.qube(name, {
      prefs: { klass: 'TemplateVM', virt_mode: 'pvh', kernel: '' },
      features: { 'template-version': '0.1.0', 'template-release': '1' },
    });
  }

  /** PVH GRUB (grub2-xen-pvh) in dom0. */
  pvgrub(): this {
    return this.file('var/lib/qubes/vm-kernels/pvgrub2-pvh/vmlinuz', 'grub');
  }

  /** A kernel directory of the moat-vm-kernels package. */
  kernelDir(name: string): this {
    this.file(`var/lib/qubes/vm-kernels/${name}/vmlinuz`, 'kernel');
    this.file(`var/lib/qubes/vm-kernels/${name}/initramfs`, 'initramfs');
    return this.file(`var/lib/qubes/vm-kernels/${name}/modules.img`, 'app');
  }

  global(name: string, value: string): this {
    writeFileSync(join(this.world, 'global', name), value);
    return this;
  }

  /** Makes every call that starts with `prefix` ("qvm-create --class AppVM") fail. */
  failing(prefix: string): this {
    writeFileSync(join(this.world, 'fail'), `${prefix}\n`, { flag: 'a' });
    return this;
  }

  uid(uid: number): this {
    writeFileSync(join(this.world, 'uid'), `${uid}\n`);
    return this;
  }

  file(path: string, content: string): this {
    const full = join(this.root, path);
    mkdirSync(dirname(full), { recursive: true });
    writeFileSync(full, content);
    return this;
  }

  readFile(path: string): string | undefined {
    const full = join(this.root, path);
    return existsSync(full) ? readFileSync(full, 'utf8') : undefined;
  }

  exists(name: string): boolean {
    return existsSync(join(this.world, 'qubes', name));
  }

  running(name: string): boolean {
    return existsSync(join(this.world, 'qubes', name, 'running'));
  }

  pref(name: string, key: string): string | undefined {
    const file = join(this.world, 'qubes', name, 'prefs', key);
    return existsSync(file) ? readFileSync(file, 'utf8') : undefined;
  }

  feature(name: string, key: string): string | undefined {
    const file = join(this.world, 'qubes', name, 'features', key);
    return existsSync(file) ? readFileSync(file, 'utf8') : undefined;
  }

  globalPref(name: string): string | undefined {
    const file = join(this.world, 'global', name);
    return existsSync(file) ? readFileSync(file, 'utf8') : undefined;
  }

  /** Every qube with its properties and features, for comparing two worlds. */
  snapshot(): Record<string, { prefs: Record<string, string>; features: Record<string, string> }> {
    const out: Record<string, { prefs: Record<string, string>; features: Record<string, string> }> = {};
    for (const name of readdirSync(join(this.world, 'qubes')).sort()) {
      const read = (kind: string) =>
        Object.fromEntries(
          readdirSync(join(this.world, 'qubes', name, kind))
            .sort()
            .map((key) => [key, readFileSync(join(this.world, 'qubes', name, kind, key), 'utf8')]),
        );
      out[name] = { prefs: read('prefs'), features: read('features') };
    }
    return out;
  }

  /** Runs moat-setup with these arguments (stdin answers its questions). */
  moatSetup(args: readonly string[], stdin = ''): RunResult {
    return this.runProgram('bash', ['--norc', '--noprofile', moatSetupPath, ...args], stdin);
  }

  /** Runs a shell script (README commands) against this dom0; `moat-setup` is on its PATH too. */
  shell(script: string): RunResult {
    const shim = join(this.bin, 'moat-setup');
    if (!existsSync(shim)) symlinkSync(moatSetupPath, shim);
    return this.runProgram(
      'bash',
      ['--norc', '--noprofile', '-euo', 'pipefail', '-c', script.replaceAll(/^sudo /gm, '')],
      '',
    );
  }

  private runProgram(program: string, args: readonly string[], stdin: string): RunResult {
    const callsFile = join(this.world, 'calls');
    const before = readFileSync(callsFile, 'utf8').length;
    const result = spawnSync(program, args, {
      input: stdin,
      encoding: 'utf8',
      env: {
        PATH: `${this.bin}:/usr/bin:/bin`,
        FAKE_DOM0: this.world,
        MOAT_SETUP_ROOT: this.root,
        LANG: 'C',
      },
    });
    const calls = readFileSync(callsFile, 'utf8').slice(before).split('\n').filter(Boolean);
    return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr, calls };
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The calls of a run that change something (a value given, or create/start/stop/remove). */
export function changingCalls(calls: readonly string[]): string[] {
  return calls.filter((call) => {
    const words = call.split(' ');
    const tool = words[0];
    if (tool === 'qvm-prefs' || tool === 'qvm-features') return words.length >= 4;
    if (tool === 'qubes-prefs') return words.length >= 3;
    return ['qvm-create', 'qvm-start', 'qvm-shutdown', 'qvm-remove'].includes(tool ?? '');
  });
}
