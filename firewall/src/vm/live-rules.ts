/**
 * One client's rules as a live RuleSet: its `/qubes-firewall/<ip>` trees (one per address
 * family) read at every commit, `dsthost` names kept resolved, IPv4 and IPv6 joined. This is the
 * one place the VM turns QubesDB rule entries into rules; `liveClientRules` is the function to
 * swap for the engine's own entry point once it has one.
 *
 * No bypass window: the engine holds one RuleSet per client and swaps it in one assignment
 * (FirewallEngine.setRuleSet). Before the first commit the client is dropped (ClientRules starts
 * drop-all); a new tree replaces the old set only once it is complete (dom0's commit marker,
 * QubesDb.commits) and its names are resolved (ClientRules keeps the old set meanwhile), so
 * every packet meets either the old set or the new one, never none.
 */
import { ClientRules, type HostResolver } from '../rules/client-rules.ts';
import { combineRuleSets } from '../rules/dual.ts';
import type { RuleSet } from '../rules/types.ts';

/** The commits of a rule tree (QubesDb fits: dom0 writes `<base>/...` then `<base>` empty). */
export interface RuleTrees {
  commits(
    base: string,
    options: { signal?: AbortSignal },
  ): AsyncIterableIterator<{
    readonly entries: ReadonlyMap<string, string>;
  }>;
}

export interface LiveRulesOptions {
  trees: RuleTrees;
  /** The client's addresses as dom0 names its trees: `/qubes-firewall/<ip4>`, `/qubes-firewall/<ip6>`. */
  ip4: string | undefined;
  ip6: string | undefined;
  dnsServers: readonly Uint8Array[];
  resolver: HostResolver | undefined;
  /** Called with each new set (and once at the start with drop-all). */
  onChange(set: RuleSet): void;
  log(line: string): void;
  /** UNIX seconds for `expire=` (tests inject it). */
  wallClockSeconds?: () => number;
}

export interface LiveRules {
  readonly current: RuleSet;
  setDnsServers(servers: readonly Uint8Array[]): void;
  /** Call on the engine's tick: rebuilds when an `expire=` passes. */
  tick(): void;
  dispose(): void;
}

export type LiveRulesFactory = (options: LiveRulesOptions) => LiveRules;

export const liveClientRules: LiveRulesFactory = (o) => {
  const lifetime = new AbortController();
  const family = (source: string | undefined) =>
    source === undefined
      ? undefined
      : new ClientRules({
          source,
          dnsServers: o.dnsServers,
          log: o.log,
          ...(o.resolver ? { resolver: o.resolver } : {}),
          ...(o.wallClockSeconds ? { wallClockSeconds: o.wallClockSeconds } : {}),
        });
  const r4 = family(o.ip4);
  const r6 = family(o.ip6);
  let current: RuleSet = combineRuleSets(r4?.current, r6?.current);
  const publish = () => {
    current = combineRuleSets(r4?.current, r6?.current);
    o.onChange(current);
  };
  r4?.onChange(publish);
  r6?.onChange(publish);
  publish();
  const follow = async (rules: ClientRules, source: string) => {
    const base = `/qubes-firewall/${source}`;
    try {
      for await (const snapshot of o.trees.commits(base, { signal: lifetime.signal }))
        rules.update(snapshot.entries);
    } catch (error) {
      if (!lifetime.signal.aborted)
        o.log(`rules for ${source}: no longer followed: ${(error as Error).message}`);
    }
  };
  if (r4 && o.ip4) void follow(r4, o.ip4);
  if (r6 && o.ip6) void follow(r6, o.ip6);
  return {
    get current() {
      return current;
    },
    setDnsServers(servers) {
      r4?.setDnsServers(servers);
      r6?.setDnsServers(servers);
    },
    tick() {
      r4?.tick();
      r6?.tick();
    },
    dispose() {
      lifetime.abort();
      r4?.dispose();
      r6?.dispose();
    },
  };
};
