import { describe, expect, it } from 'vitest';
import { parseIpText as parseIp } from '../wire/address.ts';
import { compileRuleEntries } from './client-rules.ts';
import { combineRuleSets } from './dual.ts';
import { type FlowQuery, RULE_NO_TREE } from './types.ts';

const q = (dst: string): FlowQuery => {
  const a = parseIp(dst)!;
  return { family: a.length === 4 ? 4 : 6, proto: 6, dst: a, dstPort: 443, icmpType: -1, icmpCode: -1 };
};
const out = () => ({ action: 'drop' as 'accept' | 'drop', rule: -2 });

describe('a client with an IPv4 and an IPv6 tree', () => {
  // dom0's full list: 0 dst6 drop, 1 dst4 drop, 2 accept; each tree omits the other family's rule
  const v4 = compileRuleEntries(
    { policy: 'drop', '0001': 'action=drop dst4=1.0.0.0/8', '0002': 'action=accept' },
    '10.137.0.5',
  );
  const v6 = compileRuleEntries(
    { policy: 'drop', '0000': 'action=drop dst6=2001:db8::/32', '0002': 'action=accept' },
    'fd09:24ef:4179::a89:5',
  );

  it('evaluates each family against its own tree, with shared rule numbers', () => {
    const both = combineRuleSets(v4, v6);
    expect(both.evaluate(q('1.2.3.4'), out())).toEqual({ action: 'drop', rule: 1 });
    expect(both.evaluate(q('9.9.9.9'), out())).toEqual({ action: 'accept', rule: 2 });
    expect(both.evaluate(q('2001:db8::1'), out())).toEqual({ action: 'drop', rule: 0 });
    expect(both.evaluate(q('2a00::1'), out())).toEqual({ action: 'accept', rule: 2 });
    expect(both.ruleNumbers).toEqual([0, 1, 2]);
    expect(both.failClosedReason).toBeUndefined();
  });

  it('drops a family without a tree, or whose tree failed, and keeps the other working', () => {
    const only4 = combineRuleSets(v4, undefined);
    // silently, as Linux's forward policy for a source without a chain (no reject)
    expect(only4.evaluate(q('2a00::1'), out())).toEqual({ action: 'drop', rule: RULE_NO_TREE });
    expect(only4.evaluate(q('9.9.9.9'), out()).action).toBe('accept');
    const broken6 = combineRuleSets(
      v4,
      compileRuleEntries({ '0000': 'action=accept' }, 'fd09:24ef:4179::a89:5'),
    );
    expect(broken6.evaluate(q('2a00::1'), out()).action).toBe('drop');
    expect(broken6.familyFailClosedReasons[6]).toMatch(/no 'policy'/);
    expect(broken6.failClosedReason).toBeUndefined();
    expect(combineRuleSets(undefined, undefined).failClosedReason).toMatch(
      /IPv4: no IPv4 rules; IPv6: no IPv6 rules/,
    );
  });
});
