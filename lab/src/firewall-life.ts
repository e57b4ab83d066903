/**
 * sys-moat's life in the lab: the VM started as qubesd starts a ProxyVM (its uplink vif to a
 * Linux netvm, its QubesDB with the clients and their rules), dom0's view of its
 * `moat.FirewallStats`, Linux client domUs carrying several vifs each (Qubes gives a qube one
 * vif; a domU with many stands in for many client qubes at the cost of one boot), and the
 * memory sweep `./moat bench firewall` reports: the smallest `memory = maxmem` at which sys-moat
 * still serves every client, and where its memory goes.
 */
import type { VmImage } from '@moat/unikernel';
import type { GuestAddon } from './addon.ts';
import { bundleEntry } from './bundle.ts';
import type { ProfileSummary } from './cpu-profile.ts';
import { LabError } from './errors.ts';
import type { FirewallStatsCommand, FirewallStatsServeArgs, MoatStatsDoc } from './firewall-life-wire.ts';
import { guestImage } from './guest-image.ts';
import type { GuestHandle } from './guest-run.ts';
import type { Lab } from './lab.ts';
import { buildLinuxImage } from './linux-image.ts';
import { qubesDbEntries } from './qubesdb-keys.ts';
import {
  attachVif,
  type CommandVm,
  detachVif,
  type LinuxVm,
  listVifs,
  netvmVif,
  type QubesDbService,
  qubesMac,
  serveQubesDb,
  startCommandVm,
  startLinuxVm,
} from './topology.ts';
import { NETVM_PORTS } from './topology-wire.ts';
import { domainId } from './vchan-lab.ts';

export type { MoatStatsDoc } from './firewall-life-wire.ts';

const STATS_DOM0 = new URL('./guests/firewall-stats-dom0.guest.ts', import.meta.url).pathname;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- dom0's view of the stats

/** dom0's qrexec daemon for one sys-moat, calling `moat.FirewallStats` on demand. */
export interface MoatStats {
  read(): Promise<MoatStatsDoc>;
  /** Where sys-moat's node spends the next `ms` (moat.CpuProfile, summed up in dom0). */
  profile(ms: number, top?: number): Promise<ProfileSummary>;
  /** Ends dom0's process (bounded). */
  stop(): Promise<void>;
}

let statsInstances = 0;

/** Connects dom0's qrexec daemon to a running sys-moat's agent (waits for the agent). */
export async function moatStats(
  lab: Lab,
  peer: number,
  name: string,
  startupTimeoutMs = 600_000,
): Promise<MoatStats> {
  const bundle = await bundleEntry(STATS_DOM0);
  const dir = `/moat-lab/fwstats/${++statsInstances}`;
  const args: FirewallStatsServeArgs = { peer, name, dir, startupTimeoutMs };
  const handle = lab.runInDom0(bundle, {
    args: args as unknown as Record<string, unknown>,
    timeoutMs: 24 * 3600_000,
  });
  const connected = await handle.result('connected', { timeoutMs: startupTimeoutMs + 60_000 });
  if (!connected.ok) throw new LabError(name, `dom0's qrexec daemon did not connect: ${connected.error}`);
  let seq = 0;
  const send = async (command: FirewallStatsCommand, timeoutMs = 180_000): Promise<unknown> => {
    const n = ++seq;
    const written = await lab.exec(['xenstore-write', `${dir}/${n}`, JSON.stringify(command)]);
    if (written.code !== 0)
      throw new LabError(name, `writing stats command ${n} failed: ${written.lines.join(' | ')}`);
    const result = await handle.result(`cmd ${n}`, { timeoutMs });
    if (!result.ok) throw new LabError(name, `moat.FirewallStats failed: ${result.error}`);
    return result.data;
  };
  return {
    async read() {
      return ((await send({ op: 'stats' })) as { doc: MoatStatsDoc }).doc;
    },
    async profile(ms, top = 15) {
      return (await send({ op: 'profile', ms, top }, ms + 180_000)) as ProfileSummary;
    },
    async stop() {
      await send({ op: 'close' }).catch(() => undefined);
      await handle.finished({ timeoutMs: 60_000 }).catch(() => undefined);
    },
  };
}

