/**
 * The firewall VM of a scenario: a domU between the clients and the upstream netvm, in
 * sys-firewall's place (a ProxyVM: netfront to its netvm, the backend of its clients' vifs).
 * One interface for each kind: `linux` is the Linux reference firewall (linux-firewall/ in
 * the Linux image's `firewall` role), `moat` is sys-moat (firewall/src/vm/, the image
 * unikernel's buildFirewallImage makes).
 */
import { buildFirewallImage, type VmImage } from '@moat/unikernel';
import type { ProfileSummary } from './cpu-profile.ts';
import { LabError } from './errors.ts';
import type { GuestHandle } from './guest-run.ts';
import type { Lab, VifSpec } from './lab.ts';
import { LAB_IP_COMMAND } from './linux-firewall/vif-script.ts';
import { type MoatStats, type MoatStatsDoc, moatStats } from './moat-stats.ts';
import { type QubesClientSpec, qubesDbEntries, qubesFirewallEntries } from './qubesdb-keys.ts';
import { rulesOfFamily } from './scenario.ts';
import {
  attachVif,
  detachVifs,
  type LinuxVm,
  netvmVif,
  type QubesDbService,
  qubesMac,
  serveQubesDb,
  startLinuxVm,
} from './topology.ts';
import { domainId } from './vchan-lab.ts';

export interface FirewallContext {
  readonly lab: Lab;
  /** The Linux image (the `linux` firewall runs it; sys-moat has its own). */
  readonly image?: VmImage;
  readonly virtMode: 'pv' | 'pvh';
  /** The running netvm (its QubesDB served); `ip6` when it has the `ipv6` feature. */
  readonly upstream: { readonly name: string; readonly ip: string; readonly ip6?: string };
  /**
   * The clients' addresses and rules, as qubesd writes them into the firewall's QubesDB (a
   * client with `ip6` gets its IPv6 tree too).
   */
  readonly clients: readonly QubesClientSpec[];
}

export interface FirewallVm {
  readonly kind: 'linux' | 'moat';
  /** The domain's name: the backend of the clients' vifs. */
  readonly name: string;
  readonly ip: string;
  /** Its IPv6 address (uplink, and its clients' IPv6 gateway), when it has one. */
  readonly ip6?: string;
  /** Starts the VM on the running upstream with its QubesDB; resolves once every client's rules are in force. */
  start(context: FirewallContext): Promise<unknown>;
  /**
   * Publishes a client's new rules as qubesd does (its IPv4 tree, and its IPv6 tree when it
   * has `clientIp6`); resolves once the VM applied them (what it did).
   */
  rules(clientIp: string, rules: ReadonlyMap<number, string>, clientIp6?: string): Promise<unknown>;
  /**
   * Call just before a client's vif is plugged in (boot or attach); the promise resolves once
   * the VM serves that client with its rules in force (what it said). Undefined: nothing to
   * wait for (the Linux firewall's rules for an address hold before its vif exists).
   */
  serving?(clientIp: string, clientIp6?: string): Promise<unknown>;
  /** A client's vif was unplugged (detach): the VM no longer follows its rules until it is back. */
  unplugged?(clientIp: string): void;
  /** The last lines of the VM's console, for a failed step's report (a VM that logs its decisions). */
  consoleTail?(lines?: number): string;
  /** The upstream was destroyed: the uplink vif goes, as libxl removes it. */
  upstreamGone(): Promise<void>;
  /** The upstream runs again: the uplink comes back (qubesd re-attaches it) and is configured. */
  restart(): Promise<void>;
  /** Powers the VM off and ends its QubesDB. */
  stop(): Promise<void>;
  /** What the VM's network looks like now, for a failed step's report (interfaces, routes, rules). */
  diagnose?(): Promise<string>;
  /** Memory in use in the VM (/proc/meminfo MemTotal - MemAvailable), bytes. */
  memoryInUse?(): Promise<number>;
  /** The VM's memory figures (its /proc/meminfo; sys-moat's node process too). */
  memory?(): Promise<FirewallVmMemory>;
  /**
   * Where the VM's own code spends its time while `during` runs (sys-moat: V8's profiler through
   * qrexec moat.CpuProfile over `ms`, started just before `during`).
   */
  profile?<T>(ms: number, during: () => Promise<T>): Promise<{ result: T; profile: ProfileSummary }>;
}

