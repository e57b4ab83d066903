import { createHash } from 'node:crypto';
import {
  appendFileSync,
  copyFileSync,
  existsSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { basename, join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { defaultCacheDir, type VmImage } from '@moat/unikernel';
import type { GuestAddon } from './addon.ts';
import { bundleEntry } from './bundle.ts';
import { type AgentCommand, type AgentEvent, LineSplitter } from './control.ts';
import { BLOCK_SCRIPT_PATH, buildDom0Image, type Dom0Image } from './dom0-image.ts';
import { DomUHandle, xenLinesAbout } from './domu-end.ts';
import { LabError, LabTimeout } from './errors.ts';
import { GuestHandle } from './guest-run.ts';
import { cpusFromEnv, QemuProcess, type TcgThread, tcgThreadFromEnv } from './qemu.ts';

const AGENT_ENTRY = new URL('./agent/agent.ts', import.meta.url).pathname;

export interface LabOptions {
  /** QEMU's memory (dom0 plus the domUs), MiB. */
  readonly memoryMb?: number;
  readonly dom0MemoryMb?: number;
  /**
   * Xen's CPUs (QEMU `-smp`); default from `MOAT_LAB_CPUS`, else 1: with two, QEMU 7.2's SVM
   * emulation now and then lost a vCPU's state when it moved between CPUs (the PVH reboot
   * ending, lab/NOTES.md "Xen on one CPU"), and one CPU was also faster on a loaded host.
   */
  readonly cpus?: number;
  /** TCG threading (qemu.ts `tcgThread`); default from `MOAT_LAB_TCG_THREAD`, else `multi`. */
  readonly tcgThread?: TcgThread;
  readonly cacheDir?: string;
  /** Until dom0's agent says it is ready. Generous: emulation on a shared 2-core machine. */
  readonly bootTimeoutMs?: number;
  /** The compiled @moat/xen addon for dom0's bundles (buildGuestAddon); shared as MOAT_XEN_ADDON. */
  readonly addon?: GuestAddon;
  /** Gets every line of Xen's and dom0's console (com1). */
  readonly onConsoleLine?: (line: string) => void;
}

export interface DomUOptions {
  readonly type: 'pv' | 'pvh';
  /** Domain name; default `<type>-<n>`. */
  readonly name?: string;
  /** MiB; the stock cloud kernel needs about 96 (lab notes). */
  readonly memoryMb?: number;
  /** JSON arguments the guest reads with guestArgs() (through the kernel command line). */
  readonly args?: Record<string, unknown>;
  /** Network interfaces, each served by a backend domain (dom0 or a driver domain, as Qubes does). */
  readonly vifs?: readonly VifSpec[];
  /** `driver_domain = 1`: the domain may be the backend of other domains' devices (a netvm). */
  readonly driverDomain?: boolean;
  /**
   * Boot like a Qubes template (kernel=''): Xen starts this PVH GRUB image, which reads
   * /boot/grub/grub.cfg from `rootImage` (xvda, read-only here); the image's own files are unused.
   */
  readonly pvhGrub?: { readonly grub: string; readonly rootImage: string };
}

/** One vif in a domU's config: `vif = [ 'backend=<name>,mac=...,ip=...,script=...' ]`. */
export interface VifSpec {
  /** The backend domain's name; dom0 when absent. */
  readonly backend?: string;
  readonly ip?: string;
  readonly mac?: string;
  /** The hotplug script the backend runs (relative to /etc/xen/scripts there). */
  readonly script?: string;
  /**
   * xl's `untrusted` (Xen 4.17, tools/libs/light/libxl_nic.c): libxl writes `trusted = 0` in the
   * frontend's vif node, and Linux's xen-netfront then copies every packet it transmits into
   * pages of its own before granting them (`bounce`, torvalds/linux 4491001c2e0f, Linux 5.17).
   */
  readonly untrusted?: boolean;
}

/** The xl syntax of a vif (also what `xl network-attach` takes, as separate arguments). */
export function vifSpecParts(vif: VifSpec): string[] {
  const parts: string[] = [];
  for (const [key, value] of [
    ['backend', vif.backend],
    ['mac', vif.mac],
    ['ip', vif.ip],
    ['script', vif.script],
  ] as const) {
    if (value === undefined) continue;
    if (!/^[A-Za-z0-9.:/_ -]+$/.test(value)) throw new LabError('domU', `bad vif ${key}: ${value}`);
    parts.push(`${key}=${value}`);
  }
  if (vif.untrusted) parts.push('untrusted');
  return parts;
}

/** Timings of the lab's own steps, ms. */
export interface LabTimings {
  imageBuildMs: number;
  bootMs: number;
  /** dom0's uptime when its agent was ready (as dom0 measured it). */
  dom0UptimeAtReadyMs: number;
}

export interface Lab {
  readonly timings: LabTimings;
  /** Runs a bundle (path on the host, e.g. from bundleEntry) with node in dom0. */
  runInDom0(bundle: string, options?: { args?: Record<string, unknown>; timeoutMs?: number }): GuestHandle;
  /** Creates a domU from an image; its console lines feed the handle until the domain is gone. */
  createDomU(image: VmImage, options: DomUOptions): GuestHandle;
  /** Runs a program in dom0 (no shell) and returns its output lines and exit code. */
  exec(argv: string[], options?: { timeoutMs?: number }): Promise<{ code: number | null; lines: string[] }>;
  /**
   * Puts a host file in the read-only share for dom0's bundles and returns its path in dom0
   * (named by its content, so a file never shadows another).
   */
  shareFile(source: string): string;
  /** Xen's and dom0's console so far (last lines). */
  consoleTail(n?: number): string;
  /** Powers dom0 off (bounded) and kills QEMU; safe to call twice. */
  shutdown(): Promise<void>;
}

function withTimeout<T>(
  promise: Promise<T>,
  timeoutMs: number,
  what: string,
  detail: () => Record<string, unknown>,
) {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new LabTimeout(what, timeoutMs, detail())), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Where dom0 mounts the share (dom0-image.ts's init). */
const DOM0_SHARE = '/mnt/lab';

/** Places a file in the share (a hard link when possible: images are large). */
function share(shareDir: string, source: string, relative: string): string {
  const target = join(shareDir, relative);
  if (!existsSync(target)) {
    mkdirSync(join(target, '..'), { recursive: true });
    try {
      linkSync(source, target);
    } catch {
      copyFileSync(source, target);
    }
  }
  return relative;
}

/** Xen gives a PV guest at most 1023 bytes of kernel command line (start_info.cmd_line). */
const MAX_GUEST_CMDLINE = 1023;

/** The domU's kernel command line; its args deflated (see guestArgs), refused when too long. */
export function domUCommandLine(args: Record<string, unknown> | undefined): string {
  const packed = args
    ? ` moat.argz=${deflateRawSync(JSON.stringify(args), { level: 9 }).toString('base64url')}`
    : '';
  // earlyprintk=xen: what the kernel says before its console driver is up (loglevel 3: errors,
  // a panic) goes to Xen's console, so a guest that dies that early still leaves a reason.
  const line = `console=hvc0 earlyprintk=xen quiet loglevel=3${packed}`;
  if (line.length > MAX_GUEST_CMDLINE) {
    throw new LabError(
      'domU',
      `the guest's arguments need a ${line.length}-byte kernel command line; Xen passes at most ${MAX_GUEST_CMDLINE}`,
    );
  }
  return line;
}

function domUConfig(name: string, o: DomUOptions, dir: string): string {
  const extra = domUCommandLine(o.args);
  const at = `/mnt/lab/${dir}`;
  return [
    `name = "${name}"`,
    `type = "${o.pvhGrub ? 'pvh' : o.type}"`,
    `kernel = "${at}/${o.pvhGrub ? 'pvh-grub.bin' : 'vmlinuz'}"`,
    // Booting like a Qubes template (kernel=''), GRUB loads the kernel and gives its command line.
    ...(o.pvhGrub ? [] : [`ramdisk = "${at}/initramfs.cpio.gz"`, `extra = "${extra}"`]),
    `memory = ${o.memoryMb ?? 128}`,
    'vcpus = 1',
    // Kept after shutdown: dom0's agent drains the console log, then destroys the domain
    // (xenconsoled stops reading the ring of a dying domain, so its last lines would be lost).
    'on_poweroff = "preserve"',
    'on_reboot = "preserve"',
    'on_crash = "preserve"',
    'on_watchdog = "preserve"',
    ...(o.driverDomain ? ['driver_domain = 1'] : []),
    ...(o.vifs?.length
      ? [`vif = [ ${o.vifs.map((v) => `'${vifSpecParts(v).join(',')}'`).join(', ')} ]`]
      : []),
    // target= must come last: libxl takes the rest of the string as the path.
    o.pvhGrub
      ? `disk = [ 'vdev=xvda,access=r,script=${BLOCK_SCRIPT_PATH},target=${at}/root.img' ]`
      : `disk = [ 'vdev=xvdd,access=r,script=${BLOCK_SCRIPT_PATH},target=${at}/disk.squashfs' ]`,
    '',
  ].join('\n');
}

/** Removes the run folders (`<pid>-<time>`) of lab processes that died without shutting down. */
function removeDeadRuns(runsDir: string): void {
  if (!existsSync(runsDir)) return;
  for (const name of readdirSync(runsDir)) {
    const pid = Number.parseInt(name, 10);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    try {
      process.kill(pid, 0);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ESRCH')
        rmSync(join(runsDir, name), { recursive: true, force: true });
    }
  }
}

/** Boots Xen and dom0 in QEMU and returns when dom0's agent answers. */
export async function bootLab(options: LabOptions = {}): Promise<Lab> {
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const buildStart = performance.now();
  const dom0: Dom0Image = await buildDom0Image(cacheDir);
  const agentBundle = await bundleEntry(AGENT_ENTRY, cacheDir);
  const imageBuildMs = performance.now() - buildStart;

  removeDeadRuns(join(cacheDir, 'lab', 'runs'));
  const runDir = join(cacheDir, 'lab', 'runs', `${process.pid}-${Date.now().toString(36)}`);
  const shareDir = join(runDir, 'share');
  mkdirSync(shareDir, { recursive: true });
  copyFileSync(agentBundle, join(shareDir, 'agent.js'));
  if (options.addon) share(shareDir, options.addon.path, 'addon/moat_xen.node');
  const controlSocket = join(runDir, 'control.sock');

  const consoleLines: string[] = [];
  // MOAT_LAB_LOG=<file>: every console and guest line, as it comes, for watching a long run.
  const logFile = process.env.MOAT_LAB_LOG;
  const trace = logFile
    ? (line: string) => appendFileSync(logFile, `${new Date().toISOString().slice(11, 23)} ${line}\n`)
    : () => {};
  const onConsole = (line: string) => {
    trace(`console | ${line}`);
    consoleLines.push(line);
    if (consoleLines.length > 5000) consoleLines.shift();
    options.onConsoleLine?.(line);
  };
  const bootStart = performance.now();
  const qemu = new QemuProcess(
    {
      dom0,
      shareDir,
      controlSocket,
      memoryMb: options.memoryMb ?? 2048,
      dom0MemoryMb: options.dom0MemoryMb ?? 1024,
      cpus: options.cpus ?? cpusFromEnv(process.env.MOAT_LAB_CPUS) ?? 1,
      tcgThread: options.tcgThread ?? tcgThreadFromEnv(process.env.MOAT_LAB_TCG_THREAD),
    },
    onConsole,
  );
  const consoleTail = (n = 30) => consoleLines.slice(-n).join('\n');

  const guests = new Map<number, GuestHandle>();
  const execs = new Map<number, { lines: string[]; done: (code: number | null) => void }>();
  let nextId = 1;
  let ready: ((uptimeMs: number) => void) | undefined;
  const readyPromise = new Promise<number>((resolve) => {
    ready = resolve;
  });

  const onEvent = (event: AgentEvent) => {
    if (event.kind === 'ready') {
      ready?.(event.uptimeMs);
      return;
    }
    const guest = guests.get(event.id);
    const exec = execs.get(event.id);
    trace(`agent   | ${JSON.stringify(event).slice(0, 400)}`);
    if (event.kind === 'line') {
      if (guest && event.stream !== 'xl') guest.line(event.text);
      else if (guest) guest.line(`xl: ${event.text}`);
      exec?.lines.push(event.text);
    } else if (event.kind === 'exit') {
      const detail = event.timedOut
        ? 'killed after its timeout'
        : `exit code ${event.code} ${event.signal ?? ''}`;
      guest?.exited(event.code, detail.trim());
      exec?.done(event.code);
    } else if (event.kind === 'error') {
      guest?.line(`agent error: ${event.message}`);
      guest?.exited(null, `agent error: ${event.message}`);
      exec?.lines.push(`agent error: ${event.message}`);
      exec?.done(null);
      if (!guest && !exec) onConsole(`agent error: ${event.message}`);
    }
  };

  // QEMU creates the socket shortly after it starts; connect as soon as it is there.
  const connect = async (): Promise<Socket> => {
    for (;;) {
      if (!qemu.running)
        throw new LabError('boot', `QEMU exited before the control port opened:\n${consoleTail()}`);
      if (existsSync(controlSocket)) {
        const socket = await new Promise<Socket | undefined>((resolve) => {
          const s = createConnection(controlSocket);
          s.once('connect', () => resolve(s));
          s.once('error', () => resolve(undefined));
        });
        if (socket) return socket;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  let socket: Socket | undefined;
  let closed = false;
  const shutdown = async () => {
    if (closed) return;
    closed = true;
    if (socket && qemu.running) {
      socket.write(`${JSON.stringify({ id: 0, op: 'poweroff' } satisfies AgentCommand)}\n`);
      await Promise.race([qemu.exited, new Promise((r) => setTimeout(r, 15_000))]);
    }
    qemu.kill();
    await qemu.exited;
    socket?.destroy();
    for (const guest of guests.values()) guest.exited(null, 'lab shut down');
    rmSync(runDir, { recursive: true, force: true });
  };

  const bootTimeoutMs = options.bootTimeoutMs ?? 240_000;
  let dom0UptimeAtReadyMs: number;
  try {
    socket = await withTimeout(connect(), 30_000, 'QEMU opening the control socket', () => ({
      console: consoleTail(),
    }));
    const splitter = new LineSplitter((line) => {
      if (!line.trim()) return;
      try {
        onEvent(JSON.parse(line) as AgentEvent);
      } catch {
        onConsole(`control: unparsable line ${line.slice(0, 200)}`);
      }
    });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => splitter.push(chunk));
    const died = qemu.exited.then(() => {
      throw new LabError('boot', `QEMU exited before dom0's agent was ready; console:\n${consoleTail()}`);
    });
    dom0UptimeAtReadyMs = await withTimeout(
      Promise.race([readyPromise, died]),
      bootTimeoutMs,
      "dom0's agent saying ready (Xen boot, dom0 init, xenstored, node)",
      () => ({ console: consoleTail() }),
    );
  } catch (error) {
    await shutdown();
    throw error;
  }
  void qemu.exited.then(() => {
    for (const guest of guests.values()) guest.exited(null, `QEMU exited; console:\n${consoleTail(10)}`);
  });

  const send = (command: AgentCommand) => {
    if (closed) throw new LabError('lab', 'the lab is shut down');
    socket?.write(`${JSON.stringify(command)}\n`);
  };
  let domUCount = 0;

  return {
    timings: {
      imageBuildMs: Math.round(imageBuildMs),
      bootMs: Math.round(performance.now() - bootStart),
      dom0UptimeAtReadyMs,
    },
    consoleTail,
    shutdown,
    runInDom0(bundle, o = {}) {
      const id = nextId++;
      const name = `dom0/${basename(bundle)}`;
      const handle = new GuestHandle(name);
      guests.set(id, handle);
      const relative = share(shareDir, bundle, `bundles/${basename(bundle)}`);
      send({ id, op: 'run', bundle: relative, args: o.args ?? {}, timeoutMs: o.timeoutMs ?? 300_000 });
      return handle;
    },
    createDomU(image, o) {
      const id = nextId++;
      const name = o.name ?? `${o.type}-${++domUCount}`;
      const dir = `images/${image.key}`;
      if (o.pvhGrub) {
        share(shareDir, o.pvhGrub.grub, `${dir}/pvh-grub.bin`);
        share(shareDir, o.pvhGrub.rootImage, `${dir}/root.img`);
      } else {
        share(shareDir, image.kernel, `${dir}/vmlinuz`);
        share(shareDir, image.initramfs, `${dir}/initramfs.cpio.gz`);
        share(shareDir, image.disk, `${dir}/disk.squashfs`);
      }
      // A domU that outlives its wait is destroyed, so a hung guest never blocks the next one.
      const handle = new DomUHandle(
        `domU ${name} (${o.type})`,
        () => {
          if (!closed) send({ id: nextId++, op: 'exec', argv: ['xl', 'destroy', name], timeoutMs: 60_000 });
        },
        (domid) => xenLinesAbout(consoleLines, domid),
      );
      guests.set(id, handle);
      send({ id, op: 'create', name, config: domUConfig(name, o, dir) });
      return handle;
    },
    shareFile(source) {
      const digest = createHash('sha256').update(readFileSync(source)).digest('hex').slice(0, 24);
      const name = basename(source)
        .replace(/[^A-Za-z0-9._-]/g, '_')
        .slice(-64);
      return `${DOM0_SHARE}/${share(shareDir, source, `files/${digest}-${name}`)}`;
    },
    exec(argv, o = {}) {
      const id = nextId++;
      const timeoutMs = o.timeoutMs ?? 120_000;
      return new Promise((resolve, reject) => {
        const lines: string[] = [];
        const timer = setTimeout(() => {
          execs.delete(id);
          reject(new LabTimeout(`dom0: ${argv.join(' ')} finishing`, timeoutMs, { lines }));
        }, timeoutMs + 10_000);
        execs.set(id, {
          lines,
          done: (code) => {
            clearTimeout(timer);
            execs.delete(id);
            resolve({ code, lines });
          },
        });
        send({ id, op: 'exec', argv, timeoutMs });
      });
    },
  };
}

export { bundleEntry };
