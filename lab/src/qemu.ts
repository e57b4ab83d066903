import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { LineSplitter } from './control.ts';
import type { Dom0Image } from './dom0-image.ts';
import { CONTROL_PORT, SHARE_TAG } from './dom0-image.ts';
import { LabError } from './errors.ts';

export interface QemuOptions {
  readonly dom0: Dom0Image;
  /** Folder shared read-only with dom0 over 9p (bundles, VM images). */
  readonly shareDir: string;
  /** Unix socket QEMU listens on for the control port. */
  readonly controlSocket: string;
  readonly memoryMb: number;
  readonly dom0MemoryMb: number;
  readonly cpus: number;
  /**
   * TCG's threading: `multi` runs each emulated CPU on its own host thread (MTTCG, the default),
   * `single` runs them all on one thread in turns. An A/B switch for races in QEMU's emulation
   * (lab/NOTES.md, the PVH reboot ending); `MOAT_LAB_TCG_THREAD` sets it for a run. Measured:
   * `single` is faster on a loaded machine but every PVH Linux domU crashed under it (3 of 3),
   * so it is for experiments only.
   */
  readonly tcgThread?: TcgThread;
}

export type TcgThread = 'multi' | 'single';

/** `MOAT_LAB_TCG_THREAD` (`multi` or `single`); anything else is refused with the reason. */
export function tcgThreadFromEnv(value: string | undefined): TcgThread | undefined {
  if (value === undefined || value === '') return undefined;
  if (value === 'multi' || value === 'single') return value;
  throw new LabError('qemu', `MOAT_LAB_TCG_THREAD must be multi or single, not ${JSON.stringify(value)}`);
}

/** `MOAT_LAB_CPUS` (1-8): the emulated machine's CPUs, an experiment switch (lab/NOTES.md). */
export function cpusFromEnv(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const cpus = Number(value);
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > 8)
    throw new LabError(
      'qemu',
      `MOAT_LAB_CPUS must be a whole number from 1 to 8, not ${JSON.stringify(value)}`,
    );
  return cpus;
}

/** The QEMU command line (exported for NOTES.md and tests). Never a network device. */
export function qemuArgs(o: QemuOptions): string[] {
  for (const path of [o.dom0.kernel, o.dom0.initramfs]) {
    // -initrd separates modules with commas; a comma in a path would split it.
    if (path.includes(',')) throw new LabError('qemu', `path must not contain a comma: ${path}`);
  }
  return [
    ...['-accel', `tcg,thread=${o.tcgThread ?? 'multi'}`, '-cpu', 'qemu64,+svm,+npt'],
    ...['-m', String(o.memoryMb), '-smp', String(o.cpus)],
    ...['-nodefaults', '-no-user-config', '-display', 'none', '-vga', 'none', '-monitor', 'none'],
    ...['-serial', 'stdio', '-no-reboot', '-nic', 'none'],
    ...['-kernel', o.dom0.xen],
    // guest_loglvl=all: what Xen says about a guest (a triple fault, the guest's early output
    // through earlyprintk=xen) reaches this console, where a failed domU's report finds it.
    ...[
      '-append',
      `console=com1 dom0_mem=${o.dom0MemoryMb}M,max:${o.dom0MemoryMb}M bootscrub=false guest_loglvl=all`,
    ],
    ...['-initrd', `${o.dom0.kernel} console=hvc0 quiet loglevel=3,${o.dom0.initramfs}`],
    ...['-drive', `file=${o.dom0.nodeDisk},format=raw,if=virtio,readonly=on`],
    ...[
      '-virtfs',
      `local,path=${o.shareDir},mount_tag=${SHARE_TAG},security_model=none,readonly=on,id=${SHARE_TAG}`,
    ],
    ...[
      '-device',
      'virtio-serial-pci',
      '-chardev',
      `socket,id=ctl,path=${o.controlSocket},server=on,wait=off`,
    ],
    ...['-device', `virtserialport,chardev=ctl,name=${CONTROL_PORT}`],
  ];
}

/** A running QEMU; killed (SIGKILL) by `kill()` and, whatever happens, when this process exits. */
export class QemuProcess {
  private readonly child: ChildProcess;
  private readonly killOnExit = () => this.child.kill('SIGKILL');
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  private exitedNow = false;

  constructor(options: QemuOptions, onConsoleLine: (line: string) => void) {
    // setpriv (util-linux) execs QEMU with a parent-death signal: if this process dies in any
    // way (SIGKILL included, where no exit hook runs), the kernel kills QEMU too.
    const [program, args] = existsSync('/usr/bin/setpriv')
      ? ['/usr/bin/setpriv', ['--pdeathsig', 'KILL', 'qemu-system-x86_64', ...qemuArgs(options)]]
      : ['qemu-system-x86_64', qemuArgs(options)];
    this.child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    process.on('exit', this.killOnExit);
    const splitter = new LineSplitter(onConsoleLine, 64 * 1024);
    this.child.stdout?.setEncoding('utf8');
    this.child.stdout?.on('data', (chunk: string) => splitter.push(chunk));
    this.child.stderr?.setEncoding('utf8');
    this.child.stderr?.on('data', (chunk: string) => onConsoleLine(`qemu: ${chunk.trimEnd()}`));
    this.exited = new Promise((resolve) => {
      this.child.on('error', (error) => {
        onConsoleLine(`qemu: cannot start qemu-system-x86_64: ${error.message}`);
        this.exitedNow = true;
        process.off('exit', this.killOnExit);
        resolve({ code: null, signal: null });
      });
      this.child.on('close', (code, signal) => {
        splitter.flush();
        this.exitedNow = true;
        process.off('exit', this.killOnExit);
        resolve({ code, signal });
      });
    });
  }

  get running(): boolean {
    return !this.exitedNow;
  }

  kill(): void {
    if (!this.exitedNow) this.child.kill('SIGKILL');
  }
}
