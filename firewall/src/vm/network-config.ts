/**
 * Everything the VM reads about its place in the network from QubesDB, as qubesd writes it
 * (qubes-core-admin qubes/vm/qubesvm.py `create_qdb_entries`, qubes/vm/mix/net.py):
 * - as a client of the netvm: `/qubes-ip`, `/qubes-gateway`, `/qubes-ip6`, `/qubes-gateway6`,
 *   `/qubes-primary-dns`, `/qubes-secondary-dns` (absent when we have no netvm);
 * - as the netvm of our clients: `/qubes-netvm-gateway` (our address as they see it),
 *   `/qubes-netvm-gateway6`, `/qubes-netvm-primary-dns`, `/qubes-netvm-secondary-dns` (the
 *   virtual DNS servers they are told, DNATed to ours), `/connected-ips`, `/connected-ips6`,
 *   `/mapped-ip/<ip>/visible-ip` and `visible-gateway`.
 * Pure functions of a `read` so they test without a database.
 */
import type { DnsConfig } from '../engine/config.ts';
import { parseIpText, parseIpv4Text, parseIpv6Text } from '../wire/address.ts';

export type ReadKey = (path: string) => string | undefined;

/** Our uplink: present when we have a netvm. */
export interface UplinkAddresses {
  ip4: Uint8Array;
  gateway4: Uint8Array;
  ip6: Uint8Array | undefined;
  gateway6: Uint8Array | undefined;
}

export interface NetworkConfig {
  uplink: UplinkAddresses | undefined;
  /** Our address on client links; `/qubes-netvm-gateway`, else `/qubes-ip`. Undefined: we serve no clients. */
  clientGateway4: Uint8Array | undefined;
  clientGateway6: Uint8Array | undefined;
  /** Our own DNS servers (`/qubes-primary-dns`, `/qubes-secondary-dns`), for the resolver and `specialtarget=dns`. */
  dnsServers: Uint8Array[];
  /** The DNAT of the virtual DNS servers clients use, and our own servers; undefined when neither exists. */
  dns: DnsConfig | undefined;
}

/** Keys whose change means the network configuration must be read again. */
export const NETWORK_KEYS = [
  '/qubes-ip',
  '/qubes-gateway',
  '/qubes-ip6',
  '/qubes-gateway6',
  '/qubes-primary-dns',
  '/qubes-secondary-dns',
  '/qubes-netvm-gateway',
  '/qubes-netvm-gateway6',
  '/qubes-netvm-primary-dns',
  '/qubes-netvm-secondary-dns',
  '/qubes-netvm-primary-dns6',
  '/qubes-netvm-secondary-dns6',
] as const;

const v4 = (read: ReadKey, path: string) => {
  const value = read(path)?.trim();
  return value ? parseIpv4Text(value) : undefined;
};
const v6 = (read: ReadKey, path: string) => {
  const value = read(path)?.trim();
  return value ? parseIpv6Text(value) : undefined;
};
const any = (read: ReadKey, path: string) => {
  const value = read(path)?.trim();
  return value ? parseIpText(value) : undefined;
};

export function readNetworkConfig(read: ReadKey): NetworkConfig {
  const ip4 = v4(read, '/qubes-ip');
  const gateway4 = v4(read, '/qubes-gateway');
  const uplink: UplinkAddresses | undefined =
    ip4 && gateway4
      ? { ip4, gateway4, ip6: v6(read, '/qubes-ip6'), gateway6: v6(read, '/qubes-gateway6') }
      : undefined;
  const dnsServers = ['/qubes-primary-dns', '/qubes-secondary-dns']
    .map((p) => any(read, p))
    .filter((a): a is Uint8Array => a !== undefined);
  const virtual = [
    '/qubes-netvm-primary-dns',
    '/qubes-netvm-secondary-dns',
    '/qubes-netvm-primary-dns6',
    '/qubes-netvm-secondary-dns6',
  ]
    .map((p) => any(read, p))
    .filter((a): a is Uint8Array => a !== undefined);
  return {
    uplink,
    clientGateway4: v4(read, '/qubes-netvm-gateway') ?? ip4,
    clientGateway6: v6(read, '/qubes-netvm-gateway6'),
    dnsServers,
    // Also without virtual servers: the engine's dnsServers serve `specialtarget=dns`.
    dns: virtual.length > 0 || dnsServers.length > 0 ? { virtual, upstream: dnsServers } : undefined,
  };
}

/** `/connected-ips` and `/connected-ips6`: space-separated addresses; bad tokens are skipped and named. */
export function readConnectedIps(read: ReadKey): { ips4: Uint8Array[]; ips6: Uint8Array[]; bad: string[] } {
  const bad: string[] = [];
  const parse = (path: string, one: (s: string) => Uint8Array | undefined) => {
    const out: Uint8Array[] = [];
    for (const token of (read(path) ?? '').slice(0, 65_536).split(/\s+/)) {
      if (!token) continue;
      const a = one(token);
      if (a) out.push(a);
      else bad.push(`${path}: ${token.slice(0, 64)}`);
    }
    return out;
  };
  return { ips4: parse('/connected-ips', parseIpv4Text), ips6: parse('/connected-ips6', parseIpv6Text), bad };
}

/** `/mapped-ip/<ip>/visible-ip` and `visible-gateway` for a client (Qubes' DispVM address mapping). */
export function readMappedIp(
  read: ReadKey,
  ip: string,
): { visibleIp4: Uint8Array | undefined; visibleGateway4: Uint8Array | undefined } {
  return {
    visibleIp4: v4(read, `/mapped-ip/${ip}/visible-ip`),
    visibleGateway4: v4(read, `/mapped-ip/${ip}/visible-gateway`),
  };
}

export function sameAddress(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
