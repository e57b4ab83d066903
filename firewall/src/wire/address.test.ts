import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseVifAddresses } from '../engine/links.ts';
import { parseRuleLine } from '../rules/grammar.ts';
import { formatIp, formatIpv4, formatIpv6, parseIpText, parseIpv4Text, parseIpv6Text } from './address.ts';

describe('address text: one strict parser', () => {
  // Before: wire/ipv4.ts and wire/ipv6.ts trimmed first (a vif address from XenStore), while
  // rules/address.ts did not (a rule address), so ' 10.137.0.5' or '10.137.0.5\n' was an
  // address on one path and an error on the other.
  it('refuses text with surrounding whitespace, as the rule grammar always did', () => {
    for (const padded of [' 10.137.0.5', '10.137.0.5\n', '\t10.137.0.5', ' fd09::5', 'fd09::5\n'])
      expect(parseIpText(padded)).toBeUndefined();
    expect(parseIpText('10.137.0.5')).toEqual(Uint8Array.of(10, 137, 0, 5));
  });

  it('gives vif addresses and rule addresses the same answer for the same text', () => {
    const texts = ['10.137.0.5', '010.137.0.5', '10.137.0.256', 'fd09::5', '::ffff:10.0.0.1', '1::2::3'];
    for (const t of texts) {
      const rule = parseRuleLine(`action=accept dst${t.includes(':') ? 6 : 4}=${t}`, 1);
      const dst = rule.ok ? rule.value.dst : undefined;
      const ruleAddress = dst?.kind === 'prefix' ? dst.address : undefined;
      const vif = parseVifAddresses(t);
      const vifAddress = t.includes(':') ? vif.ip6 : vif.ip4;
      expect(vifAddress, t).toEqual(ruleAddress);
      expect(vifAddress, t).toEqual(parseIpText(t));
    }
  });

  it('takes a dotted quad only as the last 32 bits of an IPv6 address', () => {
    expect(parseIpv6Text('::ffff:10.137.0.5')).toEqual(parseIpv6Text('::ffff:a89:5'));
    expect(parseIpv6Text('1:2:3:4:5:6:10.0.0.1')).toBeDefined();
    expect(parseIpv6Text('10.0.0.1::1')).toBeUndefined();
    expect(parseIpv6Text('1:10.0.0.1::')).toBeUndefined();
  });

  it('round-trips every address through its text', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 4, maxLength: 4 }), (a) => {
        expect(parseIpv4Text(formatIpv4(a))).toEqual(a);
      }),
    );
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (a) => {
        expect(parseIpv6Text(formatIpv6(a))).toEqual(a);
        expect(parseIpText(formatIp(a))).toEqual(a);
      }),
    );
  });
});
