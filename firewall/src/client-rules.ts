/**
 * The library's entry point from QubesDB rules to a live rule set in the engine: one call
 * per `/qubes-firewall/<ip>` commit, and the engine's client gets the compiled set, kept up
 * to date as DNS answers change, `expire=` times pass, vifs come and go and the DNS servers
 * change. It joins what a caller would otherwise wire by hand: rule parsing (rules/grammar.ts),
 * a per-tree state over time with dsthost names (rules/client-rules.ts SourceRules), both
 * families (rules/dual.ts) and FirewallEngine.setRuleSet (which purges the flows a new set
 * would not admit, as Linux's qubes-firewall does with `conntrack -D`).
 *
 * DNS, as qubesagent/firewall.py (qubes-core-agent-linux a37fac9, `prepare_rules`,
 * `handle_addr`) and better where Linux never refreshes:
 * - dsthost names are resolved through the firewall's own stub resolver (dns/resolver.ts),
 *   whose queries leave through the engine's uplink (engine.attachResolver); an IPv4 tree asks
 *   for A, an IPv6 tree for AAAA, as firewall.py's getaddrinfo per family.
 * - A name that has not resolved since the last rules commit (a failure, NXDOMAIN, or no
 *   address of the tree's family, e.g. an IPv6 tree and a name with only an A record) makes
 *   that client's tree drop-all, as firewall.py replaces the whole tree by `action=drop`
 *   when getaddrinfo fails. A cached answer still within its TTL counts as resolved (as a
 *   caching resolver would answer getaddrinfo); a stale one is asked again. While a new
 *   tree's names are being asked, the previous set stays in force (Linux's old chain stays
 *   while getaddrinfo runs); a client with no previous set drops meanwhile.
 * - Names in use are asked again when their TTL runs out, per family; a new answer replaces
 *   the addresses. A failed refresh keeps the last answers (never widened: a refresh never
 *   removes a drop rule's addresses without a new answer), is retried with backoff and logged.
 *
 * Time: `clock.nowMs()` must be the time base the caller passes to `engine.tick` (the
 * resolver's timers run in the engine's tick); `expire=` uses `clock.wallSeconds()` through
 * a timer set with `clock.setTimer`.
 */
import { StubResolver } from './dns/resolver.ts';
import type { FirewallEngine } from './engine/engine.ts';
import { type HostResolver, type RuleEntries, SourceRules } from './rules/client-rules.ts';
import type { CompiledRuleSet } from './rules/compile.ts';
import { combineRuleSets } from './rules/dual.ts';
import { sourceFamily } from './rules/grammar.ts';
import { parseIpText } from './wire/address.ts';

/** Time for ClientRules (tests inject a manual one; see `systemClock`). */
export interface RulesClock {
  /** Monotonic milliseconds: the same time base as `engine.tick(nowMs)`. */
  nowMs(): number;
  /** UNIX time in seconds, for the rules' `expire=`. */
  wallSeconds(): number;
  /** Runs `fn` once after `ms`; returns a function that cancels it. */
  setTimer(ms: number, fn: () => void): () => void;
}

/** performance.now(), Date.now() and setTimeout (unref'd: a rule timer never keeps a process alive). */
export const systemClock: RulesClock = {
  nowMs: () => performance.now(),
  wallSeconds: () => Math.floor(Date.now() / 1000),
  setTimer(ms, fn) {
    const t = setTimeout(fn, Math.max(0, ms));
    (t as { unref?: () => void }).unref?.();
    return () => clearTimeout(t);
  },
};

export interface ClientRulesOptions {
  engine: FirewallEngine;
  /**
   * Resolves dsthost names. Default: a StubResolver asking the engine's `dns.upstream`
   * servers, attached to the engine (its queries go out through the uplink, its answers come
   * back through `engine.receive`, its timers run in `engine.tick`). A resolver passed here
   * must already be attached by the caller.
   */
  resolver?: HostResolver;
  clock?: RulesClock;
  /** Log lines: new rules, blocked clients and why, failed DNS lookups and refreshes. */
  log?: (line: string) => void;
  /**
   * Called after a client's set changed in the engine (e.g. to write `/dns/<ip>/<host>`, see
   * `status`), with how many tracked connections the new set cut.
   */
  onApplied?: (ip: string, status: ClientRulesStatus, connectionsCut: number) => void;
}

