/**
 * The lab's Linux reference firewall: a re-creation (not a copy) of what a Qubes sys-firewall
 * does with nftables, from the same QubesDB keys. Sources, all QubesOS/qubes-core-agent-linux
 * at a37fac93dca6448184ea32af1c86d018aacbbe9c:
 * - qubesagent/firewall.py (`NftablesWorker`): the `qubes-firewall` tables, one chain per
 *   client source address, rule translation, `/connected-ips` anti-spoofing, drop-all when a
 *   client's rules cannot be read (a `dsthost` that does not resolve among them), and the
 *   conntrack purge after a change (`is_blocked`);
 * - network/qubes-ipv4.nft, qubes-antispoof.nft, qubes-ipv6-disabled.nft: the base tables;
 * - network/qubes-setup-dnat-to-ns: DNAT of the virtual DNS servers to the VM's resolvers;
 * - network/vif-route-qubes: what a client vif gets when it comes up.
 * The text firewall.py would give nft is reproduced exactly for the same input (fixtures/ holds
 * captures of the real daemon; translate.test.ts compares); docs/firewall-behaviour.md lists
 * the behaviour.
 */

export type Family = 4 | 6;

/** One rule as firewall.py's read_rules returns it: option -> value (`action` always set). */
export type FirewallRule = Readonly<Record<string, string>>;

/** The rules of a client could not be read or translated; the client gets drop-all. */
export class RuleParseError extends Error {
  override name = 'RuleParseError';
}

/** Resolves a `dsthost` as getaddrinfo would in the firewall VM (throws when it cannot). */
export type HostResolver = (host: string, family: Family) => Promise<readonly string[]>;

const SUPPORTED_OPTIONS = new Set([
  'action',
  'proto',
  'dst4',
  'dst6',
  'dsthost',
  'dstports',
  'specialtarget',
  'icmptype',
]);

const TABLE = 'qubes-firewall';
const familyName = (family: Family) => (family === 6 ? 'ip6' : 'ip');

export const isIp6 = (addr: string) => addr.includes(':');

/** `qbs-10-137-0-12`: the chain of a source address. */
export function chainForAddr(addr: string): string {
  return `qbs-${addr.replaceAll('.', '-').replaceAll(':', '-')}`;
}

/** The `qubes-firewall` tables of both families (firewall.py `init`). */
export function initTables(): string {
  return ([4, 6] as const)
    .map(
      (n) =>
        `table ${familyName(n)} ${TABLE} {\n` +
        '  set dns-addr {\n' +
        `    type ipv${n}_addr\n` +
        '  }\n' +
        '  chain qubes-forward {\n' +
        '  }\n' +
        '  chain forward {\n' +
        '    type filter hook forward priority 0;\n' +
        '    policy drop;\n' +
        '    ct state established,related accept\n' +
        '    meta iifname != "vif*" accept\n' +
        '    jump qubes-forward\n' +
        '  }\n' +
        '  chain prerouting {\n' +
        '    type filter hook prerouting priority -300;\n' +
        '    policy accept;\n' +
        '  }\n' +
        '  chain postrouting {\n' +
        '    type filter hook postrouting priority -300;\n' +
        '    policy accept;\n' +
        '  }\n' +
        '}\n',
    )
    .join('');
}

/** A client's chain and the jump to it (firewall.py `create_chain`, once per source). */
export function createChain(addr: string, family: Family): string {
  const f = familyName(family);
  return (
    `table ${f} ${TABLE} {\n` +
    `  chain ${chainForAddr(addr)} {\n` +
    '  }\n' +
    '  chain qubes-forward {\n' +
    `    ${f} saddr ${addr} jump ${chainForAddr(addr)}\n` +
    '  }\n' +
    '}\n'
  );
}

/** Anti-spoofing from `/connected-ips(6)` (firewall.py `update_connected_ips`). */
export function connectedIpsRules(ips: readonly string[], family: Family): string {
  const f = familyName(family);
  let out = `flush chain ${f} ${TABLE} prerouting\nflush chain ${f} ${TABLE} postrouting\n`;
  if (ips.length > 0) {
    const set = `{${ips.join(', ')}}`;
    out +=
      `table ${f} ${TABLE} {\n` +
      '  chain prerouting {\n' +
      `    iifname != "vif*" ${f} saddr ${set} drop\n` +
      '  }\n' +
      '  chain postrouting {\n' +
      `    oifname != "vif*" ${f} daddr ${set} drop\n` +
      '  }\n' +
      '}\n';
  }
  return out;
}

