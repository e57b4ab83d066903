/**
 * Networked topologies of Linux domUs in a running lab: a netvm (driver domain) and client
 * qubes whose vifs it serves, vif hot-plug with `xl network-attach`/`network-detach`, and the
 * commands the guests take (through xenstore, see guests/linux.guest.ts).
 */
import type { VmImage } from '@moat/unikernel';
import { bundleEntry } from './bundle.ts';
import { LabError } from './errors.ts';
import type { GuestHandle } from './guest-run.ts';
import type { Lab, VifSpec } from './lab.ts';
import { vifSpecParts } from './lab.ts';
import type {
  LinuxCommand,
  LinuxGuestArgs,
  QubesDbServeArgs,
  QubesDbStop,
  QubesDbUpdate,
} from './topology-wire.ts';
import { BRIDGE_VIF_SCRIPT, VIF_SCRIPT, xenstoreWriteArg } from './topology-wire.ts';
import { domainId } from './vchan-lab.ts';

const QUBESDB_DOM0 = new URL('./guests/qubesdb-dom0.guest.ts', import.meta.url).pathname;

export interface QubesDbService {
  readonly handle: GuestHandle;
  /** Applies a change to one VM's database (forwarded to the VM at once) and waits until it is done. */
  update(update: QubesDbUpdate): Promise<void>;
  /** Ends the dom0 process (bounded; its VMs are gone or going). */
  stop(): Promise<void>;
}

let qubesDbInstances = 0;

/**
 * Serves a QubesDB per VM from dom0 (our @moat/qubesdb daemon, one per VM as qubesd runs
 * `qubesdb-daemon <domid> <name>`), with the entries given (qubesdb-keys.ts).
 */
export async function serveQubesDb(lab: Lab, vms: QubesDbServeArgs['vms']): Promise<QubesDbService> {
  const bundle = await bundleEntry(QUBESDB_DOM0);
  const dir = `/moat-lab/qubesdb/${++qubesDbInstances}`;
  const handle = lab.runInDom0(bundle, {
    args: { dir, vms } satisfies QubesDbServeArgs as unknown as Record<string, unknown>,
    timeoutMs: 24 * 3600_000,
  });
  const serving = await handle.result('serving', { timeoutMs: 300_000 });
  if (!serving.ok) throw new LabError('qubesdb', `dom0's QubesDB did not start: ${serving.error}`);
  let seq = 0;
  const send = async (message: QubesDbUpdate | QubesDbStop) => {
    const n = ++seq;
    const written = await lab.exec([
      'xenstore-write',
      `${dir}/${n}`,
      xenstoreWriteArg(JSON.stringify(message)),
    ]);
    if (written.code !== 0)
      throw new LabError('qubesdb', `writing update ${n} failed: ${written.lines.join(' | ')}`);
    const result = await handle.result(`update ${n}`, { timeoutMs: 120_000 });
    if (!result.ok) throw new LabError('qubesdb', `update ${n} failed: ${result.error}`);
  };
  return {
    handle,
    update: send,
    async stop() {
      await send({ stop: true });
      await handle.finished({ timeoutMs: 60_000 });
    },
  };
}

/** Qubes' addressing (qubes-core-admin: VMs in 10.137.0.0/16, the DNS servers a VM is told). */
export const QUBES_DNS = ['10.139.1.1', '10.139.1.2'] as const;

/** A MAC the way Qubes makes them for a VM's vif: 00:16:3e:5e:6c:<n> (qubes/vm/qubesvm.py). */
export function qubesMac(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 255)
    throw new LabError('topology', `MAC index ${n} out of 0..255`);
  return `00:16:3e:5e:6c:${n.toString(16).padStart(2, '0')}`;
}

