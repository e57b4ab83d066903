/**
 * One `/qubes-firewall/<source>` tree over time (SourceRules; the package's ClientRules
 * keeps one per tree and gives the engine their sets): takes the raw QubesDB tree, resolves
 * its `dsthost` names through the firewall's own resolver, and keeps the
 * current compiled RuleSet, rebuilt when a rule tree arrives, when DNS answers
 * change (TTL refresh; old addresses are kept until a new answer arrives) and
 * when an `expire` passes. The engine just asks for `current` per new flow.
 *
 * Fail closed (DESIGN "Fail closed", Linux handle_addr): a tree that fails to
 * parse, or a `dsthost` that cannot be resolved when the rules are applied,
 * gives drop-all with a log line saying why. While names of a new tree are
 * still being resolved the previous set stays in force (as in Linux, whose old
 * chain stays until `nft -f` of the new one); a client with no previous set is
 * dropped meanwhile. Every name must resolve again after each commit (firewall.py calls
 * getaddrinfo at each one): an answer within its TTL counts, a stale one is asked again,
 * and a name whose lookup since the commit failed blocks the tree even if older addresses
 * are known. Once resolved, a name keeps its last addresses through failed refreshes.
 */

import { canonicalName } from '../dns/wire.ts';
import { formatIp } from '../wire/address.ts';
import { type CompiledRuleSet, compileRuleSet, dropAllRuleSet } from './compile.ts';
import { type ParsedRules, parseRuleEntries, sourceFamily } from './grammar.ts';
import { type RuleEnvironment, ruleNeedsName } from './semantics.ts';

export type HostAnswer =
  | { state: 'pending' }
  /** `addresses` may be empty (the name exists but has no record of that family). */
  | { state: 'resolved'; addresses: readonly Uint8Array[] }
  | { state: 'failed'; reason: string };

/** What SourceRules needs from a resolver (dns/resolver.ts StubResolver implements it). */
export interface HostResolver {
  /** Starts keeping `name` resolved for `family` (reference-counted; refreshed by TTL while retained). */
  retain(name: string, family: 4 | 6): void;
  release(name: string, family: 4 | 6): void;
  answer(name: string, family: 4 | 6): HostAnswer;
  /**
   * Called whenever an answer's state or addresses change, and when a lookup ends without
   * changing them (a failed refresh). Returns an unsubscribe function.
   */
  subscribe(listener: (name: string, family: 4 | 6) => void): () => void;
  /**
   * Whether the answer is current (`fresh`: from the last lookup and within its TTL), being
   * asked again (`refreshing`), or out of date with no lookup running (`stale`: its TTL ran
   * out, or the last refresh failed). A resolver without it counts every answer as fresh.
   */
  freshness?(name: string, family: 4 | 6): 'fresh' | 'refreshing' | 'stale';
  /** Asks for `name` again now unless a lookup is running (a new rules commit wants a current answer). */
  refresh?(name: string, family: 4 | 6): void;
}

export type RuleEntries = Iterable<readonly [string, string]> | Readonly<Record<string, string>>;

export interface SourceRulesOptions {
  /** The client's address as in `/qubes-firewall/<source>/` (its real IP, one family per tree). */
  source: string;
  /** The firewall's DNS servers for `specialtarget=dns` (`/qubes-primary-dns`, `/qubes-secondary-dns`). */
  dnsServers: readonly Uint8Array[];
  /** Needed only when rules use `dsthost`; without it such rules fail closed. */
  resolver?: HostResolver;
  /** A log line (fail-closed reasons, new rules). */
  log?: (line: string) => void;
  /** UNIX time in seconds for `expire` (injected so tests are deterministic). Default Date.now()/1000. */
  wallClockSeconds?: () => number;
}

/**
 * Parses and compiles a tree in one go, with no DNS: parse failures give drop-all with the
 * reason, and so does a `dsthost` whose addresses `env.hostAddresses` does not give (as
 * firewall.py blocks a client whose names do not resolve). For rule fixtures and tests;
 * a firewall gives its clients' trees to ClientRules (`@moat/firewall`), which resolves the
 * names and keeps the engine's sets up to date.
 */
export function compileRuleEntries(
  entries: RuleEntries,
  source: string | undefined,
  env: RuleEnvironment = {},
): CompiledRuleSet {
  const family = source === undefined ? env.family : sourceFamily(source);
  const parsed = parseRuleEntries(entries, source);
  if (!parsed.ok)
    return dropAllRuleSet(`Failed to parse rules for ${source ?? '?'} (${parsed.reason})`, family);
  return compileRuleSet(parsed.value, { ...env, family });
}

