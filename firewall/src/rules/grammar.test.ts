import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatIp } from '../wire/address.ts';
import { parseRuleEntries, parseRuleLine, type QubesRule, reloadSource, ruleEntriesFor } from './grammar.ts';

/** A rule as a plain object, addresses in text, for table comparisons. */
function show(rule: QubesRule): Record<string, unknown> {
  const { text: _text, number: _n, dst, ...rest } = rule;
  const out: Record<string, unknown> = { ...rest };
  if (dst?.kind === 'prefix') out.dst = `${formatIp(dst.address)}/${dst.length}`;
  if (dst?.kind === 'host') out.dsthost = dst.name;
  return out;
}

describe('rule lines as dom0 writes them (qubes-core-admin qubes/firewall.py)', () => {
  const examples: [string, Record<string, unknown>][] = [
    ['action=drop proto=icmp', { action: 'drop', proto: 'icmp' }],
    [
      'action=drop proto=tcp dstports=80-80',
      { action: 'drop', proto: 'tcp', dstPorts: { low: 80, high: 80 } },
    ],
    ['action=accept proto=udp', { action: 'accept', proto: 'udp' }],
    ['action=accept specialtarget=dns', { action: 'accept', specialTarget: 'dns' }],
    [
      'action=accept dst4=8.8.8.8 proto=udp dstports=53-53',
      { action: 'accept', dst: '8.8.8.8/32', proto: 'udp', dstPorts: { low: 53, high: 53 } },
    ],
    [
      'action=drop dst6=2a00:1450:4000::/37 proto=tcp',
      { action: 'drop', dst: '2a00:1450:4000::/37', proto: 'tcp' },
    ],
    ['action=drop proto=tcp specialtarget=dns', { action: 'drop', proto: 'tcp', specialTarget: 'dns' }],
    ['action=drop', { action: 'drop' }],
    ['action=accept', { action: 'accept' }],
    [
      'action=accept proto=tcp dst4=1.2.3.0/24 dstports=80-443',
      { action: 'accept', dst: '1.2.3.0/24', proto: 'tcp', dstPorts: { low: 80, high: 443 } },
    ],
    ['action=accept dst4=0.0.0.0/0', { action: 'accept', dst: '0.0.0.0/0' }],
    [
      'action=accept dsthost=www.example.com proto=tcp',
      { action: 'accept', dsthost: 'www.example.com', proto: 'tcp' },
    ],
    ['action=accept proto=icmp icmptype=8', { action: 'accept', proto: 'icmp', icmpType: 8 }],
    // core-admin's ordering: action, dst*, proto, specialtarget, dstports, icmptype
    [
      'action=accept dst4=10.139.1.1/32 proto=udp specialtarget=dns dstports=53-53',
      {
        action: 'accept',
        dst: '10.139.1.1/32',
        proto: 'udp',
        specialTarget: 'dns',
        dstPorts: { low: 53, high: 53 },
      },
    ],
    ['action=accept dst6=::/0', { action: 'accept', dst: '::/0' }],
    ['action=accept dst6=fd09:24ef:4179::a89:7', { action: 'accept', dst: 'fd09:24ef:4179::a89:7/128' }],
    ['action=accept dst6=::ffff:10.0.0.1/128', { action: 'accept', dst: '::ffff:a00:1/128' }],
    // not dom0's own output, but what Linux accepts: a bare address, a single port, other orders
    ['action=accept dst4=1.2.3.4', { action: 'accept', dst: '1.2.3.4/32' }],
    [
      'action=accept proto=tcp dstports=22',
      { action: 'accept', proto: 'tcp', dstPorts: { low: 22, high: 22 } },
    ],
    ['proto=tcp action=drop', { action: 'drop', proto: 'tcp' }],
    // host bits are masked as nft does
    ['action=drop dst4=1.2.3.4/24', { action: 'drop', dst: '1.2.3.0/24' }],
    ['action=drop dsthost=Example.COM.', { action: 'drop', dsthost: 'example.com' }],
    // the admin API's extras: expire (seconds) and a free-text comment, placed last
    [
      'action=accept dst4=0.0.0.0/0 expire=1767225600',
      { action: 'accept', dst: '0.0.0.0/0', expire: 1767225600 },
    ],
    [
      'action=accept proto=tcp dstports=443-443 comment=allow https [work], see ticket: 12',
      {
        action: 'accept',
        proto: 'tcp',
        dstPorts: { low: 443, high: 443 },
        comment: 'allow https [work], see ticket: 12',
      },
    ],
    // core-admin qubes/tests/firewall.py: Rule.rule / api_rule strings
    [
      'action=accept proto=udp dstports=80-80',
      { action: 'accept', proto: 'udp', dstPorts: { low: 80, high: 80 } },
    ],
    ['action=accept proto=icmp icmptype=8', { action: 'accept', proto: 'icmp', icmpType: 8 }],
    [
      'action=accept expire=2063292452 proto=tcp comment=Some comment, with spaces',
      { action: 'accept', expire: 2063292452, proto: 'tcp', comment: 'Some comment, with spaces' },
    ],
    [
      'action=accept dst4=192.168.0.0/24 expire=1463292452',
      { action: 'accept', dst: '192.168.0.0/24', expire: 1463292452 },
    ],
    ['action=accept dstports=53-53', { action: 'accept', dstPorts: { low: 53, high: 53 } }],
    ['action=accept icmptype=0', { action: 'accept', icmpType: 0 }],
  ];
  it.each(examples)('parses %s', (line, expected) => {
    const r = parseRuleLine(line, 7);
    expect(r.ok, r.ok ? '' : r.reason).toBe(true);
    if (r.ok) {
      expect(show(r.value)).toEqual(expected);
      expect(r.value.number).toBe(7);
      expect(r.value.text).toBe(line);
    }
  });

  const invalid: [string, RegExp][] = [
    ['', /empty/],
    ['proto=tcp', /lacks action/],
    ['action=reject', /invalid action/],
    ['action=accept dpi=NO', /unsupported rule option: "dpi"/],
    ['action=accept colour=red', /unsupported/],
    ['action=accept  proto=tcp', /repeated space/],
    ['action=accept proto=tcp ', /trailing space/],
    ['action=accept proto', /without value/],
    ['action=accept proto=tcp=udp', /more than one '='/],
    ['action=accept proto=tcp proto=udp', /duplicated/],
    ['action=accept dst4=1.2.3.4/32 dsthost=a.b', /more than one of/],
    ['action=accept dst4=1.2.3/24', /invalid dst4/],
    ['action=accept dst4=1.2.3.256/32', /invalid dst4/],
    ['action=accept dst4=1.2.3.4/33', /invalid dst4/],
    ['action=accept dst4=01.2.3.4/-1', /invalid dst4/],
    ['action=accept dst6=2001:db8::1::2/64', /invalid dst6/],
    ['action=accept dst6=2001:db8::/129', /invalid dst6/],
    ['action=accept dst6=12345::/16', /invalid dst6/],
    ['action=accept dsthost=exa mple.com', /unsupported|without value/],
    ['action=accept dsthost=ex!ample.com', /invalid dsthost/],
    ['action=accept dsthost=a..b', /invalid dsthost/],
    [`action=accept dsthost=${'a'.repeat(64)}.com`, /invalid dsthost/],
    ['action=accept proto=sctp', /invalid proto/],
    ['action=accept specialtarget=ntp', /invalid specialtarget/],
    ['action=accept proto=icmp specialtarget=dns', /specialtarget=dns with proto=icmp/],
    ['action=accept proto=tcp dstports=443-80', /invalid dstports/],
    ['action=accept proto=tcp dstports=1-65536', /invalid dstports/],
    ['action=accept proto=tcp dstports=a-b', /invalid dstports/],
    ['action=accept proto=icmp dstports=1-2', /dstports with proto=icmp/],
    ['action=accept proto=icmp icmptype=256', /invalid icmptype/],
    ['action=accept proto=tcp icmptype=8', /icmptype with proto=tcp/],
    ['action=accept expire=soon', /invalid expire/],
    [`action=accept comment=${'x'.repeat(3100)}`, /longer than 3072/],
  ];
  it.each(invalid)('rejects %j', (line, reason) => {
    const r = parseRuleLine(line, 0);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(reason);
  });

  it('rejects rules of the other family, like Linux', () => {
    expect(parseRuleLine('action=accept dst6=::/0', 0, 4)).toMatchObject({
      ok: false,
      reason: /dst6 rule found for IPv4/,
    });
    expect(parseRuleLine('action=accept dst4=0.0.0.0/0', 0, 6)).toMatchObject({
      ok: false,
      reason: /dst4 rule found for IPv6/,
    });
    expect(parseRuleLine('action=accept dsthost=a.example', 0, 6).ok).toBe(true);
  });
});

