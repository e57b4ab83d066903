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
import { LabError } from './errors.ts';
import { MoatFirewallVm } from './firewall-vm.ts';
import { guestImage } from './guest-image.ts';
import type { Lab } from './lab.ts';
import { buildLinuxImage } from './linux-image.ts';
import { type MoatMemoryBreakdown, memoryBreakdown } from './moat-stats.ts';
import {
  attachVif,
  type CommandVm,
  detachVif,
  type LinuxVm,
  listVifs,
  netvmVif,
  qubesMac,
  startCommandVm,
  startLinuxVm,
} from './topology.ts';
import { NETVM_PORTS } from './topology-wire.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
  only: readonly ClientVifSpec[] = client.vifs,
): Promise<Map<string, string>> {
  // With our hotplug script, as a scenario's clients: the Linux reference firewall's `xl devd`
  // runs it (without one it runs vif-bridge, which its image does not have, and the vif passes
  // nothing); sys-moat's netback does devd's part and takes no script.
  for (const vif of only) await attachVif(lab, client.vm.name, netvmVif(backend, vif.ip, vif.mac));
  const deadline = Date.now() + 120_000;
  let devices = await interfacesByMac(client.vm);
  while (only.some((v) => !devices.has(v.mac))) {
    if (Date.now() > deadline)
      throw new LabError(client.vm.name, `vifs without an interface after 120 s: ${[...devices].join(', ')}`);
    await sleep(2000);
    devices = await interfacesByMac(client.vm);
  }
  const byIp = new Map<string, string>();
  const script = ['sysctl -qw net.ipv4.conf.all.rp_filter=0 2>/dev/null || true'];
  client.vifs.forEach((vif, k) => {
    // The metric is the vif's place among all of the domU's vifs, so a replugged subset keeps
    // apart from the routes of the vifs that stayed.
    if (!only.includes(vif)) return;
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

/**
 * Detaches a client domU's vifs (qubesd when the qube's netvm goes or changes): every one, or
 * those of `only` (found by MAC in `xl network-list`).
 */
export async function unplugClientVifs(
  lab: Lab,
  client: VifClient,
  only?: readonly ClientVifSpec[],
): Promise<void> {
  if (!only) {
    for (const device of await listVifs(lab, client.vm.name)) await detachVif(lab, client.vm.name, device);
    return;
  }
  const macs = new Set(only.map((v) => v.mac));
  const listed = await lab.exec(['xl', 'network-list', client.vm.name]);
  if (listed.code !== 0)
    throw new LabError(
      client.vm.name,
      `xl network-list failed (${listed.code}): ${listed.lines.join(' | ')}`,
    );
  // Idx BE Mac handle state ...
  for (const cols of listed.lines.slice(1).map((l) => l.trim().split(/\s+/)))
    if (cols[2] && macs.has(cols[2])) await detachVif(lab, client.vm.name, Number(cols[0]));
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
  /** The kernel's largest slab caches then (moat.FirewallStats). */
  readonly slabTop?: readonly string[];
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
  /** Settings tried, largest first (default 128, 96, 80, 64, 48). */
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

/**
 * The 20-client case at each memory setting: one Linux netvm and the client domUs stay up; for
 * each setting a new sys-moat starts with `memory = maxmem = <setting>`, every client vif is
 * attached to it and pings the netvm out of its own interface, the VM's memory is read through
 * moat.FirewallStats, the vifs are detached and sys-moat is shut down. Figures are measured in
 * the emulated lab (Xen in QEMU TCG); memory figures do not depend on emulation speed.
 */
export async function memorySweep(lab: Lab, o: MemorySweepOptions): Promise<MemorySweepReport> {
  const log = o.log ?? (() => {});
  const sizes = o.sizesMb ?? [128, 96, 80, 64, 48];
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
  let moat: MoatFirewallVm | undefined;
  let clientsUp = 0;
  let pingsAnswered = 0;
  let upMs: number | undefined;
  try {
    moat = new MoatFirewallVm(`msw-moat-${memoryMb}`, SWEEP_MOAT_IP, {
      image,
      memoryMb,
      upTimeoutMs: 900_000,
    });
    await moat.start({
      lab,
      virtMode: 'pv',
      upstream: SWEEP_NETVM,
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
    const after = await running.stats();
    const ok = pingsAnswered === total && clientsUp === total;
    return {
      memoryMb,
      ok,
      clientsUp,
      pingsAnswered,
      upMs,
      passMs: since(),
      breakdown: memoryBreakdown(memoryMb, after),
      slabTop: (after.memory.system?.slabTop ?? []).map(
        (c) => `${c.name} ${(c.bytes / 2 ** 20).toFixed(1)} MiB`,
      ),
      ...(ok
        ? {}
        : {
            error: `unanswered: ${pings
              .filter((p) => !p.ok)
              .map((p) => `${p.ip} (${p.device}: ${p.out})`)
              .join(', ')}\nsys-moat's console:\n${running.consoleTail(20)}`,
          }),
    };
  } catch (error) {
    const tail = moat?.consoleTail(15) ?? '';
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