/** A long-running domU that takes commands from dom0 through xenstore (guests/command-loop.ts). */
export interface CommandVm<Command = unknown> {
  readonly name: string;
  readonly domid: number;
  readonly handle: GuestHandle;
  /** What the guest reported when it came up. */
  readonly up: unknown;
  /** Runs a command in the guest and returns its data (throws with the guest's error). */
  command<T = Record<string, unknown>>(command: Command, options?: { timeoutMs?: number }): Promise<T>;
}

export type LinuxVm = CommandVm<LinuxCommand>;

export interface CommandVmOptions {
  readonly name: string;
  /** The guest's arguments; `op` of each command is named in a failure. */
  readonly args: Record<string, unknown>;
  readonly type?: 'pv' | 'pvh';
  readonly memoryMb?: number;
  readonly vifs?: readonly VifSpec[];
  /** `driver_domain = 1`: the backend of other domains' vifs. */
  readonly driverDomain?: boolean;
  /** Until the guest reports `up` (boot under emulation on a loaded machine is slow). */
  readonly upTimeoutMs?: number;
}

/**
 * libxl's message when `xl create` gave up on a vif whose driver-domain backend did not reach
 * InitWait within its fixed 10 s (LIBXL_INIT_TIMEOUT; libxl_create.c domcreate_attach_devices).
 */
const VIF_ADD_TIMEOUT = /unable to add (vif devices|device with path \S*\/backend\/vif\/)/;

/**
 * Creates a domU whose guest serves commands and waits until it reports `up`. Under emulation
 * on a loaded machine (load 20, three clients created at once, 2026-12-06) a driver domain's
 * netback can miss libxl's 10 s for a vif, and `xl create` then destroys the new domain: only
 * for that message, once the domain is gone, it is created again (at most twice, counted in
 * `hotplugRetries`).
 */
