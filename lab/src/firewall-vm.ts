/**
 * The firewall VM of a scenario: a domU between the clients and the upstream netvm, in
 * sys-firewall's place (a ProxyVM: netfront to its netvm, the backend of its clients' vifs).
 * One interface for each kind; `linux` is the Linux reference firewall (linux-firewall/ in
 * the Linux image's `firewall` role); `moat` (sys-moat) plugs in beside it once its VM
 * exists.
 */
import type { VmImage } from '@moat/unikernel';
import { LabError } from './errors.ts';
import type { Lab } from './lab.ts';
import { qubesDbEntries, qubesFirewallEntries } from './qubesdb-keys.ts';
import {
  attachVif,
  detachVif,
  type LinuxVm,
  listVifs,
  netvmVif,
  type QubesDbService,
  qubesMac,
  serveQubesDb,
  startLinuxVm,
} from './topology.ts';

export interface FirewallContext {
  readonly lab: Lab;
  readonly image: VmImage;
  readonly virtMode: 'pv' | 'pvh';
  /** The running netvm (its QubesDB served). */
  readonly upstream: { readonly name: string; readonly ip: string };
  /** The clients' addresses and rules, as qubesd writes them into the firewall's QubesDB. */
  readonly clients: readonly { readonly ip: string; readonly rules: ReadonlyMap<number, string> }[];
}

export interface FirewallVm {
  readonly kind: 'linux' | 'moat';
  /** The domain's name: the backend of the clients' vifs. */
  readonly name: string;
  readonly ip: string;
  /** Starts the VM on the running upstream with its QubesDB; resolves once every client's rules are in force. */
  start(context: FirewallContext): Promise<unknown>;
  /** Publishes a client's new rules as qubesd does; resolves once the VM applied them (what it did). */
  rules(clientIp: string, rules: ReadonlyMap<number, string>): Promise<unknown>;
  /** The upstream was destroyed: the uplink vif goes, as libxl removes it. */
  upstreamGone(): Promise<void>;
  /** The upstream runs again: the uplink comes back (qubesd re-attaches it) and is configured. */
  restart(): Promise<void>;
  /** Powers the VM off and ends its QubesDB. */
  stop(): Promise<void>;
  /** Memory in use in the VM (/proc/meminfo MemTotal - MemAvailable), bytes. */
  memoryInUse?(): Promise<number>;
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
): [string, string][] {
  return qubesDbEntries({
    name,
    ip,
    mac: UPLINK_MAC,
    netvmIp: upstreamIp,
    providesNetwork: true,
    clients,
    services: { 'qubes-firewall': true },
  });
}

export function firewallVm(kind: 'linux' | 'moat', name: string, ip: string): FirewallVm {
  if (kind === 'moat')
    throw new LabError('scenario', 'firewall "moat" is not available yet: the sys-moat VM needs netif');
  return new LinuxFirewallVm(name, ip);
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
  ) {}

  private get uplink() {
    const upstream = this.context?.upstream.name ?? '';
    return netvmVif(upstream, this.ip, UPLINK_MAC);
  }

  async start(context: FirewallContext): Promise<unknown> {
    this.context = context;
    this.vm = await startLinuxVm(context.lab, context.image, {
      name: this.name,
      type: context.virtMode,
      args: { role: 'firewall', ip: this.ip },
      vifs: [this.uplink],
    });
    this.db = await serveQubesDb(context.lab, [
      {
        domid: this.vm.domid,
        name: this.name,
        entries: firewallQubesDbEntries(this.name, this.ip, context.upstream.ip, context.clients),
      },
    ]);
    const started = await this.vm.command<{ clients: { target: string }[] }>(
      { op: 'firewall-start' },
      { timeoutMs: 180_000 },
    );
    for (const c of started.clients) this.handled.set(c.target, 1);
    return started;
  }

  async rules(clientIp: string, rules: ReadonlyMap<number, string>): Promise<unknown> {
    const { vm, db } = this.running();
    const base = `/qubes-firewall/${clientIp}`;
    const entries = qubesFirewallEntries(clientIp, rules)
      .filter(([key]) => key !== base)
      .map(([key, value]): [string, string] => [key.slice(base.length + 1), value]);
    const after = this.handled.get(clientIp) ?? 0;
    await db.update({ domid: vm.domid, commit: { base, entries } });
    const applied = await vm.command<{ count: number }>(
      { op: 'firewall-handled', target: clientIp, after, timeoutMs: 120_000 },
      { timeoutMs: 150_000 },
    );
    this.handled.set(clientIp, applied.count);
    return applied;
  }

  async upstreamGone(): Promise<void> {
    const { context } = this.running();
    for (const device of await listVifs(context.lab, this.name))
      await detachVif(context.lab, this.name, device);
  }

  async restart(): Promise<void> {
    const { vm, context } = this.running();
    await attachVif(context.lab, this.name, this.uplink);
    await vm.command({ op: 'firewall-uplink' }, { timeoutMs: 120_000 });
  }

  async memoryInUse(): Promise<number> {
    const { vm } = this.running();
    const r = await vm.command<{ code: number | null; out: string }>({
      op: 'exec',
      argv: ['cat', '/proc/meminfo'],
    });
    const used = memInUse(r.out);
    if (used === undefined)
      throw new LabError(this.name, `no MemTotal/MemAvailable in /proc/meminfo: ${r.out.slice(0, 200)}`);
    return used;
  }

  async stop(): Promise<void> {
    await this.vm?.command({ op: 'poweroff' }).catch(() => undefined);
    await this.db?.stop().catch(() => undefined);
  }

  private running(): { vm: LinuxVm; db: QubesDbService; context: FirewallContext } {
    if (!this.vm || !this.db || !this.context)
      throw new LabError(this.name, 'the firewall VM is not running');
    return { vm: this.vm, db: this.db, context: this.context };
  }
}

/** /proc/meminfo's MemTotal - MemAvailable, bytes (undefined when either is missing). */
export function memInUse(meminfo: string): number | undefined {
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(meminfo)?.[1]);
  const used = kb('MemTotal') - kb('MemAvailable');
  return Number.isFinite(used) ? used * 1024 : undefined;
}