// ---------------------------------------------------------------- sys-moat

export interface MoatVmSpec {
  readonly name: string;
  readonly ip: string;
  /** `memory = maxmem`, MiB (xl's maxmem defaults to memory). */
  readonly memoryMb: number;
  readonly netvm: { readonly name: string; readonly ip: string };
  readonly clients: readonly { readonly ip: string; readonly rules: ReadonlyMap<number, string> }[];
  readonly vmConfig?: Readonly<Record<string, string>>;
  /** Until the uplink is up (boot under emulation on a loaded machine is slow). */
  readonly upTimeoutMs?: number;
}

export interface MoatVm {
  readonly name: string;
  readonly ip: string;
  readonly domid: number;
  readonly handle: GuestHandle;
  readonly qubesdb: QubesDbService;
  readonly stats: MoatStats;
  /** The uplink vif as qubesd attaches it (backend: the netvm). */
  uplinkVif(netvm: string): ReturnType<typeof netvmVif>;
  /** Polls the stats until `check` holds (bounded; the last document in the error). */
  until(what: string, check: (doc: MoatStatsDoc) => boolean, timeoutMs?: number): Promise<MoatStatsDoc>;
  /** `xl shutdown` (control/shutdown), bounded; destroyed if it does not end. */
  stop(): Promise<void>;
}

/** The MAC qubesd gives sys-moat's own vif (its clients take 00:16:3e:5e:6c:14 and up). */
const MOAT_UPLINK_MAC = qubesMac(3);

/** Starts sys-moat as a driver domain on a running netvm, serves its QubesDB, waits for its uplink. */
export async function startMoatVm(lab: Lab, image: VmImage, spec: MoatVmSpec): Promise<MoatVm> {
  const upTimeoutMs = spec.upTimeoutMs ?? 900_000;
  const uplinkVif = (netvm: string) => netvmVif(netvm, spec.ip, MOAT_UPLINK_MAC);
  const handle = lab.createDomU(image, {
    type: 'pv',
    name: spec.name,
    memoryMb: spec.memoryMb,
    driverDomain: true,
    vifs: [uplinkVif(spec.netvm.name)],
  });
  let qubesdb: QubesDbService | undefined;
  let stats: MoatStats | undefined;
  const cleanUp = async () => {
    await stats?.stop();
    await lab.exec(['xl', 'destroy', spec.name]).catch(() => undefined);
    await handle.finished({ timeoutMs: 60_000 }).catch(() => undefined);
    await qubesdb?.stop().catch(() => undefined);
  };
  try {
    const domid = await domainId(lab, spec.name);
    qubesdb = await serveQubesDb(lab, [
      {
        domid,
        name: spec.name,
        entries: qubesDbEntries({
          name: spec.name,
          ip: spec.ip,
          mac: MOAT_UPLINK_MAC,
          netvmIp: spec.netvm.ip,
          providesNetwork: true,
          clients: spec.clients,
          ...(spec.vmConfig ? { vmConfig: spec.vmConfig } : {}),
        }),
      },
    ]);
    await handle.consoleLine(/sys-moat info: qrexec agent listening/, { timeoutMs: upTimeoutMs });
    stats = await moatStats(lab, domid, spec.name);
    const vm = moatVm(lab, spec, { domid, handle, qubesdb, stats, uplinkVif });
    await vm.until('with its uplink up', (d) => d.network.uplink.state === 'up', upTimeoutMs);
    return vm;
  } catch (error) {
    await cleanUp();
    throw error;
  }
}