export interface ClientRulesStatus {
  /** The `/qubes-firewall/<ip>` source. */
  ip: string;
  /** The engine link the tree applies to, or undefined while no vif has this address. */
  link: number | undefined;
  /** Why this tree drops everything (parse failure, a name that did not resolve, ...), or undefined. */
  failClosedReason: string | undefined;
  /** The dsthost addresses in force (for Linux's `/dns/<ip>/<host>` entries, see dnsInfoEntries). */
  resolvedHosts: ReadonlyMap<string, readonly Uint8Array[]>;
}

interface Tree {
  readonly ip: string;
  readonly address: Uint8Array;
  readonly family: 4 | 6;
  readonly rules: SourceRules;
  /** The entries last given, to ignore a commit that changed nothing. */
  entriesKey: string;
}

/** Sorted `key=value` lines: two commits with the same tree are the same commit. */
function entriesKey(entries: readonly (readonly [string, string])[]): string {
  return entries
    .map(([k, v]) => `${k}\u0000${v}`)
    .sort()
    .join('\u0001');
}

export class ClientRules {
  private readonly engine: FirewallEngine;
  private readonly clock: RulesClock;
  private readonly resolver: HostResolver;
  /** The resolver this object made (and so keeps its servers in step with the engine's). */
  private readonly ownResolver: StubResolver | undefined;
  private readonly trees = new Map<string, Tree>();
  /** The link each client's sets were last applied to, by link → its trees. */
  private readonly applied = new Map<number, CompiledRuleSet[]>();
  private readonly unsubscribe: () => void;
  private cancelTimer: (() => void) | undefined;
  private closed = false;
  /** The DNS servers the trees were last given (the engine's `dns.upstream`). */
  private dnsServers: readonly Uint8Array[];

  constructor(private readonly options: ClientRulesOptions) {
    this.engine = options.engine;
    this.clock = options.clock ?? systemClock;
    if (options.resolver) {
      this.resolver = options.resolver;
      this.ownResolver = undefined;
    } else {
      const engine = this.engine;
      const own = new StubResolver({
        servers: engine.dnsServers.map((address) => ({ address, port: 53 })),
        now: () => this.clock.nowMs(),
        portAvailable: (transport, port) => engine.localPortAvailable(transport, port),
        ...(options.log ? { log: options.log } : {}),
      });
      engine.attachResolver(own);
      this.resolver = own;
      this.ownResolver = own;
    }
    this.dnsServers = this.engine.dnsServers;
    this.unsubscribe = this.engine.onConfigChange(() => this.configChanged());
  }

  /**
   * A commit of `/qubes-firewall/<ip>/`: `entries` are the keys under it relative to it
   * (`policy`, `0000`, ...) or full paths (`/qubes-firewall/<ip>/0000`), as a QubesDB
   * multiread gives them. The same tree again changes nothing, except that names whose
   * lookups failed are asked again at once.
   */
  update(ip: string, entries: RuleEntries): void {
    if (this.closed) return;
    const relative = relativeEntries(ip, entries);
    const key = entriesKey(relative);
    let tree = this.trees.get(ip);
    if (tree && tree.entriesKey === key) {
      tree.rules.recommit();
      return;
    }
    if (!tree) {
      const family = sourceFamily(ip);
      const address = parseIpText(ip);
      if (family === undefined || address === undefined) {
        this.options.log?.(`Failed to parse rules for ${ip} (source is not an IP address), ignored`);
        return;
      }
      const rules = new SourceRules({
        source: ip,
        dnsServers: this.dnsServers,
        resolver: this.resolver,
        ...(this.options.log ? { log: this.options.log } : {}),
        wallClockSeconds: () => this.clock.wallSeconds(),
      });
      tree = { ip, address, family, rules, entriesKey: key };
      this.trees.set(ip, tree);
      rules.onChange(() => this.apply(ip));
    }
    tree.entriesKey = key;
    tree.rules.update(relative);
    this.apply(ip);
  }

  /** `/qubes-firewall/<ip>` removed: that tree is forgotten (its family of the client drops). */
  remove(ip: string): void {
    const tree = this.trees.get(ip);
    if (!tree) return;
    this.trees.delete(ip);
    tree.rules.dispose();
    const link = this.engine.clientLink(tree.address);
    if (link !== undefined) this.applyLink(link);
  }

