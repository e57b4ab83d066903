/**
 * The QubesDB keys qubesd writes for a VM before it starts, for the lab's topologies.
 * Source: QubesOS/qubes-core-admin at 1ad5f9b84dc1eae76d1b885d009f3e84f5503740:
 * - qubes/vm/qubesvm.py `create_qdb_entries`: /name, /type, /default-user,
 *   /qubes-vm-updateable, /qubes-vm-persistence, /qubes-debug-mode, /qubes-base-template,
 *   /qubes-random-seed; for a VM that provides network /qubes-netvm-network,
 *   /qubes-netvm-gateway, /qubes-netvm-netmask, /qubes-netvm-{primary,secondary}-dns; for a VM
 *   with a netvm /qubes-mac, /qubes-ip, /qubes-netmask, /qubes-gateway,
 *   /qubes-{primary,secondary}-dns; /qubes-timezone, /qubes-block-devices, /qubes-usb-devices.
 * - qubes/vm/mix/net.py: addresses (10.137.0.<qid>, DispVMs 10.138.<dispid>), netmask
 *   255.255.255.255, DNS 10.139.1.1 and 10.139.1.2, a netvm's gateway is its own address;
 *   with the `ipv6` feature: /qubes-netvm-gateway6 (a VM that provides network: its own IPv6
 *   address), /qubes-ip6 and /qubes-gateway6 (a VM with a netvm);
 *   in the netvm: /connected-ips and /connected-ips6 (`reload_connected_ips`),
 *   /mapped-ip/<ip>/visible-ip and visible-gateway (`set_mapped_ip_info_for_vm`),
 *   /qubes-firewall/<ip>/policy and /NNNN, then /qubes-firewall/<ip> written empty last
 *   (`reload_firewall_for_vm`, entries from qubes/firewall.py `qdb_entries`), and the same
 *   for /qubes-firewall/<ip6> when the client has an IPv6 address (`dst4` rules left out
 *   there, `dst6` rules left out of the IPv4 tree).
 * - qubes/ext/r3compatibility.py: /qubes-vm-type; qubes/ext/services.py: /qubes-service/<name>;
 *   qubes/ext/vm_config.py: /vm-config/<key> (from `qvm-features <vm> vm-config.<key>`).
 */
import { createHash } from 'node:crypto';
import { rulesOfFamily } from './scenario.ts';

export const QUBES_NETMASK = '255.255.255.255';
export const QUBES_DNS_SERVERS = ['10.139.1.1', '10.139.1.2'] as const;

export interface QubesVmSpec {
  readonly name: string;
  /** qubesd's class name (`/type`): AppVM, DispVM, StandaloneVM, TemplateVM. */
  readonly klass?: 'AppVM' | 'DispVM' | 'StandaloneVM' | 'TemplateVM';
  readonly template?: string;
  /** Its own address (given when it has a netvm or provides network). */
  readonly ip?: string;
  /** Its IPv6 address (the `ipv6` feature, on it or its netvm). */
  readonly ip6?: string;
  readonly mac?: string;
  /** The netvm's address (its gateway), when the VM has a netvm. */
  readonly netvmIp?: string;
  /** The netvm's IPv6 address (its IPv6 gateway), when both have one. */
  readonly netvmIp6?: string;
  readonly providesNetwork?: boolean;
  /** For a VM that provides network: its clients, with their rule lines by number. */
  readonly clients?: readonly QubesClientSpec[];
  readonly services?: Readonly<Record<string, boolean>>;
  readonly vmConfig?: Readonly<Record<string, string>>;
}

/** A client of a VM that provides network: its addresses and its whole rule list by number. */
export interface QubesClientSpec {
  readonly ip: string;
  readonly ip6?: string;
  readonly rules: ReadonlyMap<number, string>;
}

/**
 * The rule trees of a client as reload_firewall_for_vm writes them: the IPv4 tree, then the
 * IPv6 tree when the client has an IPv6 address, each with its family's rules.
 */
export function clientFirewallEntries(client: QubesClientSpec): [string, string][] {
  return [
    ...qubesFirewallEntries(client.ip, rulesOfFamily(client.rules, 4)),
    ...(client.ip6 ? qubesFirewallEntries(client.ip6, rulesOfFamily(client.rules, 6)) : []),
  ];
}