function moatVm(
  lab: Lab,
  spec: MoatVmSpec,
  parts: Pick<MoatVm, 'domid' | 'handle' | 'qubesdb' | 'stats' | 'uplinkVif'>,
): MoatVm {
  const { handle, qubesdb, stats } = parts;
  return {
    ...parts,
    name: spec.name,
    ip: spec.ip,
    async until(what, check, timeoutMs = 300_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const doc = await stats.read();
        if (check(doc)) return doc;
        if (Date.now() > deadline)
          throw new LabError(
            spec.name,
            `not ${what} within ${timeoutMs} ms; last stats: ${JSON.stringify(doc.network)}\n${handle.tail(30)}`,
          );
        await sleep(3000);
      }
    },
    async stop() {
      await stats.stop();
      await lab.exec(['xl', 'shutdown', spec.name]).catch(() => undefined);
      const ended = await handle.finished({ timeoutMs: 120_000 }).catch(() => undefined);
      if (!ended) await lab.exec(['xl', 'destroy', spec.name]).catch(() => undefined);
      await qubesdb.stop().catch(() => undefined);
    },
  };
}

// ---------------------------------------------------------------- clients with several vifs

export interface ClientVifSpec {
  readonly ip: string;
  readonly mac: string;
}

/** `count` client vifs over `domains` domUs: 10.137.0.<first+i>, Qubes MACs of the same index. */
export function clientVifPlan(count: number, domains: number, first = 20): ClientVifSpec[][] {
  if (first + count > 255) throw new LabError('topology', `${count} clients from .${first} pass .254`);
  const plan: ClientVifSpec[][] = Array.from({ length: Math.max(1, domains) }, () => []);
  for (let i = 0; i < count; i++)
    plan[i % plan.length]?.push({ ip: `10.137.0.${first + i}`, mac: qubesMac(first + i) });
  return plan.filter((vifs) => vifs.length > 0);
}

export interface VifClient {
  readonly vm: LinuxVm;
  readonly vifs: readonly ClientVifSpec[];
}

/** Boots Linux client domUs with no vif yet (plugClientVifs gives them theirs). */
export async function startVifClients(
  lab: Lab,
  image: VmImage,
  prefix: string,
  plan: readonly (readonly ClientVifSpec[])[],
  memoryMb = 160,
): Promise<VifClient[]> {
  return Promise.all(
    plan.map(async (vifs, i) => ({
      vm: await startLinuxVm(lab, image, {
        name: `${prefix}${i + 1}`,
        args: { role: 'client' },
        memoryMb,
        upTimeoutMs: 1_200_000,
      }),
      vifs,
    })),
  );
}

/**
 * Runs a one-line shell script in a Linux guest (busybox sh); returns its output, throws on a
 * non-zero exit. dom0's `xenstore-write` expands backslash escapes in the command's JSON, so a
 * script holds no double quote, backslash or newline (refused here, not mangled there).
 */
