import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseIpText as parseIp } from '../wire/address.ts';
import { compileRuleEntries } from './client-rules.ts';
import { dropAllRuleSet } from './compile.ts';
import type { RuleEnvironment } from './semantics.ts';
import type { FlowQuery, RuleDecision, RuleSet } from './types.ts';

const DNS1 = parseIp('10.139.1.1')!;
const DNS2 = parseIp('10.139.1.2')!;
const env: RuleEnvironment = { dnsServers: [DNS1, DNS2] };

function tree(...rules: string[]): [string, string][] {
  return [['policy', 'drop'], ...rules.map((r, i): [string, string] => [String(i).padStart(4, '0'), r])];
}

function q(dst: string, proto: number, port = -1, icmpType = -1): FlowQuery {
  const a = parseIp(dst)!;
  const tcpUdp = proto === 6 || proto === 17;
  return {
    family: a.length === 4 ? 4 : 6,
    proto,
    dst: a,
    dstPort: tcpUdp ? port : -1,
    icmpType: tcpUdp ? -1 : icmpType,
    icmpCode: -1,
  };
}

function decide(set: RuleSet, query: FlowQuery): RuleDecision {
  return set.evaluate(query, { action: 'drop', rule: -2 });
}

const TCP = 6;
const UDP = 17;
const ICMP = 1;
const ICMP6 = 58;