/** `/qubes-firewall/<ip>/...` as reload_firewall_for_vm writes them (policy, rules, then the base key). */
export function qubesFirewallEntries(ip: string, rules: ReadonlyMap<number, string>): [string, string][] {
  const base = `/qubes-firewall/${ip}`;
  const entries: [string, string][] = [[`${base}/policy`, 'drop']];
  for (const [n, line] of [...rules].sort(([a], [b]) => a - b))
    entries.push([`${base}/${String(n).padStart(4, '0')}`, line]);
  entries.push([base, '']);
  return entries;
}

/** The VM type r3compatibility.py reports. */
function vmType(vm: QubesVmSpec): string {
  if (vm.klass === 'TemplateVM') return 'TemplateVM';
  if (vm.providesNetwork) return vm.netvmIp ? 'ProxyVM' : 'NetVM';
  return 'AppVM';
}

/** Every key qubesd writes into this VM's QubesDB, in the order it writes them. */
export function qubesDbEntries(vm: QubesVmSpec): [string, string][] {
  const klass = vm.klass ?? 'AppVM';
  const e: [string, string][] = [
    ['/name', vm.name],
    ['/type', klass],
    ['/default-user', 'user'],
    ['/qubes-vm-updateable', klass === 'TemplateVM' || klass === 'StandaloneVM' ? 'True' : 'False'],
    ['/qubes-vm-persistence', klass === 'TemplateVM' || klass === 'StandaloneVM' ? 'full' : 'rw-only'],
    ['/qubes-debug-mode', '0'],
    ['/qubes-base-template', vm.template ?? ''],
    // qubesd writes 64 random bytes; the lab derives them from the name so runs repeat.
    ['/qubes-random-seed', createHash('sha512').update(`moat-lab ${vm.name}`).digest('base64')],
  ];
  if (vm.providesNetwork && vm.ip) {
    e.push(
      ['/qubes-netvm-network', vm.ip],
      ['/qubes-netvm-gateway', vm.ip],
      ...(vm.ip6 ? [['/qubes-netvm-gateway6', vm.ip6] as [string, string]] : []),
      ['/qubes-netvm-netmask', QUBES_NETMASK],
    );
    e.push(
      ['/qubes-netvm-primary-dns', QUBES_DNS_SERVERS[0]],
      ['/qubes-netvm-secondary-dns', QUBES_DNS_SERVERS[1]],
    );
  }
  if (vm.netvmIp && vm.ip) {
    if (vm.mac) e.push(['/qubes-mac', vm.mac]);
    e.push(['/qubes-ip', vm.ip], ['/qubes-netmask', QUBES_NETMASK], ['/qubes-gateway', vm.netvmIp]);
    e.push(['/qubes-primary-dns', QUBES_DNS_SERVERS[0]], ['/qubes-secondary-dns', QUBES_DNS_SERVERS[1]]);
    if (vm.ip6) e.push(['/qubes-ip6', vm.ip6]);
    if (vm.ip6 && vm.netvmIp6) e.push(['/qubes-gateway6', vm.netvmIp6]);
  }
  e.push(['/qubes-timezone', 'UTC'], ['/qubes-block-devices', ''], ['/qubes-usb-devices', '']);
  e.push(['/qubes-vm-type', vmType(vm)]);
  for (const [service, on] of Object.entries(vm.services ?? {}))
    e.push([`/qubes-service/${service}`, on ? '1' : '0']);
  for (const [key, value] of Object.entries(vm.vmConfig ?? {})) e.push([`/vm-config/${key}`, value]);
  if (vm.providesNetwork) {
    const clients = vm.clients ?? [];
    e.push(
      ['/connected-ips', clients.map((c) => c.ip).join(' ')],
      ['/connected-ips6', clients.flatMap((c) => c.ip6 ?? []).join(' ')],
    );
    for (const c of clients) {
      e.push([`/mapped-ip/${c.ip}/visible-ip`, c.ip]);
      if (vm.ip) e.push([`/mapped-ip/${c.ip}/visible-gateway`, vm.ip]);
      e.push(...clientFirewallEntries(c));
    }
  }
  return e;
}