/** `/connected-ips` as firewall.py splits it (whitespace-separated; missing key = none). */
export function connectedIps(value: string | undefined): string[] {
  return (value ?? '').split(/\s+/).filter(Boolean);
}

/**
 * A client's rules from a multiread of `/qubes-firewall/<target>/` (full paths), sorted by
 * number, the policy appended (firewall.py `read_rules`). Where firewall.py would raise a
 * Python error other than RuleParseError (a token without exactly one `=`), this raises
 * RuleParseError too: the client is blocked rather than the daemon stopping.
 */
export function readRules(entries: Iterable<readonly [string, string]>, target: string): FirewallRule[] {
  const prefix = `/qubes-firewall/${target}/`;
  const byKey = new Map<string, string>();
  for (const [path, value] of entries) {
    if (!path.startsWith(prefix)) continue;
    const key = path.slice(prefix.length).split('/')[0] ?? '';
    byKey.set(key, value);
  }
  const policy = byKey.get('policy');
  if (policy === undefined) throw new RuleParseError("No 'policy' defined");
  byKey.delete('policy');
  const rules: FirewallRule[] = [];
  // Python's sorted() on the keys: plain string order.
  for (const key of [...byKey.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
    const line = byKey.get(key) ?? '';
    if (!/^\d{4}$/.test(key)) throw new RuleParseError(`Unexpected non-rule found: ${key}=${line}`);
    const rule: Record<string, string> = {};
    for (const element of line.split(' ')) {
      const parts = element.split('=');
      if (parts.length !== 2) throw new RuleParseError(`Rule '${line}' has a malformed element '${element}'`);
      rule[parts[0] as string] = parts[1] as string;
    }
    if (!('action' in rule)) throw new RuleParseError(`Rule '${line}' lack action`);
    rules.push(rule);
  }
  rules.push({ action: policy });
  return rules;
}

export interface PreparedRules {
  /** What firewall.py gives `nft -f /dev/stdin` for this client. */
  readonly nft: string;
  /** dsthost -> the `<ip>/32` (or /128) strings it resolved to, in resolver order. */
  readonly dns: ReadonlyMap<string, readonly string[]>;
}

/**
 * A client's rules as nft input (firewall.py `prepare_rules`): the DNS server set refreshed,
 * the chain flushed and refilled, atomically. `dnsServers` are the firewall VM's own
 * resolv.conf nameservers of that family (in sys-firewall 10.139.1.1 and .2).
 */
export async function prepareRules(
  chain: string,
  rules: readonly FirewallRule[],
  family: Family,
  dnsServers: readonly string[],
  resolve: HostResolver,
): Promise<PreparedRules> {
  const ipMatch = familyName(family);
  const fullmask = family === 6 ? '/128' : '/32';
  const nftRules: string[] = [];
  const dns = new Map<string, string[]>();
  for (const rule of rules) {
    const unsupported = Object.keys(rule).filter((k) => !SUPPORTED_OPTIONS.has(k));
    if (unsupported.length > 0)
      throw new RuleParseError(`Unsupported rule option(s): ${unsupported.join(', ')}`);
    if ('dst4' in rule && family === 6) throw new RuleParseError('IPv4 rule found for IPv6 address');
    if ('dst6' in rule && family === 4) throw new RuleParseError('dst6 rule found for IPv4 address');
    let action: string;
    if (rule.action === 'accept') action = 'accept';
    else if (rule.action === 'drop')
      action = `reject with icmp${family === 6 ? 'v6' : ''} type admin-prohibited`;
    else throw new RuleParseError(`Invalid rule action ${rule.action}`);

    let match = '';
    const proto = rule.proto;
    if (proto !== undefined)
      match += family === 4 ? ` ip protocol ${proto}` : ` ip6 nexthdr ${proto === 'icmp' ? 'icmpv6' : proto}`;
    if (rule.dst4 !== undefined) match += ` ip daddr ${rule.dst4}`;
    else if (rule.dst6 !== undefined) match += ` ip6 daddr ${rule.dst6}`;
    else if (rule.dsthost !== undefined) {
      let addresses: readonly string[];
      try {
        addresses = await resolve(rule.dsthost, family);
      } catch (error) {
        throw new RuleParseError(`Failed to resolve ${rule.dsthost}: ${(error as Error).message}`);
      }
      if (addresses.length === 0) throw new RuleParseError(`Failed to resolve ${rule.dsthost}: no address`);
      const hosts = [...new Set(addresses.map((a) => a + fullmask))];
      match += ` ${ipMatch} daddr { ${hosts.join(', ')} }`;
      dns.set(rule.dsthost, hosts);
    }
    let dstports: string | undefined;
    if (rule.dstports !== undefined) {
      const parts = rule.dstports.split('-');
      dstports = new Set(parts).size === 1 ? parts[0] : rule.dstports;
    }
    if (rule.specialtarget === 'dns') {
      // A DNS rule for other ports can never match: firewall.py leaves it out.
      if (dstports !== undefined && dstports !== '53') continue;
      dstports = '53';
      match += ` ${ipMatch} daddr @dns-addr`;
    }
    if (rule.icmptype !== undefined)
      match += family === 4 ? ` icmp type ${rule.icmptype}` : ` icmpv6 type ${rule.icmptype}`;
    if (dstports !== undefined) {
      // nft has no "tcp dport x or udp dport x": one rule per protocol.
      if (proto === undefined) {
        nftRules.push(`${match} tcp dport ${dstports} ${action}`);
        nftRules.push(`${match} udp dport ${dstports} ${action}`);
      } else nftRules.push(`${match} ${proto} dport ${dstports} ${action}`);
    } else nftRules.push(`${match} ${action}`);
  }
  const f = familyName(family);
  const nft =
    `flush set ${f} ${TABLE} dns-addr\n` +
    `${dnsServers.length === 0 ? '#' : ''}add element ${f} ${TABLE} dns-addr { ${dnsServers.join(', ')} }\n` +
    `flush chain ${f} ${TABLE} ${chain}\n` +
    `table ${f} ${TABLE} {\n` +
    `  chain ${chain} {\n` +
    `   ${nftRules.join('\n   ')}\n` +
    '  }\n' +
    '}\n';
  return { nft, dns };
}

/** The outcome of applying one client's rules (firewall.py `handle_addr`). */
export interface ClientRules {
  readonly target: string;
  readonly family: Family;
  /** The rules in force (drop-all after an error). */
  readonly rules: readonly FirewallRule[];
  readonly nft: string;
  readonly dns: ReadonlyMap<string, readonly string[]>;
  /** Why the client was blocked (RuleParseError's message), if it was. */
  readonly error?: string;
}

const DROP_ALL: readonly FirewallRule[] = [{ action: 'drop' }];

/** Reads and translates one client's rules; a RuleParseError blocks the client (drop-all). */
export async function clientRules(
  entries: Iterable<readonly [string, string]>,
  target: string,
  dnsServers: readonly string[],
  resolve: HostResolver,
): Promise<ClientRules> {
  const family: Family = isIp6(target) ? 6 : 4;
  const chain = chainForAddr(target);
  const servers = dnsServers.filter((s) => isIp6(s) === (family === 6));
  try {
    const rules = readRules(entries, target);
    const prepared = await prepareRules(chain, rules, family, servers, resolve);
    return { target, family, rules, ...prepared };
  } catch (error) {
    if (!(error instanceof RuleParseError)) throw error;
    const prepared = await prepareRules(chain, DROP_ALL, family, servers, resolve);
    return { target, family, rules: DROP_ALL, ...prepared, error: error.message };
  }
}

/** The clients with rules in QubesDB (firewall.py `list_targets`). */
export function listTargets(paths: Iterable<string>): string[] {
  const targets = new Set<string>();
  for (const path of paths) {
    const m = /^\/qubes-firewall\/([^/]+)/.exec(path);
    if (m?.[1]) targets.add(m[1]);
  }
  return [...targets];
}

/** A tracked connection of a client: protocol, destination, destination port. */
export interface Connection {
  readonly proto: string;
  readonly dst: string;
  readonly dport: string;
}

function inNetwork(addr: string, cidr: string): boolean {
  const [net, lenText] = cidr.split('/');
  if (!net || isIp6(net) !== isIp6(addr)) return false;
  if (isIp6(addr)) return prefix6(addr, net, Number(lenText ?? 128));
  const n = (a: string) => a.split('.').reduce((x, o) => x * 256 + Number(o), 0);
  const len = Number(lenText ?? 32);
  const size = 2 ** (32 - len);
  return Math.floor(n(addr) / size) === Math.floor(n(net) / size);
}

function expand6(a: string): string {
  const [head = '', tail = ''] = a.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const fill = a.includes('::') ? Array(8 - h.length - t.length).fill('0') : [];
  return [...h, ...fill, ...t].map((g) => g.padStart(4, '0')).join('');
}

function prefix6(addr: string, net: string, len: number): boolean {
  const bits = (hex: string) =>
    [...hex].map((c) => Number.parseInt(c, 16).toString(2).padStart(4, '0')).join('');
  return bits(expand6(addr)).slice(0, len) === bits(expand6(net)).slice(0, len);
}

/**
 * Whether the new rules forbid an existing connection (firewall.py `is_blocked`: first match,
 * blocked by default), so the daemon deletes its conntrack entry. Port ranges compare as
 * strings there (`'1000' <= '443'` is false); copied as is, it only matters for ranges
 * whose bounds have different lengths.
 */
export function isBlocked(
  rules: readonly FirewallRule[],
  con: Connection,
  dns: ReadonlyMap<string, readonly string[]>,
  dnsServers: readonly string[],
): boolean {
  const family: Family = isIp6(con.dst) ? 6 : 4;
  const servers = dnsServers.filter((s) => isIp6(s) === (family === 6));
  const fullmask = family === 6 ? '/128' : '/32';
  for (const rule of rules) {
    if (rule.proto && rule.proto !== con.proto) continue;
    if (rule.dstports) {
      if (rule.dstports.includes('-')) {
        const [lo = '', hi = ''] = rule.dstports.split('-');
        if (!(lo <= con.dport && con.dport <= hi)) continue;
      } else if (con.dport !== rule.dstports) continue;
    }
    if ((family === 4 && rule.dst6) || (family === 6 && rule.dst4)) continue;
    const dst = family === 6 ? rule.dst6 : rule.dst4;
    if (dst) {
      if (!inNetwork(con.dst, dst)) continue;
    } else if (rule.dsthost) {
      if (!(dns.get(rule.dsthost) ?? []).includes(`${con.dst}${fullmask}`)) continue;
    }
    if (rule.specialtarget === 'dns') {
      if (Number(con.dport) !== 53 || !servers.includes(con.dst)) continue;
    }
    return rule.action === 'drop';
  }
  return true;
}

/** `conntrack -L` lines -> (proto, dst, dport) of the original direction (firewall.py). */
export function parseConntrackList(text: string): Connection[] {
  const seen = new Map<string, Connection>();
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const proto = fields[0];
    let dst: string | undefined;
    let dport: string | undefined;
    for (const f of fields) {
      if (f.startsWith('dst=')) dst = f.slice(4);
      else if (f.startsWith('dport=')) {
        dport = f.slice(6);
        break;
      }
    }
    if (!proto || !dst || !dport) continue;
    seen.set(`${proto} ${dst} ${dport}`, { proto, dst, dport });
  }
  return [...seen.values()];
}