export class SourceRules {
  private set: CompiledRuleSet;
  private hosts: ReadonlyMap<string, readonly Uint8Array[]> = new Map();
  private parsed: ParsedRules | undefined;
  private names: string[] = [];
  /**
   * The names that resolved since the last commit (update), with the addresses last used:
   * a name not in here fails the tree once its lookup ends without an answer, as
   * firewall.py's getaddrinfo at each commit; one in here keeps its addresses through
   * failed refreshes (never widened).
   */
  private confirmed = new Map<string, readonly Uint8Array[]>();
  private readonly family: 4 | 6 | undefined;
  /** A commit's set is not in force yet: log it when it is. */
  private announce = false;
  /** A commit whose outcome (in force, or blocking and why) is not logged yet. */
  private undecided = false;
  private readonly listeners = new Set<(current: CompiledRuleSet, previous: CompiledRuleSet) => void>();
  private readonly unsubscribe: (() => void) | undefined;
  private dnsServers: readonly Uint8Array[];
  private disposed = false;

  constructor(private readonly options: SourceRulesOptions) {
    this.family = sourceFamily(options.source);
    this.dnsServers = options.dnsServers;
    this.set = dropAllRuleSet(`no rules read yet for ${options.source}`, this.family);
    this.unsubscribe = options.resolver?.subscribe((name, family) => {
      if (family === this.family && this.names.includes(canonical(name))) this.rebuild();
    });
  }

  /** The set to evaluate new flows against now. */
  get current(): CompiledRuleSet {
    return this.set;
  }

  /** The dsthost addresses the current set was compiled with (for `/dns/<source>/<host>`, see dnsInfoEntries). */
  get resolvedHosts(): ReadonlyMap<string, readonly Uint8Array[]> {
    return this.set.failClosedReason === undefined ? this.hosts : new Map();
  }

