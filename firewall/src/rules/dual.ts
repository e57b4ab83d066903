/**
 * A client with IPv4 and IPv6 has two trees, `/qubes-firewall/<ip4>/` and
 * `/qubes-firewall/<ip6>/` (dom0 writes one per family with a non-null address),
 * each compiled for its own family. The engine keeps one RuleSet per client:
 * this combines the two, dispatching on the query's family. A missing family
 * drops silently (RULE_NO_TREE; Linux: no chain for that source, forward policy drop). Dom0 numbers
 * both trees over the same full list, so the rule numbers share one space.
 */
import { type FlowQuery, RULE_NO_TREE, type RuleDecision, type RuleSet } from './types.ts';

export interface DualFamilyRuleSet extends RuleSet {
  readonly ipv4: RuleSet | undefined;
  readonly ipv6: RuleSet | undefined;
  /** Each family's own fail-closed reason (the combined `failClosedReason` is set only when both fail). */
  readonly familyFailClosedReasons: { readonly 4: string | undefined; readonly 6: string | undefined };
}

export function combineRuleSets(ipv4: RuleSet | undefined, ipv6: RuleSet | undefined): DualFamilyRuleSet {
  const r4 = ipv4 ? ipv4.failClosedReason : 'no IPv4 rules';
  const r6 = ipv6 ? ipv6.failClosedReason : 'no IPv6 rules';
  const numbers = [...new Set([...(ipv4?.ruleNumbers ?? []), ...(ipv6?.ruleNumbers ?? [])])].sort(
    (a, b) => a - b,
  );
  return {
    ipv4,
    ipv6,
    familyFailClosedReasons: { 4: r4, 6: r6 },
    failClosedReason: r4 !== undefined && r6 !== undefined ? `IPv4: ${r4}; IPv6: ${r6}` : undefined,
    ruleNumbers: numbers,
    evaluate(query: FlowQuery, out: RuleDecision): RuleDecision {
      const set = query.family === 4 ? ipv4 : ipv6;
      if (set === undefined) {
        out.action = 'drop';
        out.rule = RULE_NO_TREE;
        return out;
      }
      return set.evaluate(query, out);
    },
  };
}