describe('a client rule tree (multiread of /qubes-firewall/<ip>/)', () => {
  it('reads the default tree dom0 writes for a VM (core-admin test)', () => {
    const r = parseRuleEntries(
      {
        '/qubes-firewall/10.137.0.3': '',
        '/qubes-firewall/10.137.0.3/0000': 'action=accept',
        '/qubes-firewall/10.137.0.3/policy': 'drop',
      },
      '10.137.0.3',
    );
    expect(r).toMatchObject({
      ok: true,
      value: { policy: 'drop', rules: [{ number: 0, action: 'accept' }] },
    });
  });

  it('reads the tree of core-admin test_005_qdb_entries', () => {
    const r = parseRuleEntries({
      policy: 'drop',
      '0000': 'action=drop proto=icmp',
      '0001': 'action=drop proto=tcp dstports=80-80',
      '0002': 'action=accept proto=udp',
      '0003': 'action=accept specialtarget=dns',
    });
    expect(r.ok).toBe(true);
    if (r.ok)
      expect(r.value.rules.map(show)).toEqual([
        { action: 'drop', proto: 'icmp' },
        { action: 'drop', proto: 'tcp', dstPorts: { low: 80, high: 80 } },
        { action: 'accept', proto: 'udp' },
        { action: 'accept', specialTarget: 'dns' },
      ]);
  });

  it('sorts by number and keeps rules after gaps (mirage stops at the first gap)', () => {
    // dom0 numbers rules over the full list: a dst6 rule at 0000 is missing from the IPv4 tree
    const r = parseRuleEntries(
      [
        ['0010', 'action=drop'],
        ['0002', 'action=accept proto=tcp'],
        ['policy', 'drop'],
        ['0001', 'action=accept proto=udp'],
      ],
      '10.137.0.3',
    );
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.value.rules.map((x) => x.number)).toEqual([1, 2, 10]);
  });

  it('honours policy accept', () => {
    expect(parseRuleEntries({ policy: 'accept' })).toMatchObject({
      ok: true,
      value: { policy: 'accept', rules: [] },
    });
  });

  const broken: [string, Record<string, string>, RegExp][] = [
    ['no policy', { '0000': 'action=accept' }, /no 'policy'/],
    ['a bad policy', { policy: 'reject' }, /invalid policy/],
    ['a non-4-digit key', { policy: 'drop', '00001': 'action=accept' }, /non-rule/],
    ['a named key', { policy: 'drop', foo: 'action=accept' }, /non-rule/],
    [
      'one bad rule among good ones',
      { policy: 'drop', '0000': 'action=accept', '0001': 'action=maybe' },
      /rule 0001/,
    ],
    ['an unknown option', { policy: 'drop', '0000': 'action=accept dpi=NO' }, /unsupported/],
  ];
  it.each(broken)('fails the whole tree on %s', (_name, entries, reason) => {
    const r = parseRuleEntries(entries, '10.137.0.3');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(reason);
  });

  it('refuses keys of another client', () => {
    const r = parseRuleEntries({ '/qubes-firewall/10.137.0.4/policy': 'drop' }, '10.137.0.3');
    expect(r).toMatchObject({ ok: false, reason: /outside/ });
  });
});

