import { describe, expect, it } from 'vitest';
import {
  benchFlowQueries,
  benchRuleSet,
  benchRuleTree,
  measureRuleEvaluation,
  realisticRuleSet,
} from './bench-fixtures.ts';
import { parseRuleEntries } from './grammar.ts';
import { evaluateLinear } from './semantics.ts';
import type { RuleDecision } from './types.ts';

describe('bench fixtures', () => {
  it('generate a 1,000-rule list that parses, compiles and splits by family with gaps', () => {
    const f = realisticRuleSet();
    expect(f.lines).toHaveLength(1000);
    expect(f.lines.some((l) => l.includes('dst6='))).toBe(true);
    expect(f.lines.some((l) => l.includes('dsthost='))).toBe(true);
    expect(f.ipv4.entries.length - 1).toBeLessThan(1000); // dst6 rules left gaps
    // the bench's set has exactly 1,000 IPv4 rules (it once had only the IPv4 part of 1,000 lines)
    const set = benchRuleSet();
    expect(set.failClosedReason).toBeUndefined();
    expect(set.ruleNumbers.length).toBe(1000);
    expect(benchRuleTree().entries.length - 1).toBe(1000);
  });

  it('are deterministic, and the index agrees with the linear scan on them', () => {
    expect(realisticRuleSet(1000, 5).lines).toEqual(realisticRuleSet(1000, 5).lines);
    const f = realisticRuleSet();
    const tree = benchRuleTree();
    const parsed = parseRuleEntries(tree.entries, tree.source);
    if (!parsed.ok) throw new Error(parsed.reason);
    const set = benchRuleSet();
    const a: RuleDecision = { action: 'drop', rule: -1 };
    const b: RuleDecision = { action: 'drop', rule: -1 };
    const hits = new Set<number>();
    for (const q of benchFlowQueries(f, 2000)) {
      set.evaluate(q, a);
      evaluateLinear(parsed.value.rules, parsed.value.policy, q, f.ipv4.env, b);
      expect(a).toEqual(b);
      hits.add(a.rule);
    }
    expect(hits.size).toBeGreaterThan(20); // the mix reaches many rules, not just the policy
  });

  it('measure evaluation rates (figures only, no threshold)', () => {
    const r = measureRuleEvaluation({ rules: 100, queries: 64, minMs: 1 });
    expect(r.indexedPerSecond).toBeGreaterThan(0);
    expect(r.linearPerSecond).toBeGreaterThan(0);
  });
});