export async function startCommandVm<Command extends { op: string }>(
  lab: Lab,
  image: VmImage,
  o: CommandVmOptions,
): Promise<CommandVm<Command>> {
  const create = () =>
    lab.createDomU(image, {
      type: o.type ?? 'pv',
      name: o.name,
      memoryMb: o.memoryMb ?? 160,
      args: o.args,
      ...(o.vifs ? { vifs: o.vifs } : {}),
      ...(o.driverDomain ? { driverDomain: true } : {}),
    });
  let handle = create();
  const waitUp = (h: GuestHandle) =>
    h.result('up', { timeoutMs: o.upTimeoutMs ?? 420_000 }).catch((error: Error) => error);
  let up = await waitUp(handle);
  for (let retry = 1; up instanceof Error && VIF_ADD_TIMEOUT.test(up.message) && retry <= 2; retry++) {
    const deadline = Date.now() + 120_000;
    while ((await lab.exec(['xl', 'domid', o.name])).code === 0) {
      if (Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    hotplugRetries.count++;
    hotplugRetries.log.push(`${new Date().toISOString()} create ${o.name}: ${VIF_ADD_TIMEOUT.source}`);
    console.warn(`lab: xl create ${o.name}: a vif backend missed libxl's 10 s; creating it again (${retry})`);
    handle = create();
    up = await waitUp(handle);
  }
  if (up instanceof Error) throw up;
  if (!up.ok) throw new LabError(o.name, `did not come up: ${up.error}\n${handle.tail(30)}`);
  const domid = await domainId(lab, o.name);
  let seq = 0;
  return {
    name: o.name,
    domid,
    handle,
    up: up.data,
    async command<T>(command: Command, options: { timeoutMs?: number } = {}): Promise<T> {
      const n = ++seq;
      const written = await lab.exec([
        'xenstore-write',
        `/local/domain/${domid}/data/moat-cmd/${n}`,
        xenstoreWriteArg(JSON.stringify(command)),
      ]);
      if (written.code !== 0)
        throw new LabError(o.name, `writing command ${n} failed: ${written.lines.join(' | ')}`);
      const result = await handle.result(`cmd ${n}`, { timeoutMs: options.timeoutMs ?? 120_000 });
      if (!result.ok) throw new LabError(o.name, `${command.op} failed: ${result.error}\n${handle.tail(30)}`);
      return result.data as T;
    },
  };
}

export interface LinuxVmOptions {
  readonly name: string;
  readonly args: LinuxGuestArgs;
  readonly type?: 'pv' | 'pvh';
  readonly memoryMb?: number;
  readonly vifs?: readonly VifSpec[];
  /** Until the guest reports `up` (boot under emulation on a loaded machine is slow). */
  readonly upTimeoutMs?: number;
}

/** Creates a Linux domU (netvm, client, bridge or firewall) and waits until it takes commands. */
export function startLinuxVm(lab: Lab, image: VmImage, o: LinuxVmOptions): Promise<LinuxVm> {
  const serves = o.args.role !== 'client';
  return startCommandVm<LinuxCommand>(lab, image, {
    ...o,
    args: o.args as unknown as Record<string, unknown>,
    memoryMb: o.memoryMb ?? (o.args.role === 'client' || o.args.role === 'bridge' ? 160 : 192),
    driverDomain: serves,
  });
}

/** MemAvailable in MiB, one decimal, from the text of /proc/meminfo. */
export function meminfoAvailableMiB(meminfo: string): number {
  const kib = /^MemAvailable:\s+(\d+) kB$/m.exec(meminfo)?.[1];
  if (kib === undefined) throw new LabError('meminfo', `no MemAvailable line in: ${meminfo.slice(0, 200)}`);
  return Math.round(Number(kib) / 102.4) / 10;
}

/** A Linux VM's MemAvailable (MiB): what its kernel can still give, e.g. per reconnect cycle. */
export async function memAvailableMiB(vm: LinuxVm): Promise<number> {
  const r = await vm.command<{ out: string }>({ op: 'exec', argv: ['cat', '/proc/meminfo'] });
  return meminfoAvailableMiB(r.out);
}

/** A client vif served by a Linux netvm (our hotplug script there). */
export function netvmVif(netvm: string, ip: string, mac: string): VifSpec {
  return { backend: netvm, ip, mac, script: VIF_SCRIPT };
}

/** A client vif served by a Linux bridge domU (its hotplug script puts the vif in the bridge). */
export function bridgeVif(bridge: string, mac: string): VifSpec {
  return { backend: bridge, mac, script: BRIDGE_VIF_SCRIPT };
}

async function xl(lab: Lab, argv: string[], timeoutMs = 120_000): Promise<string[]> {
  const r = await lab.exec(['xl', ...argv], { timeoutMs });
  if (r.code !== 0)
    throw new LabError('xl', `xl ${argv.join(' ')} failed (${r.code}): ${r.lines.join(' | ')}`);
  return r.lines;
}

/**
 * Hot-plugs a vif into a running domain (`xl network-attach`). libxl waits a fixed 10 s
 * (LIBXL_INIT_TIMEOUT) for a driver-domain backend to reach InitWait; under emulation on a
 * loaded machine the netvm's netback can answer later, and libxl reports "unable to add
 * device" for a vif that then connects anyway. Only for that message: wait (bounded) until
 * the vif with this MAC is listed connected, and count it in `hotplugRetries` (logged); a vif
 * that does not connect fails with libxl's message.
 */
export async function attachVif(lab: Lab, domain: string, vif: VifSpec): Promise<void> {
  const argv = ['network-attach', domain, ...vifSpecParts(vif)];
  const r = await lab.exec(['xl', ...argv], { timeoutMs: 120_000 });
  if (r.code === 0) return;
  const text = r.lines.join(' | ');
  if (!vif.mac || !/unable to add device/.test(text))
    throw new LabError('xl', `xl ${argv.join(' ')} failed (${r.code}): ${text}`);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const listed = await lab.exec(['xl', 'network-list', domain]);
    // Idx BE Mac handle state ...: state 4 is Connected.
    const row = listed.lines.map((l) => l.trim().split(/\s+/)).find((cols) => cols[2] === vif.mac);
    if (row?.[4] === '4') break;
    if (Date.now() > deadline)
      throw new LabError(
        'xl',
        `xl ${argv.join(' ')} failed (${r.code}) and the vif did not connect in 60 s: ${text}`,
      );
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  hotplugRetries.count++;
  hotplugRetries.log.push(`${new Date().toISOString()} attach ${domain} ${vif.mac}: ${text}`);
  console.warn(
    `lab: xl network-attach ${domain} ${vif.mac} reported failure after libxl's 10 s timeout, the vif connected: ${text}`,
  );
}

/** How often attachVif/detachVif had to finish what libxl gave up on after its 10 s (see there). */
export const hotplugRetries = { count: 0, log: [] as string[] };

/**
 * Unplugs a domain's vif (`xl network-detach`). With a driver-domain backend, libxl waits a
 * fixed 10 s (LIBXL_DESTROY_TIMEOUT, xen tools/libs/light/libxl_internal.h) for the backend
 * domain's `xl devd` to remove the backend's xenstore directory; under emulation on a loaded
 * machine devd can take longer, and libxl then reports the removal failed while devd
 * finishes it moments later. Only for that message: wait (bounded) until the backend
 * directory is gone and detach again, which completes libxl's own clean-up (frontend and
 * /libxl entries). Each such retry is logged and counted in `hotplugRetries`.
 */
export async function detachVif(lab: Lab, domain: string, device: string | number): Promise<void> {
  const argv = ['network-detach', domain, String(device)];
  const first = await lab.exec(['xl', ...argv], { timeoutMs: 120_000 });
  if (first.code === 0) return;
  const text = first.lines.join(' | ');
  const backend = /waiting for (\/local\/domain\/\d+\/backend\/vif\/\d+\/\d+) to be removed/.exec(text)?.[1];
  if (!backend) throw new LabError('xl', `xl ${argv.join(' ')} failed (${first.code}): ${text}`);
  const deadline = Date.now() + 60_000;
  while ((await lab.exec(['xenstore-exists', backend])).code === 0) {
    if (Date.now() > deadline)
      throw new LabError('xl', `${backend} still there 60 s after libxl gave up on it: ${text}`);
    await new Promise((r) => setTimeout(r, 500));
  }
  hotplugRetries.count++;
  hotplugRetries.log.push(`${new Date().toISOString()} detach ${domain} vif ${device}: ${text}`);
  console.warn(`lab: xl network-detach ${domain} ${device} retried after libxl's 10 s timeout: ${text}`);
  const second = await lab.exec(['xl', ...argv], { timeoutMs: 120_000 });
  if (second.code !== 0)
    throw new LabError(
      'xl',
      `xl ${argv.join(' ')} failed again (${second.code}): ${second.lines.join(' | ')}`,
    );
}

/** Unplugs every vif of a domain (a netvm gone: libxl and qubesd remove the vifs it served). */
export async function detachVifs(lab: Lab, domain: string): Promise<void> {
  for (const device of await listVifs(lab, domain)) await detachVif(lab, domain, device);
}

/** The vif device ids of a domain, as `xl network-list` reports them. */
export async function listVifs(lab: Lab, domain: string): Promise<number[]> {
  const lines = await xl(lab, ['network-list', domain]);
  return lines
    .slice(1)
    .map((l) => Number(l.trim().split(/\s+/)[0]))
    .filter((n) => Number.isInteger(n));
}

/** Counts of dom0's xenstore: every node, and those under a path (e.g. a netvm's backend/vif). */
export async function xenstoreCount(lab: Lab, path = '/'): Promise<number> {
  const r = await lab.exec(['xenstore-ls', '-f', path], { timeoutMs: 120_000 });
  // A path that does not exist is 0 nodes, not an error.
  if (r.code !== 0) return 0;
  return r.lines.filter((l) => l.startsWith('/')).length;
}