describe('untrusted rule text', () => {
  it('never throws, whatever the bytes', () => {
    const token = fc.oneof(
      fc.constantFrom(
        'action=',
        'accept',
        'drop',
        'dst4=',
        'dst6=',
        'dsthost=',
        'proto=',
        'dstports=',
        'icmptype=',
      ),
      fc.constantFrom('specialtarget=dns', 'comment=', 'expire=', ' ', '  ', '=', '/', '-', ':', '.', '::'),
      fc.string({ maxLength: 6 }),
    );
    fc.assert(
      fc.property(
        fc.array(token, { maxLength: 12 }),
        fc.constantFrom(undefined, 4 as const, 6 as const),
        (parts, family) => {
          const line = parts.join('');
          const r = parseRuleLine(line, 0, family);
          if (!r.ok) expect(typeof r.reason).toBe('string');
          parseRuleEntries({ policy: 'drop', '0000': line });
        },
      ),
      { numRuns: 3000 },
    );
  });
});

describe('rule reload signalling', () => {
  it('reloads only on the base key dom0 writes last', () => {
    expect(reloadSource('/qubes-firewall/10.137.0.3')).toBe('10.137.0.3');
    expect(reloadSource('/qubes-firewall/fd09:24ef:4179::a89:3')).toBe('fd09:24ef:4179::a89:3');
    expect(reloadSource('/qubes-firewall/10.137.0.3/0000')).toBeUndefined();
    expect(reloadSource('/qubes-firewall/10.137.0.3/policy')).toBeUndefined();
    expect(reloadSource('/qubes-firewall/')).toBeUndefined();
    expect(reloadSource('/connected-ips')).toBeUndefined();
  });

  it("picks one client's entries out of a snapshot", () => {
    const snap = {
      '/qubes-firewall/10.137.0.3': '',
      '/qubes-firewall/10.137.0.3/policy': 'drop',
      '/qubes-firewall/10.137.0.30/policy': 'accept',
      '/qubes-ip': '10.137.0.5',
    };
    expect(ruleEntriesFor('10.137.0.3', snap)).toEqual([['/qubes-firewall/10.137.0.3/policy', 'drop']]);
  });
});