async function sh(vm: LinuxVm, script: string, timeoutMs = 60_000): Promise<string> {
  if (/["\\\n]/.test(script))
    throw new LabError(vm.name, `script with a double quote, backslash or newline: ${script}`);
  const r = await vm.command<{ code: number | null; out: string }>(
    { op: 'exec', argv: ['sh', '-c', script], timeoutMs },
    { timeoutMs: timeoutMs + 60_000 },
  );
  if (r.code !== 0) throw new LabError(vm.name, `script failed (${r.code}): ${r.out}\n${script}`);
  return r.out;
}

/** The guest's interface name for each MAC (netfront names hot-plugged vifs eth0, eth1, ...). */
async function interfacesByMac(vm: LinuxVm): Promise<Map<string, string>> {
  const out = await sh(
    vm,
    'cd /sys/class/net && for d in eth*; do [ -e $d/address ] && echo $d $(cat $d/address); done; true',
  );
  const map = new Map<string, string>();
  for (const line of out.split('\n')) {
    const [dev, mac] = line.trim().split(/\s+/);
    if (dev && mac) map.set(mac.toLowerCase(), dev);
  }
  return map;
}

/**
 * Attaches a client domU's vifs with `backend` (what qubesd does when a qube starts or its netvm
 * changes), then configures each as Qubes' setup-ip does (its address /32, the gateway on the
 * link, a default route), each with its own metric so that a probe bound to an interface
 * (`ping -I`) leaves through it. Returns the interface of each vif.
 */
export async function plugClientVifs(
  lab: Lab,
  client: VifClient,
  backend: string,
  gateway: string,
): Promise<Map<string, string>> {
  // With our hotplug script, as a scenario's clients: the Linux reference firewall's `xl devd`
  // runs it (without one it runs vif-bridge, which its image does not have, and the vif passes
  // nothing); sys-moat's netback does devd's part and takes no script.
  for (const vif of client.vifs) await attachVif(lab, client.vm.name, netvmVif(backend, vif.ip, vif.mac));
  const deadline = Date.now() + 120_000;
  let devices = await interfacesByMac(client.vm);
  while (client.vifs.some((v) => !devices.has(v.mac))) {
    if (Date.now() > deadline)
      throw new LabError(client.vm.name, `vifs without an interface after 120 s: ${[...devices].join(', ')}`);
    await sleep(2000);
    devices = await interfacesByMac(client.vm);
  }
  const byIp = new Map<string, string>();
  const script = ['sysctl -qw net.ipv4.conf.all.rp_filter=0 2>/dev/null || true'];
  client.vifs.forEach((vif, k) => {
    const dev = devices.get(vif.mac) ?? '';
    byIp.set(vif.ip, dev);
    script.push(
      `ip addr flush dev ${dev}`,
      `ip addr add ${vif.ip}/32 dev ${dev}`,
      `ip link set ${dev} up`,
      `ip route replace ${gateway}/32 dev ${dev} metric ${k + 1}`,
      `ip route replace default via ${gateway} dev ${dev} metric ${k + 1}`,
    );
  });
  await sh(client.vm, `set -e; ${script.join('; ')}`);
  return byIp;
}

/** Detaches every vif of a client domU (qubesd when the qube's netvm goes or changes). */
export async function unplugClientVifs(lab: Lab, client: VifClient): Promise<void> {
  for (const device of await listVifs(lab, client.vm.name)) await detachVif(lab, client.vm.name, device);
}

export interface VifPing {
  readonly ip: string;
  readonly device: string;
  readonly ok: boolean;
  readonly out: string;
}

/** Pings `to` out of each interface at once (`ping -I <dev>`), up to `tries` times per vif. */
export async function pingEachVif(
  client: VifClient,
  devices: ReadonlyMap<string, string>,
  to: string,
  tries = 2,
): Promise<VifPing[]> {
  if (!/^[0-9.]+$/.test(to)) throw new LabError(client.vm.name, `not an IPv4 address: ${to}`);
  const pairs = client.vifs.map((v) => ({ ip: v.ip, device: devices.get(v.ip) ?? '' }));
  const script = pairs
    .map(
      ({ device }) =>
        `(ok=1; for t in $(seq ${tries}); do if ping -c 1 -W 10 -I ${device} ${to} >/tmp/ping.${device} 2>&1; then ok=0; break; fi; done; echo @ ${device} $ok) &`,
    )
    .join(' ');
  const out = await sh(client.vm, `${script} wait`, tries * 15_000 + 30_000);
  return pairs.map(({ ip, device }) => {
    const line = out.split('\n').find((l) => l.startsWith(`@ ${device} `));
    return { ip, device, ok: line?.trim().endsWith(' 0') === true, out: line ?? '(no answer line)' };
  });
}

// ---------------------------------------------------------------- a frontend that never connects

const NETIF_GUEST = new URL('./guests/netif.guest.ts', import.meta.url).pathname;

/**
 * A domU whose kernel has no xen-netfront (a unikernel image: the lab's netif guest, serving
 * commands and touching no `device/vif`): a vif attached to it stays Initialising for good, as a
 * client qube whose netfront hangs or never loads. Its backend reaches InitWait and waits.
 */
export async function startSilentFrontend(lab: Lab, name: string, addon: GuestAddon): Promise<CommandVm> {
  const { image } = await guestImage(NETIF_GUEST, { addon });
  return startCommandVm(lab, image, {
    name,
    args: { role: 'plumbing' },
    memoryMb: 128,
    upTimeoutMs: 1_200_000,
  });
}

// ---------------------------------------------------------------- the memory sweep

/** What takes sys-moat's memory at one setting (bytes; from moat.FirewallStats after the pings). */
export interface MoatMemoryBreakdown {
  /** The domain's memory less what its kernel manages: kernel image, page tables of the direct map, reservations. */
  readonly kernelReserved: number;
  /** /proc/meminfo MemTotal - MemAvailable: what is really in use. */
  readonly inUse: number;
  /** The unpacked initramfs and other tmpfs pages (Shmem). */
  readonly initramfs: number;
  readonly slab: number;
  /** node's resident set (its binary's pages from the disk included). */
  readonly nodeRss: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  /** Buffers outside the JS heap: ring pages' views, packet buffers (ArrayBuffers among them). */
  readonly external: number;
  readonly conntrackEntries: number;
}

export interface MemorySweepPoint {
  readonly memoryMb: number;
  /** Every client vif answered a ping through sys-moat. */
  readonly ok: boolean;
  readonly clientsUp: number;
  readonly pingsAnswered: number;
  /** From `xl create` to the uplink up / to every vif plugged and pinged. */
  readonly upMs?: number;
  readonly passMs?: number;
  readonly breakdown?: MoatMemoryBreakdown;
  readonly error?: string;
}

export interface MemorySweepReport {
  readonly clients: number;
  readonly clientDomains: number;
  readonly points: readonly MemorySweepPoint[];
  /** The smallest setting at which every client passed traffic. */
  readonly smallestPassingMb?: number;
  readonly note: string;
}

export interface MemorySweepOptions {
  /** Settings tried, largest first (default 128, 96, 64, 48). */
  readonly sizesMb?: readonly number[];
  /** Client vifs (default 20) over this many Linux domUs (default 2). */
  readonly clients?: number;
  readonly clientDomains?: number;
  /** Stop after the first failing setting (default true: smaller ones are not expected to pass). */
  readonly stopAtFirstFailure?: boolean;
  readonly firewallImage: VmImage;
  readonly linuxImage?: VmImage;
  readonly log?: (line: string) => void;
}

const SWEEP_NETVM = { name: 'msw-netvm', ip: '10.137.0.2' };
const SWEEP_MOAT_IP = '10.137.0.3';
/** The netvm's TCP echo and ping, as a Qubes user's rules would allow. */
export const SWEEP_RULES: ReadonlyMap<number, string> = new Map([
  [0, `action=accept proto=tcp dstports=${NETVM_PORTS.tcpEcho}-${NETVM_PORTS.tcpEcho}`],
  [1, 'action=accept proto=icmp'],
]);

export function memoryBreakdown(memoryMb: number, doc: MoatStatsDoc): MoatMemoryBreakdown {
  const m = doc.memory;
  const s = m.system;
  return {
    kernelReserved: s ? memoryMb * 2 ** 20 - s.memTotal : 0,
    inUse: s ? s.memTotal - s.memAvailable : 0,
    initramfs: s?.shmem ?? 0,
    slab: s?.slab ?? 0,
    nodeRss: m.rss,
    heapUsed: m.heapUsed,
    heapTotal: m.heapTotal,
    external: m.external,
    conntrackEntries: doc.network.engine?.conntrack.size ?? 0,
  };
}

/**
 * The 20-client case at each memory setting: one Linux netvm and the client domUs stay up; for
 * each setting a new sys-moat starts with `memory = maxmem = <setting>`, every client vif is
 * attached to it and pings the netvm out of its own interface, the VM's memory is read through
 * moat.FirewallStats, the vifs are detached and sys-moat is shut down. Figures are measured in
 * the emulated lab (Xen in QEMU TCG); memory figures do not depend on emulation speed.
 */
export async function memorySweep(lab: Lab, o: MemorySweepOptions): Promise<MemorySweepReport> {
  const log = o.log ?? (() => {});
  const sizes = o.sizesMb ?? [128, 96, 64, 48];
  const clients = o.clients ?? 20;
  const clientDomains = o.clientDomains ?? 2;
  const linux = o.linuxImage ?? (await buildLinuxImage()).image;
  const plan = clientVifPlan(clients, clientDomains);
  const points: MemorySweepPoint[] = [];
  const netvm = await startLinuxVm(lab, linux, {
    name: SWEEP_NETVM.name,
    args: { role: 'netvm', ip: SWEEP_NETVM.ip },
    upTimeoutMs: 1_200_000,
  });
  log(`memory sweep: netvm up`);
  const vifClients = await startVifClients(lab, linux, 'msw-client', plan);
  log(`memory sweep: ${vifClients.length} client domUs up`);
  try {
    for (const memoryMb of sizes) {
      const point = await sweepPoint(lab, o.firewallImage, memoryMb, plan, vifClients, log);
      points.push(point);
      log(`memory sweep: ${memoryMb} MiB: ${JSON.stringify(point)}`);
      if (!point.ok && o.stopAtFirstFailure !== false) break;
    }
  } finally {
    for (const c of vifClients) await c.vm.command({ op: 'poweroff' }).catch(() => undefined);
    await netvm.command({ op: 'poweroff' }).catch(() => undefined);
  }
  const passing = points.filter((p) => p.ok).map((p) => p.memoryMb);
  return {
    clients,
    clientDomains: vifClients.length,
    points,
    ...(passing.length ? { smallestPassingMb: Math.min(...passing) } : {}),
    note: 'measured in the emulated lab (Xen 4.17 in QEMU TCG); memory does not depend on emulation speed',
  };
}

async function sweepPoint(
  lab: Lab,
  image: VmImage,
  memoryMb: number,
  plan: readonly (readonly ClientVifSpec[])[],
  vifClients: readonly VifClient[],
  log: (line: string) => void,
): Promise<MemorySweepPoint> {
  const t0 = performance.now();
  const since = () => Math.round(performance.now() - t0);
  let moat: MoatVm | undefined;
  let clientsUp = 0;
  let pingsAnswered = 0;
  let upMs: number | undefined;
  try {
    moat = await startMoatVm(lab, image, {
      name: `msw-moat-${memoryMb}`,
      ip: SWEEP_MOAT_IP,
      memoryMb,
      netvm: SWEEP_NETVM,
      clients: plan.flat().map((v) => ({ ip: v.ip, rules: SWEEP_RULES })),
    });
    upMs = since();
    const running = moat;
    const total = plan.flat().length;
    const devices: Map<string, string>[] = [];
    for (const c of vifClients) devices.push(await plugClientVifs(lab, c, running.name, running.ip));
    const doc = await running.until(
      `serving ${total} clients`,
      (d) => d.network.clients.filter((c) => c.state === 'up').length === total,
    );
    clientsUp = doc.network.clients.filter((c) => c.state === 'up').length;
    const pings = (
      await Promise.all(vifClients.map((c, i) => pingEachVif(c, devices[i] ?? new Map(), SWEEP_NETVM.ip)))
    ).flat();
    pingsAnswered = pings.filter((p) => p.ok).length;
    const after = await running.stats.read();
    const ok = pingsAnswered === total && clientsUp === total;
    return {
      memoryMb,
      ok,
      clientsUp,
      pingsAnswered,
      upMs,
      passMs: since(),
      breakdown: memoryBreakdown(memoryMb, after),
      ...(ok
        ? {}
        : {
            error: `unanswered: ${pings
              .filter((p) => !p.ok)
              .map((p) => p.ip)
              .join(' ')}`,
          }),
    };
  } catch (error) {
    const tail = moat?.handle.tail(15) ?? '';
    log(`memory sweep: ${memoryMb} MiB failed: ${(error as Error).message}`);
    return {
      memoryMb,
      ok: false,
      clientsUp,
      pingsAnswered,
      ...(upMs !== undefined ? { upMs } : {}),
      error: `${(error as Error).message.slice(0, 2000)}\n${tail}`,
    };
  } finally {
    for (const c of vifClients) await unplugClientVifs(lab, c).catch((e: Error) => log(e.message));
    await moat?.stop();
    if (!moat) await lab.exec(['xl', 'destroy', `msw-moat-${memoryMb}`]).catch(() => undefined);
  }
}
