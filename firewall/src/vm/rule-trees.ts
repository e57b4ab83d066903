/**
 * A client's rule trees followed in QubesDB: each of dom0's commits of `/qubes-firewall/<ip>`
 * (one tree per address family) goes to the engine's rule entry point (`ClientRules.update`,
 * firewall/src/client-rules.ts), which compiles it, resolves its `dsthost` names and swaps the
 * client's set in the engine. This file only says *when*: at each commit, never from a
 * half-written tree.
 *
 * No bypass window: the engine holds one RuleSet per client and swaps it in one assignment. A
 * client has no set (drop-all) until its first commit; a new tree replaces the old only once
 * dom0's commit marker is written (QubesDb.commits) and its names are resolved (the old set
 * stays meanwhile), so every packet meets the old set or the new one, never none.
 */
import type { RuleEntries } from '../rules/client-rules.ts';

/** The commits of a rule tree (QubesDb fits: dom0 writes `<base>/...` then `<base>` empty). */
export interface RuleTrees {
  commits(
    base: string,
    options: { signal?: AbortSignal },
  ): AsyncIterableIterator<{ readonly entries: ReadonlyMap<string, string> }>;
}

/** Where trees go (ClientRules fits). */
export interface RuleSink {
  update(ip: string, entries: RuleEntries): void;
  remove(ip: string): void;
}

/** Follows the trees of `ips` until the returned function is called (which forgets them). */
export function followRuleTrees(o: {
  trees: RuleTrees;
  sink: RuleSink;
  ips: readonly string[];
  log: (line: string) => void;
}): () => void {
  const lifetime = new AbortController();
  for (const ip of o.ips) {
    void (async () => {
      try {
        for await (const snapshot of o.trees.commits(`/qubes-firewall/${ip}`, { signal: lifetime.signal }))
          o.sink.update(ip, snapshot.entries);
      } catch (error) {
        if (!lifetime.signal.aborted)
          o.log(`rules for ${ip}: no longer followed: ${(error as Error).message}`);
      }
    })();
  }
  return () => {
    lifetime.abort();
    for (const ip of o.ips) o.sink.remove(ip);
  };
}