  /** Called after each swap (the engine re-checks tracked flows against the new set). */
  onChange(listener: (current: CompiledRuleSet, previous: CompiledRuleSet) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** A new rule tree: the QubesDB multiread of `/qubes-firewall/<source>/` after dom0's reload marker. */
  update(entries: RuleEntries): void {
    if (this.disposed) return;
    const source = this.options.source;
    if (this.family === undefined) {
      this.swap(
        dropAllRuleSet(`Failed to parse rules for ${source} (source is not an IP address), blocking traffic`),
      );
      return;
    }
    const parsed = parseRuleEntries(entries, source);
    if (!parsed.ok) {
      this.parsed = undefined;
      this.track([]);
      this.undecided = true;
      this.swap(
        dropAllRuleSet(
          `Failed to parse rules for ${source} (${parsed.reason}), blocking traffic`,
          this.family,
        ),
      );
      return;
    }
    this.parsed = parsed.value;
    const names: string[] = [];
    for (const rule of parsed.value.rules)
      if (rule.dst?.kind === 'host' && !names.includes(canonical(rule.dst.name)))
        names.push(canonical(rule.dst.name));
    this.track(names);
    // a commit: every name must resolve again (a cached answer within its TTL counts)
    this.confirmed = new Map();
    const resolver = this.options.resolver;
    for (const name of names)
      if (resolver?.freshness?.(name, this.family) === 'stale') resolver.refresh?.(name, this.family);
    this.announce = true;
    this.undecided = true;
    this.rebuild(true);
  }

  /**
   * The same tree committed again: nothing changes, but names whose answers are stale or
   * failed are asked again now (firewall.py resolves every name at every commit), without
   * waiting for the resolver's backoff.
   */
  recommit(): void {
    if (this.disposed || this.family === undefined) return;
    const resolver = this.options.resolver;
    for (const name of this.names)
      if (resolver?.freshness?.(name, this.family) === 'stale') resolver.refresh?.(name, this.family);
  }

  /** New `/qubes-primary-dns` / `/qubes-secondary-dns` values. */
  setDnsServers(servers: readonly Uint8Array[]): void {
    this.dnsServers = servers;
    this.rebuild();
  }

  /** Call now and then (the engine's tick): rebuilds when an `expire` has passed. */
  tick(): void {
    const next = this.set.nextExpiry;
    if (next !== undefined && this.now() >= next) this.rebuild();
  }

  dispose(): void {
    this.track([]);
    this.unsubscribe?.();
    this.listeners.clear();
    this.disposed = true;
  }

  private now(): number {
    return this.options.wallClockSeconds ? this.options.wallClockSeconds() : Math.floor(Date.now() / 1000);
  }

  private track(names: string[]): void {
    const resolver = this.options.resolver;
    const family = this.family;
    if (resolver && family !== undefined) {
      for (const n of names) if (!this.names.includes(n)) resolver.retain(n, family);
      for (const n of this.names) if (!names.includes(n)) resolver.release(n, family);
    }
    this.names = names;
  }

  private rebuild(fresh = false): void {
    const parsed = this.parsed;
    if (!parsed || this.disposed) return;
    const source = this.options.source;
    const env: RuleEnvironment = {
      family: this.family,
      dnsServers: this.dnsServers,
      nowEpochSeconds: this.now(),
      hostAddresses: new Map(),
    };
    const resolver = this.options.resolver;
    const family = this.family!;
    const pending: string[] = [];
    const failed: string[] = [];
    const hostAddresses = env.hostAddresses as Map<string, readonly Uint8Array[]>;
    for (const rule of parsed.rules) {
      if (rule.dst?.kind !== 'host' || !ruleNeedsName(rule, env)) continue;
      const name = canonical(rule.dst.name);
      if (hostAddresses.has(rule.dst.name)) continue;
      const answer = resolver?.answer(name, family) ?? { state: 'failed', reason: 'no resolver' };
      const freshness = resolver?.freshness?.(name, family) ?? 'fresh';
      const kept = this.confirmed.get(name);
      if (answer.state === 'resolved' && answer.addresses.length > 0 && (kept || freshness === 'fresh')) {
        // resolved since the commit (or a fresh cached answer at it): follow new answers
        this.confirmed.set(name, answer.addresses);
        hostAddresses.set(rule.dst.name, answer.addresses);
      } else if (kept) {
        // resolved since the commit, then a refresh failed or found nothing: keep the last
        hostAddresses.set(rule.dst.name, kept);
      } else if (answer.state === 'pending' || freshness === 'refreshing') pending.push(name);
      else if (answer.state === 'failed') failed.push(`${name}: ${answer.reason}`);
      else if (answer.addresses.length === 0) failed.push(`${name}: no IPv${family} address`);
      else failed.push(`${name}: no answer since the rules changed`);
    }
    if (failed.length > 0) {
      this.swap(
        dropAllRuleSet(
          `Failed to resolve dsthost for ${source} (${failed.join('; ')}), blocking traffic`,
          this.family,
        ),
      );
      return;
    }
    if (pending.length > 0) {
      // keep the previous set while the new tree's names resolve; a first tree waits in drop-all
      if (fresh && this.set.failClosedReason?.startsWith('no rules read yet'))
        this.swap(
          dropAllRuleSet(`waiting for DNS answers for ${pending.join(', ')} (${source})`, this.family),
          false,
        );
      return;
    }
    const next = compileRuleSet(parsed, env);
    this.hosts = hostAddresses; // resolvedHosts hides them while the set fails closed
    if (this.announce && next.failClosedReason === undefined) {
      // once per commit, when its set is in force (after its names resolved)
      this.announce = false;
      this.options.log?.(
        `New firewall rules for ${source}: ${parsed.rules.length} rules, policy ${parsed.policy}`,
      );
    }
    this.swap(next);
  }

  /**
   * `decides`: this set is the outcome of the last commit (not a wait for its names), so a
   * fail-closed one is logged even when the reason is the same as before: each commit ends in
   * one line, "New firewall rules for ..." or why it blocks (the lab waits for it).
   */
  private swap(next: CompiledRuleSet, decides = true): void {
    const previous = this.set;
    this.set = next;
    const reason = next.failClosedReason;
    if (reason !== undefined && (reason !== previous.failClosedReason || (decides && this.undecided)))
      this.options.log?.(reason);
    if (decides) this.undecided = false;
    for (const l of this.listeners) l(next, previous);
  }
}

/** Names compare as DNS does (case-insensitive, no trailing dot), as the resolver keys them. */
function canonical(name: string): string {
  return canonicalName(name);
}

/** QubesDB limits a path to about 64 characters (Qubes issue #9084). */
export const MAX_QUBESDB_PATH = 64;

/**
 * The `/dns/<source>/<host>` entries Linux writes after applying rules (so
 * client-side tools can pin the addresses): the value is the Python `str()` of
 * the set of `"addr/32"` (or `/128`) strings. Paths over QubesDB's limit are
 * returned in `tooLong` (Linux logs them) instead of `entries`.
 */
export function dnsInfoEntries(
  source: string,
  hosts: ReadonlyMap<string, readonly Uint8Array[]>,
): { entries: [string, string][]; tooLong: string[] } {
  const entries: [string, string][] = [];
  const tooLong: string[] = [];
  for (const [host, addrs] of hosts) {
    const path = `/dns/${source}/${host}`;
    if (path.length > MAX_QUBESDB_PATH) {
      tooLong.push(host);
      continue;
    }
    const items = addrs.map((a) => `'${formatIp(a)}/${a.length === 4 ? 32 : 128}'`);
    entries.push([path, `{${items.join(', ')}}`]);
  }
  return { entries, tooLong };
}