describe('rule evaluation (Linux sys-firewall semantics)', () => {
  it('takes the first matching rule, then the policy', () => {
    const set = compileRuleEntries(
      tree(
        'action=drop proto=tcp dstports=80-80',
        'action=accept proto=tcp',
        'action=accept proto=udp dstports=53-53',
      ),
      '10.137.0.5',
      env,
    );
    expect(decide(set, q('1.1.1.1', TCP, 80))).toEqual({ action: 'drop', rule: 0 });
    expect(decide(set, q('1.1.1.1', TCP, 81))).toEqual({ action: 'accept', rule: 1 });
    expect(decide(set, q('1.1.1.1', UDP, 53))).toEqual({ action: 'accept', rule: 2 });
    expect(decide(set, q('1.1.1.1', UDP, 54))).toEqual({ action: 'drop', rule: -1 });
    expect(set.ruleNumbers).toEqual([0, 1, 2]);
  });

  it('applies rules after a gap in the numbering (mirage truncates at the first gap)', () => {
    // dom0's IPv4 tree of [dst6 rule, accept tcp, drop]: 0000 omitted
    const set = compileRuleEntries(
      [
        ['policy', 'drop'],
        ['0001', 'action=accept proto=tcp'],
        ['0005', 'action=accept dst4=192.168.0.0/16'],
      ],
      '10.137.0.5',
      env,
    );
    expect(decide(set, q('1.1.1.1', TCP, 443))).toEqual({ action: 'accept', rule: 1 });
    expect(decide(set, q('192.168.7.7', UDP, 9))).toEqual({ action: 'accept', rule: 5 });
    expect(decide(set, q('1.1.1.1', UDP, 9))).toEqual({ action: 'drop', rule: -1 });
    expect(set.ruleNumbers).toEqual([1, 5]);
  });

  it('honours policy=accept (mirage ignores the policy key)', () => {
    const set = compileRuleEntries(
      [
        ['policy', 'accept'],
        ['0000', 'action=drop proto=udp'],
      ],
      '10.137.0.5',
      env,
    );
    expect(decide(set, q('1.1.1.1', TCP, 1))).toEqual({ action: 'accept', rule: -1 });
    expect(decide(set, q('1.1.1.1', UDP, 1))).toEqual({ action: 'drop', rule: 0 });
  });

  it('limits specialtarget=dns with proto to DNS servers on port 53 (mirage drops all TCP)', () => {
    const set = compileRuleEntries(
      tree('action=drop proto=tcp specialtarget=dns', 'action=accept'),
      '10.137.0.5',
      env,
    );
    expect(decide(set, q('10.139.1.1', TCP, 53))).toEqual({ action: 'drop', rule: 0 });
    expect(decide(set, q('10.139.1.2', TCP, 53))).toEqual({ action: 'drop', rule: 0 });
    expect(decide(set, q('10.139.1.1', UDP, 53))).toEqual({ action: 'accept', rule: 1 });
    expect(decide(set, q('1.1.1.1', TCP, 53))).toEqual({ action: 'accept', rule: 1 });
    expect(decide(set, q('10.139.1.1', TCP, 443))).toEqual({ action: 'accept', rule: 1 });
    expect(decide(set, q('93.184.216.34', TCP, 443))).toEqual({ action: 'accept', rule: 1 });
  });

  it('matches specialtarget=dns without proto on TCP and UDP 53 to the DNS servers only', () => {
    const set = compileRuleEntries(tree('action=accept specialtarget=dns'), '10.137.0.5', env);
    expect(decide(set, q('10.139.1.1', UDP, 53)).action).toBe('accept');
    expect(decide(set, q('10.139.1.2', TCP, 53)).action).toBe('accept');
    expect(decide(set, q('10.139.1.3', UDP, 53)).action).toBe('drop');
    expect(decide(set, q('8.8.8.8', UDP, 53)).action).toBe('drop');
    expect(decide(set, q('10.139.1.1', UDP, 5353)).action).toBe('drop');
    expect(decide(set, q('10.139.1.1', ICMP, -1, 8)).action).toBe('drop');
  });

  it('leaves out a specialtarget=dns rule whose dstports are not exactly 53, as Linux does', () => {
    const set = compileRuleEntries(
      tree(
        'action=drop specialtarget=dns dstports=50-60',
        'action=accept proto=udp specialtarget=dns dstports=53-53',
      ),
      '10.137.0.5',
      env,
    );
    expect(decide(set, q('10.139.1.1', UDP, 53))).toEqual({ action: 'accept', rule: 1 });
    expect(decide(set, q('10.139.1.1', TCP, 53))).toEqual({ action: 'drop', rule: -1 });
  });

  it('never matches specialtarget=dns when no DNS server is known', () => {
    const set = compileRuleEntries(tree('action=accept specialtarget=dns'), '10.137.0.5', {});
    expect(decide(set, q('10.139.1.1', UDP, 53))).toEqual({ action: 'drop', rule: -1 });
  });

  it('matches dstports without proto on TCP and UDP only', () => {
    const set = compileRuleEntries(tree('action=accept dstports=1000-2000'), '10.137.0.5', env);
    expect(decide(set, q('1.2.3.4', TCP, 1500)).action).toBe('accept');
    expect(decide(set, q('1.2.3.4', UDP, 1000)).action).toBe('accept');
    expect(decide(set, q('1.2.3.4', UDP, 2001)).action).toBe('drop');
    expect(decide(set, q('1.2.3.4', 132, -1)).action).toBe('drop');
  });

  it('matches icmptype, and proto=icmp means ICMPv6 in an IPv6 tree', () => {
    const v4 = compileRuleEntries(tree('action=accept proto=icmp icmptype=8'), '10.137.0.5', env);
    expect(decide(v4, q('1.2.3.4', ICMP, -1, 8)).action).toBe('accept');
    expect(decide(v4, q('1.2.3.4', ICMP, -1, 13)).action).toBe('drop');
    const v6 = compileRuleEntries(
      tree('action=accept proto=icmp icmptype=128'),
      'fd09:24ef:4179::a89:5',
      env,
    );
    expect(decide(v6, q('2001:db8::1', ICMP6, -1, 128)).action).toBe('accept');
    expect(decide(v6, q('2001:db8::1', ICMP, -1, 128)).action).toBe('drop');
  });

  it('matches dst4 and dst6 prefixes, each only in its own family', () => {
    const v6 = compileRuleEntries(
      tree('action=drop dst6=2a00:1450:4000::/37 proto=tcp', 'action=accept'),
      'fd09:24ef:4179::a89:5',
      env,
    );
    expect(decide(v6, q('2a00:1450:4001::5', TCP, 443))).toEqual({ action: 'drop', rule: 0 });
    expect(decide(v6, q('2a00:1450:5000::5', TCP, 443))).toEqual({ action: 'accept', rule: 1 });
    expect(decide(v6, q('2a00:1450:4001::5', UDP, 443))).toEqual({ action: 'accept', rule: 1 });
    // an IPv4 query never reaches the IPv6 client set
    expect(decide(v6, q('1.2.3.4', TCP, 443))).toEqual({ action: 'drop', rule: -1 });
  });

  it('forwards other IP protocols when a rule without proto allows them (mirage drops them)', () => {
    const set = compileRuleEntries(tree('action=accept dst4=10.0.0.0/8'), '10.137.0.5', env);
    expect(decide(set, q('10.1.2.3', 47)).action).toBe('accept'); // GRE
    expect(decide(set, q('11.1.2.3', 47)).action).toBe('drop');
  });

  it('drops everything for a tree that fails to parse, saying why', () => {
    const set = compileRuleEntries(tree('action=accept', 'action=accept dpi=NO'), '10.137.0.5', env);
    expect(set.failClosedReason).toMatch(
      /Failed to parse rules for 10.137.0.5 .*unsupported rule option: "dpi"/,
    );
    expect(decide(set, q('1.1.1.1', TCP, 80))).toEqual({ action: 'drop', rule: -1 });
  });

  it('drops everything when a dsthost drop rule cannot be resolved (mirage fails open)', () => {
    const set = compileRuleEntries(
      tree('action=drop dsthost=ads.example', 'action=accept'),
      '10.137.0.5',
      env,
    );
    expect(set.failClosedReason).toMatch(/dsthost could not be resolved: ads.example/);
    expect(decide(set, q('1.1.1.1', TCP, 80))).toEqual({ action: 'drop', rule: -1 });
  });

  it('matches a resolved dsthost on its addresses of the tree family only', () => {
    const hostAddresses = new Map([
      ['www.example', [parseIp('93.184.216.34')!, parseIp('2606:2800:220:1::1')!]],
    ]);
    const set = compileRuleEntries(
      tree('action=accept dsthost=www.example proto=tcp dstports=443-443'),
      '10.137.0.5',
      {
        ...env,
        hostAddresses,
      },
    );
    expect(decide(set, q('93.184.216.34', TCP, 443))).toEqual({ action: 'accept', rule: 0 });
    expect(decide(set, q('93.184.216.35', TCP, 443))).toEqual({ action: 'drop', rule: -1 });
    // a v4 tree whose name has only AAAA records fails closed, like getaddrinfo(AF_INET)
    const only6 = compileRuleEntries(tree('action=accept dsthost=v6.example'), '10.137.0.5', {
      hostAddresses: new Map([['v6.example', [parseIp('2001:db8::1')!]]]),
    });
    expect(only6.failClosedReason).toMatch(/v6.example/);
  });

  it('treats an expired rule as absent and reports the next expiry', () => {
    const entries = tree('action=accept proto=tcp expire=1000', 'action=accept proto=udp expire=2000');
    const early = compileRuleEntries(entries, '10.137.0.5', { nowEpochSeconds: 999 });
    expect(decide(early, q('1.1.1.1', TCP, 1)).action).toBe('accept');
    expect(early.nextExpiry).toBe(1000);
    const later = compileRuleEntries(entries, '10.137.0.5', { nowEpochSeconds: 1000 });
    expect(decide(later, q('1.1.1.1', TCP, 1))).toEqual({ action: 'drop', rule: -1 });
    expect(decide(later, q('1.1.1.1', UDP, 1))).toEqual({ action: 'accept', rule: 1 });
    expect(later.nextExpiry).toBe(2000);
  });

  it('lets nothing out through a drop-all set', () => {
    const sets = [
      dropAllRuleSet('test'),
      compileRuleEntries(tree('action=drop'), '10.137.0.5', env),
      compileRuleEntries([['0000', 'action=accept']], '10.137.0.5', env), // no policy: fail closed
    ];
    const query = fc.record({
      family: fc.constantFrom(4 as const, 6 as const),
      proto: fc.integer({ min: 0, max: 255 }),
      dst: fc.uint8Array({ minLength: 16, maxLength: 16 }),
      dstPort: fc.integer({ min: -1, max: 65535 }),
      icmpType: fc.integer({ min: -1, max: 255 }),
      icmpCode: fc.integer({ min: -1, max: 255 }),
    });
    fc.assert(
      fc.property(query, (qq) => {
        for (const s of sets) expect(decide(s, qq).action).toBe('drop');
      }),
    );
  });
});