/** Memory in a firewall VM, bytes (but `memoryMb`), read inside the VM. */
export interface FirewallVmMemory {
  /** The domain's `memory = maxmem`, MiB. */
  readonly memoryMb: number;
  /** /proc/meminfo: MemTotal (the domain's memory less the kernel's boot reservations), MemAvailable, Slab. */
  readonly memTotal: number;
  readonly memAvailable: number;
  readonly slab: number;
  /** sys-moat's node process: resident set, JS heap used, buffers outside the heap. */
  readonly node?: { readonly rss: number; readonly heapUsed: number; readonly external: number };
}

/** The MAC of the firewall's uplink (the clients take 00:16:3e:5e:6c:0a and up). */
const UPLINK_MAC = qubesMac(6);

/**
 * What qubesd writes into a firewall VM's QubesDB: a ProxyVM's own uplink keys, its clients
 * (`/connected-ips`, `/mapped-ip/...`) and their rules (`/qubes-firewall/<ip>/...`), the
 * qubes-firewall service on.
 */
export function firewallQubesDbEntries(
  name: string,
  ip: string,
  upstreamIp: string,
  clients: FirewallContext['clients'],
  vmConfig?: Readonly<Record<string, string>>,
  ipv6?: { readonly ip6: string; readonly upstreamIp6: string },
): [string, string][] {
  return qubesDbEntries({
    name,
    ip,
    ...(ipv6 ? { ip6: ipv6.ip6, netvmIp6: ipv6.upstreamIp6 } : {}),
    mac: UPLINK_MAC,
    netvmIp: upstreamIp,
    providesNetwork: true,
    clients,
    services: { 'qubes-firewall': true },
    ...(vmConfig ? { vmConfig } : {}),
  });
}

/**
 * How sys-moat boots: a template root image (what `qvm-template` installs from
 * qubes-template-moat-firewall) through PVH GRUB with no kernel from xl, as Qubes boots a
 * template with `kernel=''`; `grub` is the PVH GRUB image Xen starts.
 */
export interface MoatTemplateBoot {
  readonly grub: string;
  readonly rootImage: string;
}

/**
 * A firewall VM of `kind`; for `moat`, `moatImage` is sys-moat's image (default:
 * buildFirewallImage's), booted with the kernel given by xl, or `moatTemplate` its template
 * root image booted through PVH GRUB.
 */
export function firewallVm(
  kind: 'linux' | 'moat',
  name: string,
  ip: string,
  options: {
    readonly moatImage?: VmImage;
    readonly moatTemplate?: MoatTemplateBoot;
    /** Its IPv6 address (the `ipv6` feature; the upstream then needs one too). */
    readonly ip6?: string;
  } = {},
): FirewallVm {
  if (kind === 'moat')
    return new MoatFirewallVm(name, ip, {
      ...(options.moatImage ? { image: options.moatImage } : {}),
      ...(options.moatTemplate ? { template: options.moatTemplate } : {}),
      ...(options.ip6 ? { ip6: options.ip6 } : {}),
    });
  return new LinuxFirewallVm(name, ip, options.ip6);
}

/** The IPv6 keys of a firewall VM's QubesDB: its own address and the upstream's (both needed). */
function firewallIpv6(
  name: string,
  ip6: string | undefined,
  context: FirewallContext,
): { ip6: string; upstreamIp6: string } | undefined {
  if (!ip6) return undefined;
  if (!context.upstream.ip6)
    throw new LabError(name, `has IPv6 address ${ip6} but its upstream has none (the ipv6 feature)`);
  return { ip6, upstreamIp6: context.upstream.ip6 };
}

