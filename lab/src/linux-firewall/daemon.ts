/**
 * The qubes-firewall daemon's loop (qubesagent/firewall.py `FirewallWorker.main` and
 * `NftablesWorker`, qubes-core-agent-linux a37fac93), sans-IO: the same nft inputs in the same
 * order from the same QubesDB keys, with QubesDB, nft, conntrack and the resolver behind
 * `FirewallIo`. The lab's Linux firewall VM runs it over its real QubesDB replica and `nft`.
 */
import {
  type Connection,
  chainForAddr,
  connectedIps,
  connectedIpsRules,
  createChain,
  type Family,
  type FirewallRule,
  type HostResolver,
  initTables,
  isBlocked,
  isIp6,
  listTargets,
  parseConntrackList,
  prepareRules,
  RuleParseError,
  readRules,
} from './translate.ts';

/** nft refused an input (firewall.py RuleApplyError). */
export class RuleApplyError extends Error {
  override name = 'RuleApplyError';
}

export interface FirewallIo {
  /** `nft -f /dev/stdin` with this input; throws RuleApplyError when nft fails. */
  nft(input: string): Promise<void>;
  /** `conntrack -L --family ipv<N> --src <source>` output ('' when none). */
  conntrackList(family: Family, source: string): Promise<string>;
  /** `conntrack -D --src <source> --dst .. --proto .. --dport ..`. */
  conntrackDelete(source: string, con: Connection): Promise<void>;
  readonly resolve: HostResolver;
  /** The VM's resolv.conf nameservers (both families). */
  dnsServers(): readonly string[];
  readonly db: {
    multiread(prefix: string): Iterable<readonly [string, string]>;
    read(path: string): string | undefined;
    write(path: string, value: string): Promise<void> | void;
    rm(path: string): Promise<void> | void;
  };
  log(line: string): void;
}

/** What one `handle_addr` did, for logs and reports. */
export interface HandledClient {
  readonly target: string;
  readonly rules: readonly FirewallRule[];
  readonly error?: string;
  /** Connections the new rules forbid, deleted from conntrack. */
  readonly cut: readonly Connection[];
}

/** Python's str() of a set of strings, as firewall.py writes `/dns/<source>/<host>`. */
function pythonSetRepr(items: readonly string[]): string {
  return items.length === 0 ? 'set()' : `{${items.map((i) => `'${i}'`).join(', ')}}`;
}

export class QubesFirewallDaemon {
  private readonly chains = { 4: new Set<string>(), 6: new Set<string>() };

  constructor(private readonly io: FirewallIo) {}

  async init(): Promise<void> {
    await this.io.nft(initTables());
  }

  /** The initial load of `main()`: every target, then the anti-spoofing of both families. */
  async start(): Promise<HandledClient[]> {
    await this.init();
    const handled: HandledClient[] = [];
    for (const target of listTargets(this.paths('/qubes-firewall/')))
      handled.push(await this.handleAddr(target));
    await this.updateConnectedIps(4);
    await this.updateConnectedIps(6);
    return handled;
  }

  /** A QubesDB watch event; only the base key of a client (written last by dom0) reloads it. */
  async onWatch(path: string): Promise<HandledClient | undefined> {
    if (path === '/connected-ips') await this.updateConnectedIps(4);
    if (path === '/connected-ips6') await this.updateConnectedIps(6);
    if (path.startsWith('/qubes-firewall/') && path.split('/').length === 3)
      return this.handleAddr(path.split('/')[2] ?? '');
    return undefined;
  }

  async updateConnectedIps(family: Family): Promise<void> {
    await this.io.nft(
      connectedIpsRules(
        connectedIps(this.io.db.read(family === 6 ? '/connected-ips6' : '/connected-ips')),
        family,
      ),
    );
  }

  async handleAddr(target: string): Promise<HandledClient> {
    let result: HandledClient;
    try {
      const rules = readRules(this.io.db.multiread(`/qubes-firewall/${target}/`), target);
      result = { target, rules, cut: await this.applyRules(target, rules) };
    } catch (error) {
      if (!(error instanceof RuleParseError) && !(error instanceof RuleApplyError)) throw error;
      const why = `Failed to ${error instanceof RuleParseError ? 'parse' : 'apply'} rules for ${target} (${error.message}), blocking traffic`;
      this.io.log(why);
      const drop: FirewallRule[] = [{ action: 'drop' }];
      let cut: readonly Connection[] = [];
      try {
        cut = await this.applyRules(target, drop);
      } catch (again) {
        if (!(again instanceof RuleApplyError)) throw again;
        this.io.log(`Failed to block traffic for ${target}`);
      }
      result = { target, rules: drop, error: error.message, cut };
    }
    const handledKey = `/qubes-firewall-handled/${target}`;
    const count = Number.parseInt(this.io.db.read(handledKey) ?? '', 10);
    await this.io.db.write(handledKey, String((Number.isNaN(count) ? 0 : count) + 1));
    return result;
  }

  private paths(prefix: string): string[] {
    return [...this.io.db.multiread(prefix)].map(([path]) => path);
  }

  private async applyRules(source: string, rules: readonly FirewallRule[]): Promise<Connection[]> {
    const family: Family = isIp6(source) ? 6 : 4;
    const chain = chainForAddr(source);
    if (!this.chains[family].has(chain)) {
      await this.io.nft(createChain(source, family));
      this.chains[family].add(chain);
    }
    const servers = this.io.dnsServers().filter((s) => isIp6(s) === (family === 6));
    const { nft, dns } = await prepareRules(chain, rules, family, servers, this.io.resolve);
    await this.io.nft(nft);
    // /dns/<source>/<host>: what the rules resolved to, for client-side pinning.
    if (this.paths(`/dns/${source}/`).length > 0) await this.io.db.rm(`/dns/${source}/`);
    for (const [host, addresses] of dns) {
      const path = `/dns/${source}/${host}`;
      if (path.length > 63)
        this.io.log(`Unable to add DNS information for ${host} (${source}) due to qubesdb path length limit`);
      else await this.io.db.write(path, pythonSetRepr(addresses));
    }
    const cut: Connection[] = [];
    for (const con of parseConntrackList(await this.io.conntrackList(family, source)))
      if (isBlocked(rules, con, dns, servers)) {
        await this.io.conntrackDelete(source, con);
        cut.push(con);
      }
    return cut;
  }
}