/** The postrouting chain of both families' `qubes` tables: masquerade all but toward clients and lo. */
const MASQUERADE_CHAIN = `   chain postrouting {
      type nat hook postrouting priority srcnat; policy accept;
      oifgroup 2 accept
      oif lo accept
      masquerade
   }
`;

/** The forward chain of both families' `qubes` tables (nothing new toward a vif) and the users' chains. */
const FORWARD_CHAINS = `   chain forward {
      type filter hook forward priority filter; policy accept;
      jump custom-forward
      ct state invalid counter drop
      ct state related,established accept
      oifgroup 2 counter drop
   }
   chain custom-input {}
   chain custom-forward {}
`;

/**
 * The base tables a Qubes network VM loads at boot (network/qubes-ipv4.nft and
 * qubes-antispoof.nft): masquerade to the
 * uplink, nothing new toward a vif (client isolation), the (vif, address) pairs of
 * anti-spoofing, pings to the firewall accepted and the rest from clients rejected.
 */
export function baseTables(): string {
  const v4 = `table ip qubes {
   set downstream {
      type ipv4_addr
   }
   set allowed {
      type ifname . ipv4_addr
   }
   chain prerouting {
      type filter hook prerouting priority raw; policy accept;
      iifgroup 2 goto antispoof
      ip saddr @downstream counter drop
   }
   chain antispoof {
      iifname . ip saddr @allowed accept
      counter drop
   }
${MASQUERADE_CHAIN}   chain input {
      type filter hook input priority filter; policy drop;
      jump custom-input
      ct state invalid counter drop
      iifgroup 2 meta l4proto udp udp dport 68 counter drop
      ct state related,established accept
      iifgroup 2 meta l4proto icmp accept
      iif lo accept
      iifgroup 2 counter reject with icmp type host-prohibited
      counter
   }
${FORWARD_CHAINS}}
`;
  const v6spoof = `table ip6 qubes {
   set downstream {
      type ipv6_addr
   }
   set allowed {
      type ifname . ipv6_addr
   }
   chain antispoof {
      iifname . ip6 saddr @allowed accept
      counter drop
   }
   chain prerouting {
      type filter hook prerouting priority raw; policy accept;
      iifgroup 2 goto antispoof
      ip6 saddr @downstream counter drop
   }
}
`;
  return v4 + v6spoof;
}