describe('index bounds', () => {
  it('fails closed instead of building an unbounded index from huge DNS answers', () => {
    const addrs = Array.from({ length: 64 }, (_, i) => Uint8Array.of(10, 0, i, 1));
    const hostAddresses = new Map([['big.example', addrs]]);
    const entries: [string, string][] = [['policy', 'drop']];
    for (let i = 0; i < 3200; i++)
      entries.push([String(i).padStart(4, '0'), `action=accept dsthost=big.example`]);
    const set = compileRuleEntries(entries, '10.137.0.5', { hostAddresses });
    expect(set.failClosedReason).toMatch(/too large to index \(more than 200000 index entries\)/);
    const v6 = Array.from({ length: 64 }, (_, i) =>
      Uint8Array.from({ length: 16 }, (_, j) => (i * 37 + j * 11) & 0xff),
    );
    const many = new Map(
      Array.from({ length: 200 }, (_, n): [string, Uint8Array[]] => [
        `h${n}.example`,
        v6.map((a) => Uint8Array.from(a, (b) => b ^ n)),
      ]),
    );
    const tree: [string, string][] = [
      ['policy', 'drop'],
      ...[...many.keys()].map((h, i): [string, string] => [
        String(i).padStart(4, '0'),
        `action=accept dsthost=${h}`,
      ]),
    ];
    const set6 = compileRuleEntries(tree, 'fd09:24ef:4179::a89:5', { hostAddresses: many });
    expect(set6.failClosedReason).toMatch(/more than 1000000 trie nodes/);
  });
});