  /** The state of one tree (undefined when no tree was given for `ip`). */
  status(ip: string): ClientRulesStatus | undefined {
    const tree = this.trees.get(ip);
    if (!tree) return undefined;
    return {
      ip,
      link: this.engine.clientLink(tree.address),
      failClosedReason: tree.rules.current.failClosedReason,
      resolvedHosts: tree.rules.resolvedHosts,
    };
  }

  /** Forgets every tree and stops every timer; the engine's clients keep their last sets. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const tree of this.trees.values()) tree.rules.dispose();
    this.trees.clear();
    this.unsubscribe();
    this.cancelTimer?.();
    this.cancelTimer = undefined;
  }

  // ---------------------------------------------------------------- inside

  private configChanged(): void {
    if (this.closed) return;
    const servers = this.engine.dnsServers;
    if (!sameAddresses(servers, this.dnsServers)) {
      // new /qubes-primary-dns, /qubes-secondary-dns: asked from now on, and `specialtarget=dns`
      this.dnsServers = servers;
      this.ownResolver?.setServers(servers.map((address) => ({ address, port: 53 })));
      for (const tree of this.trees.values()) tree.rules.setDnsServers(servers);
    }
    // a vif may have appeared for a tree that arrived first
    for (const tree of this.trees.values()) {
      const link = this.engine.clientLink(tree.address);
      if (link !== undefined) this.applyLink(link);
    }
  }

  private apply(ip: string): void {
    const tree = this.trees.get(ip);
    if (!tree || this.closed) return;
    const link = this.engine.clientLink(tree.address);
    if (link !== undefined) this.applyLink(link);
    this.scheduleExpiry();
  }

  /** Gives the engine link the combination of the client's trees, if it changed. */
  private applyLink(link: number): void {
    let v4: Tree | undefined;
    let v6: Tree | undefined;
    for (const tree of this.trees.values()) {
      if (this.engine.clientLink(tree.address) !== link) continue;
      if (tree.family === 4) v4 = tree;
      else v6 = tree;
    }
    const sets = [v4?.rules.current, v6?.rules.current].filter((s): s is CompiledRuleSet => !!s);
    const previous = this.applied.get(link);
    if (previous && previous.length === sets.length && previous.every((s, i) => s === sets[i])) return;
    this.applied.set(link, sets);
    // no tree at all: no rule set (Linux: no chain for the source, dropped by the policy)
    const cut = this.engine.setRuleSet(
      link,
      sets.length === 0 ? undefined : combineRuleSets(v4?.rules.current, v6?.rules.current),
    );
    for (const tree of [v4, v6]) if (tree) this.options.onApplied?.(tree.ip, this.status(tree.ip)!, cut);
  }

  /** One timer for the earliest `expire=` among the trees. */
  private scheduleExpiry(): void {
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    let next = Number.POSITIVE_INFINITY;
    for (const tree of this.trees.values()) next = Math.min(next, tree.rules.current.nextExpiry ?? next);
    if (!Number.isFinite(next)) return;
    const ms = Math.max(0, (next - this.clock.wallSeconds()) * 1000);
    this.cancelTimer = this.clock.setTimer(ms, () => {
      this.cancelTimer = undefined;
      for (const tree of this.trees.values()) tree.rules.tick();
      this.scheduleExpiry();
    });
  }
}

function sameAddresses(a: readonly Uint8Array[], b: readonly Uint8Array[]): boolean {
  return (
    a.length === b.length && a.every((x, i) => x.length === b[i]!.length && x.every((v, j) => v === b[i]![j]))
  );
}

/** Entries as full QubesDB paths (`/qubes-firewall/<ip>/0000`) or relative keys, made relative. */
function relativeEntries(ip: string, entries: RuleEntries): [string, string][] {
  const pairs: (readonly [string, string])[] =
    Symbol.iterator in entries
      ? [...(entries as Iterable<readonly [string, string]>)]
      : Object.entries(entries);
  const prefix = `/qubes-firewall/${ip}/`;
  return pairs
    .filter(([k]) => k !== prefix.slice(0, -1)) // the commit marker itself, from a multiread without the slash
    .map(([k, v]) => [k.startsWith(prefix) ? k.slice(prefix.length) : k, v]);
}