/**
 * The IPv6 base table of a VM with IPv6 addresses (network/qubes-ipv6.nft, loaded by
 * qubes-iptables when `/qubes-ip6` or `/qubes-netvm-gateway6` exists), beside the anti-spoofing
 * part of baseTables: masquerade to the uplink, nothing new toward a vif (client isolation), and
 * from clients only ICMPv6 to the VM itself (but router adverts and redirects), anything else
 * answered admin-prohibited.
 */
export function ipv6Tables(): string {
  return `table ip6 qubes {
${MASQUERADE_CHAIN}   chain _icmpv6 {
      meta l4proto != ipv6-icmp counter reject with icmpv6 type admin-prohibited
      icmpv6 type { nd-router-advert, nd-redirect } counter drop
      accept
   }
   chain input {
      type filter hook input priority filter; policy drop;
      jump custom-input
      ct state invalid counter drop
      ct state related,established accept
      iifgroup 2 goto _icmpv6
      iif lo accept
      meta l4proto udp ip6 saddr fe80::/64 ip6 daddr fe80::/64 udp dport 546 accept
      meta l4proto ipv6-icmp accept
      counter
   }
${FORWARD_CHAINS}}
`;
}

/** All IPv6 dropped (network/qubes-ipv6-disabled.nft), for a VM without IPv6 addresses. */
export function ipv6DisabledTable(): string {
  return `table ip6 qbs-filter {
   chain input {
      type filter hook input priority filter; policy drop;
      iif lo accept
      counter
   }
   chain forward {
      type filter hook forward priority filter; policy drop;
      counter
   }
}
`;
}