/** The state a failed probe's report shows of the Linux firewall (each command's output titled). */
const FIREWALL_DIAGNOSTICS = [
  'ip -d link',
  'ip addr',
  'ip route',
  'ip neigh',
  'ls /sys/class/net',
  'grep . /proc/sys/net/ipv4/conf/*/proxy_arp /proc/sys/net/ipv4/conf/*/rp_filter /proc/sys/net/ipv4/ip_forward',
  'nft list ruleset',
]
  // iproute2 by path: busybox sh runs its own `ip` applet for a bare `ip` (vif-script.ts).
  .map((c) => `echo "--- ${c}"; ${c.replace(/^ip /, `${LAB_IP_COMMAND} `)} 2>&1`)
  .join('; ');

/** Each rule commit ends in one of these sys-moat lines: the set in force, or why it blocks. */
export function moatRulesLine(clientIp: string): RegExp {
  const ip = clientIp.replaceAll('.', '\\.');
  return new RegExp(`sys-moat \\w+: (New firewall rules for ${ip}:|.* for ${ip} \\(.*blocking traffic)`);
}

/**
 * sys-moat's line when a client's vif is connected (netback handshake done, engine link made):
 * it names the vif's `ip` key, the IPv4 address and an IPv6 one after it when the client has one.
 */
export function moatClientLine(clientIp: string): RegExp {
  return new RegExp(
    `sys-moat \\w+: vif\\d+\\.\\d+: client ${clientIp.replaceAll('.', '\\.')}( [0-9a-f:]+)? connected`,
  );
}