/**
 * DNAT of the virtual DNS servers clients are told (`/qubes-netvm-primary-dns`, `-secondary-`)
 * to this VM's own resolvers, paired cyclically; no resolver: DNS to them is dropped
 * (network/qubes-setup-dnat-to-ns). In sys-firewall the resolvers are its own 10.139.1.1/.2,
 * so this maps them to themselves and the masquerade sends them to the netvm, which DNATs
 * them to the real servers.
 */
export function dnatDns(virtualServers: readonly string[], resolvers: readonly string[]): string {
  const lines = ['add table ip qubes', 'add chain ip qubes dnat-dns', 'delete chain ip qubes dnat-dns'];
  lines.push(
    'table ip qubes {',
    'chain dnat-dns {',
    'type nat hook prerouting priority dstnat; policy accept;',
  );
  virtualServers.forEach((vm, i) => {
    const to = resolvers.length > 0 ? resolvers[i % resolvers.length] : undefined;
    for (const proto of ['udp', 'tcp'])
      lines.push(
        to ? `ip daddr ${vm} ${proto} dport 53 dnat to ${to}` : `ip daddr ${vm} ${proto} dport 53 drop`,
      );
  });
  lines.push('}', '}');
  return `${lines.join('\n')}\n`;
}

/** What vif-route-qubes adds to the anti-spoofing sets when a client vif comes up. */
export function vifOnlineElements(vif: string, addresses: readonly string[]): string {
  if (!/^vif\d+\.\d+$/.test(vif)) throw new RangeError(`"${vif}" is not a vif<domid>.<n> name`);
  return addresses
    .map((a) => {
      const f = isIp6(a) ? 'ip6' : 'ip';
      return `add element ${f} qubes allowed { "${vif}" . ${a} }\nadd element ${f} qubes downstream { ${a} }\n`;
    })
    .join('');
}