const MOAT_UPLINK_LINE = /sys-moat \w+: uplink up/;
/** sys-moat's `memory = maxmem` in the lab unless a test says otherwise, MiB. */
const MOAT_MEMORY_MB = 192;
/** The Linux reference firewall's, as startLinuxVm gives the `firewall` role. */
const LINUX_FIREWALL_MEMORY_MB = 192;
/** Under emulation on a loaded machine: boot, a handshake, a rule commit. */
const MOAT_WAIT = { timeoutMs: 600_000 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** How sys-moat is started in the lab (every field optional). */
export interface MoatVmOptions {
  /** sys-moat's image (default: buildFirewallImage's), booted with the kernel given by xl. */
  readonly image?: VmImage;
  /** Its template root image booted through PVH GRUB instead. */
  readonly template?: MoatTemplateBoot;
  /** `memory = maxmem`, MiB (xl's maxmem defaults to memory); default 192. */
  readonly memoryMb?: number;
  /** `qvm-features sys-moat vm-config.<key> <value>`: `/vm-config/<key>` in its QubesDB. */
  readonly vmConfig?: Readonly<Record<string, string>>;
  /** Until the uplink is up (boot under emulation on a loaded machine is slow); default 600 s. */
  readonly upTimeoutMs?: number;
  /** Its IPv6 address (the `ipv6` feature): `/qubes-ip6`, `/qubes-netvm-gateway6`. */
  readonly ip6?: string;
}

/**
 * sys-moat as Qubes runs it in sys-firewall's place: a driver domain (the backend of the
 * clients' vifs, no `xl devd`: its netback does devd's part) with one vif to the upstream,
 * QubesDB as qubesd writes it for a ProxyVM. It says what it does on its console (the Xen
 * console, where a Qubes user reads it too); this class waits for those lines, and reads its
 * `moat.FirewallStats` through a dom0 qrexec daemon started on first use. The one way the lab
 * starts sys-moat (scenarios, the firewall bench, the demo, the lifecycle and memory tests).
 */
export class MoatFirewallVm implements FirewallVm {
  readonly kind = 'moat' as const;
  private context: FirewallContext | undefined;
  private vm: GuestHandle | undefined;
  private id = 0;
  private db: QubesDbService | undefined;
  private statsDaemon: Promise<MoatStats> | undefined;
  /** Clients whose vif is plugged in (sys-moat follows their rules). */
  private readonly plugged = new Set<string>();
  /** The rules last published per client (a commit of the same tree changes nothing, and logs nothing). */
  private readonly published = new Map<string, string>();

  constructor(
    readonly name: string,
    readonly ip: string,
    private readonly options: MoatVmOptions = {},
  ) {}

  get memoryMb(): number {
    return this.options.memoryMb ?? MOAT_MEMORY_MB;
  }

  get ip6(): string | undefined {
    return this.options.ip6;
  }

  /** The domain's console and end (running VM only). */
  get handle(): GuestHandle {
    return this.running().vm;
  }

  get domid(): number {
    this.running();
    return this.id;
  }

  /** dom0's QubesDB daemon serving the VM (to write keys as qubesd does). */
  get qubesdb(): QubesDbService {
    return this.running().db;
  }

  /** The uplink vif as qubesd attaches it (backend: the netvm). */
  uplinkVif(netvm: string): VifSpec {
    return netvmVif(netvm, vifIps(this.ip, this.ip6), UPLINK_MAC);
  }

  private get uplink(): VifSpec {
    return this.uplinkVif(this.context?.upstream.name ?? '');
  }

  async start(context: FirewallContext): Promise<unknown> {
    this.context = context;
    const image = this.options.image ?? (await buildFirewallImage()).image;
    const template = this.options.template;
    const t = performance.now();
    const vm = context.lab.createDomU(image, {
      // a template boots PVH (its template.conf's virt-mode), whatever the scenario's clients use
      type: template ? 'pvh' : context.virtMode,
      name: this.name,
      memoryMb: this.memoryMb,
      driverDomain: true,
      vifs: [this.uplink],
      ...(template ? { pvhGrub: template } : {}),
    });
    this.vm = vm;
    try {
      this.id = await domainId(context.lab, this.name);
      this.db = await serveQubesDb(context.lab, [
        {
          domid: this.id,
          name: this.name,
          entries: firewallQubesDbEntries(
            this.name,
            this.ip,
            context.upstream.ip,
            context.clients,
            this.options.vmConfig,
            firewallIpv6(this.name, this.ip6, context),
          ),
        },
      ]);
      for (const c of context.clients) {
        this.published.set(c.ip, rulesKey(rulesOfFamily(c.rules, 4)));
        if (c.ip6) this.published.set(c.ip6, rulesKey(rulesOfFamily(c.rules, 6)));
      }
      const uplink = await vm.consoleLine(MOAT_UPLINK_LINE, {
        timeoutMs: this.options.upTimeoutMs ?? MOAT_WAIT.timeoutMs,
      });
      return { uplink, uplinkUpMs: Math.round(performance.now() - t) };
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  serving(clientIp: string, clientIp6?: string): Promise<unknown> {
    const vm = this.running().vm;
    const after = vm.lineCount;
    this.plugged.add(clientIp);
    return (async () => {
      const connected = await vm.consoleLine(moatClientLine(clientIp), { ...MOAT_WAIT, after });
      const rules = await vm.consoleLine(moatRulesLine(clientIp), { ...MOAT_WAIT, after });
      // The IPv6 tree is followed from the same moment; its line may come before the IPv4 one.
      const rules6 = clientIp6
        ? { rules6: await vm.consoleLine(moatRulesLine(clientIp6), { ...MOAT_WAIT, after }) }
        : {};
      return { connected, rules, ...rules6 };
    })();
  }

  unplugged(clientIp: string): void {
    this.plugged.delete(clientIp);
  }

  async rules(clientIp: string, rules: ReadonlyMap<number, string>, clientIp6?: string): Promise<unknown> {
    const { vm, db } = this.running();
    const after = vm.lineCount;
    const changed: string[] = [];
    // As reload_firewall_for_vm: the IPv4 tree, then the IPv6 tree, each its own commit.
    for (const [ip, family] of clientTrees(clientIp, clientIp6)) {
      const tree = rulesOfFamily(rules, family);
      if (this.published.get(ip) !== rulesKey(tree)) changed.push(ip);
      this.published.set(ip, rulesKey(tree));
      await db.update({ domid: this.id, commit: ruleCommit(ip, tree) });
    }
    // Nobody follows the tree of an unplugged client (read when its vif is back), and the same
    // tree again changes nothing: no line to wait for.
    if (!this.plugged.has(clientIp)) return { stored: 'applied when its vif connects' };
    if (changed.length === 0) return { unchanged: true };
    const applied: string[] = [];
    for (const ip of changed) applied.push(await vm.consoleLine(moatRulesLine(ip), { ...MOAT_WAIT, after }));
    return { applied: applied.join('\n') };
  }

  async upstreamGone(): Promise<void> {
    // As libxl and qubesd do when the netvm dies: our uplink vif is removed.
    await detachVifs(this.running().context.lab, this.name);
  }

  /** qubesd re-attaches the uplink; sys-moat must reconnect by itself (no command to it). */
  async restart(): Promise<void> {
    const { vm, context } = this.running();
    const after = vm.lineCount;
    await attachVif(context.lab, this.name, this.uplink);
    await vm.consoleLine(MOAT_UPLINK_LINE, { ...MOAT_WAIT, after });
  }

  /** Ends dom0's stats daemon, destroys the domain and ends its QubesDB (bounded, never throws). */
  async stop(): Promise<void> {
    const daemon = this.statsDaemon;
    this.statsDaemon = undefined;
    await daemon?.then((s) => s.stop()).catch(() => undefined);
    if (this.vm && this.context) {
      await this.context.lab
        .exec(['xl', 'destroy', this.name], { timeoutMs: 120_000 })
        .catch(() => undefined);
      await this.vm.finished({ timeoutMs: 120_000 }).catch(() => undefined);
    }
    await this.db?.stop().catch(() => undefined);
  }

  consoleTail(n = 30): string {
    return this.vm?.tail(n) ?? '';
  }

  /** dom0's qrexec daemon for this VM: started on first use, kept until stop. */
  private daemon(): Promise<MoatStats> {
    const { context } = this.running();
    if (!this.statsDaemon) {
      this.statsDaemon = moatStats(context.lab, this.id, this.name);
      this.statsDaemon.catch(() => {
        this.statsDaemon = undefined;
      });
    }
    return this.statsDaemon;
  }

  /** `moat.FirewallStats`, called by dom0. */
  async stats(): Promise<MoatStatsDoc> {
    return (await this.daemon()).read();
  }

  /** Polls the stats until `check` holds (bounded; the last document in the error). */
  async until(
    what: string,
    check: (doc: MoatStatsDoc) => boolean,
    timeoutMs = 300_000,
  ): Promise<MoatStatsDoc> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const doc = await this.stats();
      if (check(doc)) return doc;
      if (Date.now() > deadline)
        throw new LabError(
          this.name,
          `not ${what} within ${timeoutMs} ms; last stats: ${JSON.stringify(doc.network)}\n${this.consoleTail(30)}`,
        );
      await sleep(3000);
    }
  }

  async memoryInUse(): Promise<number> {
    const m = await this.memory();
    return m.memTotal - m.memAvailable;
  }

  async profile<T>(ms: number, during: () => Promise<T>): Promise<{ result: T; profile: ProfileSummary }> {
    const profile = (await this.daemon()).profile(ms);
    profile.catch(() => undefined);
    const result = await during();
    return { result, profile: await profile };
  }

  /** From moat.FirewallStats (/proc/meminfo in its memory section). */
  async memory(): Promise<FirewallVmMemory> {
    const doc = await this.stats();
    const system = doc.memory.system;
    if (!system) throw new LabError(this.name, 'moat.FirewallStats gave no /proc/meminfo figures');
    const { rss, heapUsed, external } = doc.memory;
    return {
      memoryMb: this.memoryMb,
      memTotal: system.memTotal,
      memAvailable: system.memAvailable,
      slab: system.slab,
      node: { rss, heapUsed, external },
    };
  }

  private running(): { vm: GuestHandle; db: QubesDbService; context: FirewallContext } {
    if (!this.vm || !this.db || !this.context)
      throw new LabError(this.name, 'the firewall VM is not running');
    return { vm: this.vm, db: this.db, context: this.context };
  }
}

/**
 * A client's rules as qubesd's reload_firewall_for_vm commits them: the subtree under
 * `/qubes-firewall/<ip>` (keys relative to it), then the base key written as the commit marker.
 */
export function ruleCommit(
  clientIp: string,
  rules: ReadonlyMap<number, string>,
): { base: string; entries: [string, string][] } {
  const base = `/qubes-firewall/${clientIp}`;
  const entries = qubesFirewallEntries(clientIp, rules)
    .filter(([key]) => key !== base)
    .map(([key, value]): [string, string] => [key.slice(base.length + 1), value]);
  return { base, entries };
}

function rulesKey(rules: ReadonlyMap<number, string>): string {
  return JSON.stringify([...rules].sort((a, b) => a[0] - b[0]));
}

/** A client's rule trees in the order reload_firewall_for_vm writes them: IPv4, then IPv6. */
function clientTrees(clientIp: string, clientIp6: string | undefined): [string, 4 | 6][] {
  return clientIp6
    ? [
        [clientIp, 4],
        [clientIp6, 6],
      ]
    : [[clientIp, 4]];
}

/** A vif's `ip` key as libxl writes it from Qubes' libvirt config: the IPv4 address, then the IPv6 one. */
export function vifIps(ip: string, ip6: string | undefined): string {
  return ip6 ? `${ip} ${ip6}` : ip;
}

/** The Linux reference firewall in the lab's Linux image (role `firewall`). */
class LinuxFirewallVm implements FirewallVm {
  readonly kind = 'linux' as const;
  private context: FirewallContext | undefined;
  private vm: LinuxVm | undefined;
  private db: QubesDbService | undefined;
  /** How often each client's rules were handled (the daemon's /qubes-firewall-handled). */
  private readonly handled = new Map<string, number>();

  constructor(
    readonly name: string,
    readonly ip: string,
    readonly ip6?: string,
  ) {}

  private get uplink() {
    const upstream = this.context?.upstream.name ?? '';
    return netvmVif(upstream, vifIps(this.ip, this.ip6), UPLINK_MAC);
  }

  async start(context: FirewallContext): Promise<unknown> {
    this.context = context;
    if (!context.image) throw new LabError(this.name, 'the Linux firewall needs the Linux image');
    this.vm = await startLinuxVm(context.lab, context.image, {
      name: this.name,
      type: context.virtMode,
      args: { role: 'firewall', ip: this.ip, ...(this.ip6 ? { ip6: this.ip6 } : {}) },
      memoryMb: LINUX_FIREWALL_MEMORY_MB,
      vifs: [this.uplink],
      upTimeoutMs: 1_200_000,
    });
    this.db = await serveQubesDb(context.lab, [
      {
        domid: this.vm.domid,
        name: this.name,
        entries: firewallQubesDbEntries(
          this.name,
          this.ip,
          context.upstream.ip,
          context.clients,
          undefined,
          firewallIpv6(this.name, this.ip6, context),
        ),
      },
    ]);
    const started = await this.vm.command<{ clients: { target: string }[] }>(
      { op: 'firewall-start' },
      { timeoutMs: 180_000 },
    );
    for (const c of started.clients) this.handled.set(c.target, 1);
    return started;
  }

  async rules(clientIp: string, rules: ReadonlyMap<number, string>, clientIp6?: string): Promise<unknown> {
    const { vm, db } = this.running();
    const applied: { count: number }[] = [];
    // As reload_firewall_for_vm: the IPv4 tree, then the IPv6 tree, each its own commit.
    for (const [ip, family] of clientTrees(clientIp, clientIp6)) {
      const after = this.handled.get(ip) ?? 0;
      await db.update({ domid: vm.domid, commit: ruleCommit(ip, rulesOfFamily(rules, family)) });
      const done = await vm.command<{ count: number }>(
        { op: 'firewall-handled', target: ip, after, timeoutMs: 120_000 },
        { timeoutMs: 150_000 },
      );
      this.handled.set(ip, done.count);
      applied.push(done);
    }
    return clientIp6 ? applied : applied[0];
  }

  async upstreamGone(): Promise<void> {
    await detachVifs(this.running().context.lab, this.name);
  }

  async restart(): Promise<void> {
    const { vm, context } = this.running();
    await attachVif(context.lab, this.name, this.uplink);
    await vm.command({ op: 'firewall-uplink' }, { timeoutMs: 120_000 });
  }

  async memoryInUse(): Promise<number> {
    const m = await this.memory();
    return m.memTotal - m.memAvailable;
  }

  async memory(): Promise<FirewallVmMemory> {
    const { vm } = this.running();
    const r = await vm.command<{ code: number | null; out: string }>({
      op: 'exec',
      argv: ['cat', '/proc/meminfo'],
    });
    const figures = meminfo(r.out);
    if (!figures)
      throw new LabError(this.name, `no MemTotal/MemAvailable/Slab in /proc/meminfo: ${r.out.slice(0, 200)}`);
    return { memoryMb: LINUX_FIREWALL_MEMORY_MB, ...figures };
  }

  async stop(): Promise<void> {
    await this.vm?.command({ op: 'poweroff' }).catch(() => undefined);
    await this.db?.stop().catch(() => undefined);
  }

  async diagnose(): Promise<string> {
    const { vm } = this.running();
    const shown = await vm.command<{ out: string }>({
      op: 'exec',
      argv: ['sh', '-c', FIREWALL_DIAGNOSTICS],
      timeoutMs: 60_000,
    });
    const hotplug = vm.handle
      .tail(400)
      .split('\n')
      .filter((l) => /xl-devd|vif-firewall/.test(l))
      .slice(-30);
    return `${shown.out}\n--- hotplug (xl devd) lines\n${hotplug.join('\n') || '(none)'}`;
  }

  private running(): { vm: LinuxVm; db: QubesDbService; context: FirewallContext } {
    if (!this.vm || !this.db || !this.context)
      throw new LabError(this.name, 'the firewall VM is not running');
    return { vm: this.vm, db: this.db, context: this.context };
  }
}

/** /proc/meminfo's MemTotal - MemAvailable, bytes (undefined when either is missing). */
export function memInUse(text: string): number | undefined {
  const used = meminfoBytes(text, 'MemTotal') - meminfoBytes(text, 'MemAvailable');
  return Number.isFinite(used) ? used : undefined;
}

/** /proc/meminfo's MemTotal, MemAvailable and Slab, bytes (undefined when one is missing). */
export function meminfo(
  text: string,
): Pick<FirewallVmMemory, 'memTotal' | 'memAvailable' | 'slab'> | undefined {
  const figures = {
    memTotal: meminfoBytes(text, 'MemTotal'),
    memAvailable: meminfoBytes(text, 'MemAvailable'),
    slab: meminfoBytes(text, 'Slab'),
  };
  return Object.values(figures).every(Number.isFinite) ? figures : undefined;
}

/** One /proc/meminfo line's figure in bytes (NaN when missing). */
function meminfoBytes(text: string, key: string): number {
  return Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1]) * 1024;
}
