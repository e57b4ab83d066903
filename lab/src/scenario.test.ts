import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { moatClientLine, moatRulesLine, vifIps } from './firewall-vm.ts';
import {
  canonicalIpv6,
  compareRuns,
  expectationFor,
  outcomeMeets,
  parseScenario,
  qubesIp6,
  rulesOfFamily,
} from './scenario.ts';
import { judgeProbe, probeCommand, reportedSource } from './scenario-run.ts';

const suite = new URL('../../test/scenarios/', import.meta.url).pathname;
const example = `${suite}direct-upstream.json`;

const minimal = () => ({
  version: 1,
  name: 't',
  upstream: { ip: '10.137.0.5' },
  clients: [{ name: 'work', ip: '10.137.0.10' }],
  steps: [{ from: 'work', probe: 'ping', to: '10.137.0.5', expect: 'allow' }],
});

describe('lab scenarios, format version 1', () => {
  it('reads the example scenario with its rule lists and maps, repeats and actions', () => {
    const s = parseScenario(readFileSync(example, 'utf8'), 'direct-upstream.json');
    expect(s.firewall).toBe('none');
    expect(s.upstream.tcpPorts).toEqual([7, 80]);
    expect(s.clients.map((c) => [c.name, [...c.rules.keys()]])).toEqual([
      ['work', [0, 1]],
      ['personal', [0, 10]],
    ]);
    const repeat = s.steps.find((st) => st.kind === 'repeat');
    expect(repeat && repeat.kind === 'repeat' && repeat.steps.map((st) => st.kind)).toEqual([
      'detach',
      'probe',
      'attach',
      'probe',
    ]);
  });

  it('defaults: firewall none, pv, echo on port 7', () => {
    const s = parseScenario(minimal());
    expect([s.firewall, s.virtMode, s.upstream.tcpPorts, s.upstream.udpPorts]).toEqual([
      'none',
      'pv',
      [7],
      [7],
    ]);
  });

  it.each([
    [{ version: 2 }, 'scenario.version: must be 1'],
    [{ firewall: 'pf' }, 'scenario.firewall: "pf" is not a firewall this lab knows (none, linux, moat)'],
    [
      { firewall: 'linux', firewall_ip: '10.137.0.5' },
      "scenario.firewall_ip: 10.137.0.5 is the upstream's address",
    ],
    [{ firewall_ip: '10.137.0.6' }, 'scenario.firewall_ip: only with a firewall'],
    [
      { firewall: 'linux', clients: [{ name: 'work', ip: '10.137.0.6' }] },
      'scenario.clients[0].ip: 10.137.0.6 is used twice',
    ],
    [
      { steps: [{ from: 'work', probe: 'ping', to: '1.2.3.4', source: '10.137.0.9', expect: 'drop' }] },
      'steps[0].source: only for tcp/udp probes',
    ],
    [
      { steps: [{ from: 'work', probe: 'iperf3', to: '1.2.3.4', expect: 'deny' }] },
      'steps[0].expect: an iperf3 probe expects allow',
    ],
    [
      { steps: [{ from: 'work', probe: 'tcp', on: 'c', to: '1.2.3.4', expect: 'deny' }] },
      'steps[0]: unknown field "to"',
    ],
    [{ upstream: { ip: '10.137.0' } }, 'scenario.upstream.ip: "10.137.0" is not an IPv4 address'],
    [{ clients: [{ name: 'work', ip: '10.137.0.5' }] }, 'scenario.clients[0].ip: 10.137.0.5 is used twice'],
    [
      { clients: [{ name: 'w', ip: '10.137.0.9', rules: ['proto=tcp'] }] },
      'needs action=accept or action=drop',
    ],
    [
      { clients: [{ name: 'w', ip: '10.137.0.9', rules: ['action=accept port=80'] }] },
      '"port=80" is not a Qubes rule',
    ],
    [
      { steps: [{ from: 'nobody', probe: 'ping', to: '1.2.3.4', expect: 'allow' }] },
      'no client named "nobody"',
    ],
    [
      { steps: [{ from: 'work', probe: 'tcp', to: '1.2.3.4', expect: 'allow' }] },
      'steps[0].port: must be an integer',
    ],
    [
      { steps: [{ from: 'work', probe: 'ping', to: '1.2.3.4', expect: 'maybe' }] },
      'steps[0].expect: must be one of',
    ],
    [{ steps: [{ action: 'reboot' }] }, 'unknown action "reboot"'],
    [{ steps: [{ action: 'wait', ms: 1, extra: 1 }] }, 'unknown field "extra"'],
    [{ extra: true }, 'unknown field "extra"'],
    [{ description: 'x'.repeat(1001) }, 'scenario.description: 1001 characters, more than 1000'],
  ])('refuses %j with a message naming the field', (patch, message) => {
    expect(() => parseScenario({ ...minimal(), ...patch })).toThrow(message);
  });

  it('reads every scenario of the suite', () => {
    for (const file of readdirSync(suite).filter((f) => f.endsWith('.json'))) {
      const s = parseScenario(readFileSync(`${suite}${file}`, 'utf8'), file);
      expect(s.steps.length).toBeGreaterThan(0);
    }
  });

  it('a firewall scenario: the firewall address, probes with source, hold, on and iperf3', () => {
    const s = parseScenario(readFileSync(`${suite}rules.json`, 'utf8'), 'rules.json');
    expect([s.firewall, s.firewallIp]).toEqual(['moat', '10.137.0.6']);
    const probes = s.steps.filter((st) => st.kind === 'probe');
    expect(probes.some((p) => p.source === '10.137.0.10')).toBe(true);
    const held = probes.find((p) => p.hold === 'web');
    const again = probes.find((p) => p.on === 'web');
    expect(held && probeCommand(held)).toMatchObject({ op: 'tcp', hold: 'web', readReply: true });
    expect(again && probeCommand(again)).toEqual({ op: 'tcp-again', hold: 'web', timeoutMs: 5000 });
    const iperf = parseScenario({
      ...minimal(),
      steps: [{ from: 'work', probe: 'iperf3', to: '10.137.0.5', reverse: true, expect: 'allow' }],
    }).steps[0];
    expect(iperf?.kind === 'probe' && probeCommand(iperf)).toEqual({
      op: 'iperf3',
      to: '10.137.0.5',
      seconds: 3,
      reverse: true,
    });
  });

  it('firewall moat parses; the lab waits for the line that ends each of its rule commits', () => {
    const s = parseScenario({ ...minimal(), firewall: 'moat' });
    expect(s.firewall).toBe('moat');
    const line = moatRulesLine('10.137.0.1');
    expect(line.test('sys-moat info: New firewall rules for 10.137.0.1: 2 rules, policy drop')).toBe(true);
    expect(
      line.test(
        'sys-moat info: Failed to resolve dsthost for 10.137.0.1 (nowhere.test: NXDOMAIN), blocking traffic',
      ),
    ).toBe(true);
    expect(line.test('sys-moat info: New firewall rules for 10.137.0.12: 2 rules, policy drop')).toBe(false);
    expect(line.test('sys-moat info: waiting for DNS answers for a.test (10.137.0.1)')).toBe(false);
  });

  it('sys-moat: a client vif with an IPv6 address too, its connected line and its IPv6 tree line', () => {
    expect(vifIps('10.137.0.10', 'fd09:24ef:4179::a89:a')).toBe('10.137.0.10 fd09:24ef:4179::a89:a');
    expect(vifIps('10.137.0.10', undefined)).toBe('10.137.0.10');
    const connected = moatClientLine('10.137.0.10');
    expect(
      connected.test('sys-moat info: vif3.0: client 10.137.0.10 fd09:24ef:4179::a89:a connected as link 2'),
    ).toBe(true);
    expect(connected.test('sys-moat info: vif3.0: client 10.137.0.10 connected as link 2')).toBe(true);
    expect(connected.test('sys-moat info: vif3.0: client 10.137.0.100 connected as link 2')).toBe(false);
    expect(
      moatRulesLine('fd09:24ef:4179::a89:a').test(
        'sys-moat info: New firewall rules for fd09:24ef:4179::a89:a: 2 rules, policy drop',
      ),
    ).toBe(true);
  });

  it('refuses text that is not JSON', () => {
    expect(() => parseScenario('{', 'x.json')).toThrow('x.json: not JSON');
  });

  it('deny is reject or drop; reject is any refusal that came back', () => {
    expect(outcomeMeets('accepted', 'allow')).toBe(true);
    expect(outcomeMeets('refused', 'reject')).toBe(true);
    expect(outcomeMeets('icmp', 'reject')).toBe(true);
    expect(outcomeMeets('silence', 'reject')).toBe(false);
    expect(outcomeMeets('silence', 'drop')).toBe(true);
    expect(['refused', 'icmp', 'silence'].every((o) => outcomeMeets(o as 'icmp', 'deny'))).toBe(true);
    expect(outcomeMeets('accepted', 'deny')).toBe(false);
  });

  it('judges what the upstream saw and what DNS answered', () => {
    const step = { kind: 'probe', from: 'w', probe: 'tcp', to: '1.2.3.4', port: 7, expect: 'allow' } as const;
    expect(reportedSource('from 10.137.0.10:4242\nhello')).toBe('10.137.0.10');
    expect(
      judgeProbe(
        { ...step, upstreamSees: '10.137.0.10' },
        { outcome: 'accepted', reply: 'from 10.137.0.10:1\nhello' },
      ).ok,
    ).toBe(true);
    expect(
      judgeProbe(
        { ...step, upstreamSees: '10.137.0.10' },
        { outcome: 'accepted', reply: 'from 10.137.0.1:1' },
      ).why,
    ).toBe('upstream saw 10.137.0.1, expected 10.137.0.10');
    const dns = {
      kind: 'probe',
      from: 'w',
      probe: 'dns',
      name: 'a.test',
      expect: 'allow',
      answer: ['192.0.2.1'],
    } as const;
    expect(judgeProbe(dns, { outcome: 'accepted', addresses: ['192.0.2.1'] }).ok).toBe(true);
    expect(judgeProbe(dns, { outcome: 'accepted', addresses: [] }).ok).toBe(false);
    expect(judgeProbe(step, { outcome: 'silence' }).why).toBe('expected allow, got silence');
    const ping = { kind: 'probe', from: 'w', probe: 'ping', to: 'ff02::2', expect: 'drop' } as const;
    expect(judgeProbe(ping, { outcome: 'silence' }).ok).toBe(true);
    expect(
      judgeProbe(ping, { outcome: 'silence', sentNothing: 'ping: sendto: Network is unreachable' }),
    ).toEqual({
      ok: false,
      result: 'not sent',
      why: 'the probe sent nothing: ping: sendto: Network is unreachable',
    });
  });

  it('a step where the Linux reference differs by design holds each firewall to its own expectation', () => {
    const s = parseScenario({
      ...minimal(),
      steps: [
        {
          from: 'work',
          probe: 'tcp',
          to: '1.2.3.4',
          port: 7,
          expect: 'drop',
          expect_linux: 'reject',
          why: 'conntrack picks the flow up again',
        },
      ],
    });
    const step = s.steps[0];
    if (step?.kind !== 'probe') throw new Error('not a probe');
    expect(step.linux).toEqual({ expect: 'reject', why: 'conntrack picks the flow up again' });
    expect([
      expectationFor(step, 'moat'),
      expectationFor(step, 'linux'),
      expectationFor(step, 'none'),
    ]).toEqual(['drop', 'reject', 'drop']);
    expect(judgeProbe(step, { outcome: 'icmp' }, 'linux').ok).toBe(true);
    expect(judgeProbe(step, { outcome: 'icmp' }, 'moat').why).toBe('expected drop, got icmp');
    expect(judgeProbe(step, { outcome: 'silence' }, 'linux').why).toBe('expected reject, got silence');
  });

  it.each([
    [{ expect_linux: 'reject' }, 'steps[0].why: must be a non-empty string'],
    [{ why: 'x' }, 'steps[0].expect_linux: must be a non-empty string'],
    [{ expect_linux: 'allow', why: 'x' }, 'steps[0].expect_linux: is the same as expect ("allow")'],
    [{ expect_linux: 'maybe', why: 'x' }, 'steps[0].expect_linux: must be one of'],
  ])('refuses a Linux difference %j without its reason or with a wrong one', (patch, message) => {
    const step = { from: 'work', probe: 'ping', to: '1.2.3.4', expect: 'allow', ...patch };
    expect(() => parseScenario({ ...minimal(), steps: [step] })).toThrow(message);
  });

  it('pings an IPv6 address out of eth0; tcp/udp take IPv6 too, iperf3 stays IPv4', () => {
    const s = parseScenario({
      ...minimal(),
      steps: [{ from: 'work', probe: 'ping', to: 'ff02::2', expect: 'drop' }],
    });
    expect(s.steps[0]?.kind === 'probe' && probeCommand(s.steps[0])).toEqual({
      op: 'ping',
      to: 'ff02::2',
      count: 1,
    });
    expect(() =>
      parseScenario({
        ...minimal(),
        steps: [{ from: 'work', probe: 'ping', to: 'ff02::zz', expect: 'drop' }],
      }),
    ).toThrow('steps[0].to: "ff02::zz" is not an IPv6 address');
    expect(() =>
      parseScenario({
        ...minimal(),
        steps: [{ from: 'work', probe: 'tcp', to: 'ff02::zz', port: 7, expect: 'drop' }],
      }),
    ).toThrow('steps[0].to: "ff02::zz" is not an IPv6 address');
    expect(() =>
      parseScenario({
        ...minimal(),
        steps: [{ from: 'work', probe: 'iperf3', to: 'fd09::1', expect: 'allow' }],
      }),
    ).toThrow('steps[0].to: an iperf3 probe goes to an IPv4 address');
  });

  describe('IPv6 (optional fields of version 1: client and upstream ip6, firewall_ip6)', () => {
    const ipv6 = (patch: Record<string, unknown> = {}) => ({
      ...minimal(),
      firewall: 'moat',
      upstream: { ip: '10.137.0.5', extra_addresses: ['192.0.2.10', '2001:DB8:10:0::10'] },
      clients: [
        { name: 'work', ip: '10.137.0.10', ip6: true, rules: ['action=accept dst6=2001:db8:10::/64'] },
        { name: 'personal', ip: '10.137.0.11', ip6: 'FD09:24EF:4179:0:0:0:A89:B' },
        { name: 'old', ip: '10.137.0.12' },
      ],
      ...patch,
    });

    it("gives every VM on the path Qubes' address for its IPv4 one, canonical as qubesd writes it", () => {
      const s = parseScenario(ipv6());
      expect(s.clients.map((c) => c.ip6)).toEqual([
        'fd09:24ef:4179::a89:a',
        'fd09:24ef:4179::a89:b',
        undefined,
      ]);
      expect(s.firewallIp6).toBe('fd09:24ef:4179::a89:6');
      expect(s.upstream.ip6).toBe('fd09:24ef:4179::a89:5');
      expect(s.upstream.extraAddresses).toEqual(['192.0.2.10', '2001:db8:10::10']);
      expect(parseScenario(ipv6({ firewall_ip6: 'fd09:24ef:4179::a89:60' })).firewallIp6).toBe(
        'fd09:24ef:4179::a89:60',
      );
    });

    it('derives addresses as get_ip6_for_vm does (IPv4 in the low 32 bits of fd09:24ef:4179::/48)', () => {
      expect(qubesIp6('10.137.0.6')).toBe('fd09:24ef:4179::a89:6');
      expect(qubesIp6('10.137.1.44')).toBe('fd09:24ef:4179::a89:12c');
      expect(qubesIp6('10.138.0.3')).toBe('fd09:24ef:4179::a8a:3');
      expect(canonicalIpv6('2001:DB8:0:0:1:0:0:1')).toBe('2001:db8::1:0:0:1');
      expect(canonicalIpv6('fe80::1%eth0')).toBeUndefined();
      expect(canonicalIpv6('10.0.0.1')).toBeUndefined();
    });

    it('without a client that has ip6 an existing file reads as before (no IPv6 anywhere)', () => {
      const s = parseScenario({ ...minimal(), firewall: 'moat' });
      expect([s.firewallIp6, s.upstream.ip6, 'ip6' in (s.clients[0] ?? {})]).toEqual([
        undefined,
        undefined,
        false,
      ]);
    });

    it('takes IPv6 probe targets, sources and upstream_sees of the same family', () => {
      const s = parseScenario(
        ipv6({
          steps: [
            {
              from: 'work',
              probe: 'udp',
              to: '2001:db8:10::10',
              port: 7,
              source: 'fd09:24ef:4179::a89:63',
              expect: 'allow',
              upstream_sees: 'FD09:24EF:4179::A89:6',
            },
          ],
        }),
      );
      const step = s.steps[0];
      expect(step?.kind === 'probe' && [step.to, step.source, step.upstreamSees]).toEqual([
        '2001:db8:10::10',
        'fd09:24ef:4179::a89:63',
        'fd09:24ef:4179::a89:6',
      ]);
      expect(step?.kind === 'probe' && probeCommand(step)).toEqual({
        op: 'udp',
        to: '2001:db8:10::10',
        port: 7,
        source: 'fd09:24ef:4179::a89:63',
      });
    });

    it.each([
      [{ firewall: 'none' }, 'scenario.clients[0].ip6: only with a firewall'],
      [
        { clients: [{ name: 'work', ip: '10.137.0.10', ip6: '10.0.0.1' }] },
        'scenario.clients[0].ip6: "10.0.0.1" is not an IPv6 address',
      ],
      [
        { clients: [{ name: 'work', ip: '10.137.0.10' }], firewall_ip6: 'fd09::6' },
        'scenario.firewall_ip6: only with a client that has ip6',
      ],
      [
        { clients: [{ name: 'work', ip: '10.137.0.10' }] },
        'scenario.upstream.extra_addresses: 2001:db8:10::10: IPv6 addresses only with a client that has ip6',
      ],
      [
        { clients: [{ name: 'work', ip: '10.137.0.10' }], upstream: { ip: '10.137.0.5', ip6: 'fd09::5' } },
        'scenario.upstream.ip6: only with a client that has ip6',
      ],
      [
        {
          clients: [
            { name: 'work', ip: '10.137.0.10', ip6: true },
            { name: 'personal', ip: '10.137.0.11', ip6: 'fd09:24ef:4179::a89:a' },
          ],
        },
        'scenario.clients[1].ip6: fd09:24ef:4179::a89:a is used twice',
      ],
      [
        { firewall_ip6: 'fd09:24ef:4179::a89:a' },
        'scenario.clients[0].ip6: fd09:24ef:4179::a89:a is used twice',
      ],
      [
        {
          steps: [
            { from: 'work', probe: 'tcp', to: 'fd09::5', port: 7, source: '10.137.0.99', expect: 'drop' },
          ],
        },
        'steps[0].source: 10.137.0.99 is not of the same address family as "to" (fd09::5)',
      ],
      [
        {
          steps: [
            {
              from: 'work',
              probe: 'tcp',
              to: '192.0.2.10',
              port: 7,
              upstream_sees: 'fd09::6',
              expect: 'allow',
            },
          ],
        },
        'steps[0].upstream_sees: fd09::6 is not of the same address family as "to" (192.0.2.10)',
      ],
    ])('refuses %j', (patch, message) => {
      expect(() => parseScenario(ipv6(patch))).toThrow(message);
    });

    it('splits a rule list into the trees dom0 writes: dst6 rules out of IPv4, dst4 out of IPv6', () => {
      const rules = new Map([
        [0, 'action=accept dst6=2001:db8:10::/64'],
        [1, 'action=accept dst4=192.0.2.10/32 proto=tcp'],
        [2, 'action=accept proto=icmp'],
        [3, 'action=drop comment=not dst6=2001:db8::/32'],
      ]);
      expect([...rulesOfFamily(rules, 4).keys()]).toEqual([1, 2, 3]);
      expect([...rulesOfFamily(rules, 6).keys()]).toEqual([0, 2, 3]);
    });

    it('reads the IPv6 source an echo reports', () => {
      expect(reportedSource('from fd09:24ef:4179::a89:6:40112 hello')).toBe('fd09:24ef:4179::a89:6');
      expect(reportedSource('from fd09:24ef:4179::a89:6:40112\nhello')).toBe('fd09:24ef:4179::a89:6');
      expect(reportedSource('from 10.137.0.6:40112 hello')).toBe('10.137.0.6');
    });
  });

  it('compares the rows of a run with sys-moat and one with the Linux reference', () => {
    const row = (step: string, result: string, ok = true, detail?: unknown) =>
      ({ step, what: `w ${step}`, result, ok, ms: 1, ...(detail ? { detail } : {}) }) as const;
    const why = { differs: { expect: 'drop', expect_linux: 'reject', why: 'conntrack' } };
    const same = compareRuns(
      [row('0.f', 'enforcing'), row('1', 'silence'), row('2', 'silence', true, why)],
      [row('0.f', 'enforcing'), row('1', 'icmp'), row('2', 'icmp', true, why)],
    );
    expect(same.mismatches).toEqual([]);
    expect(same.rows.map((r) => [r.step, r.moat, r.linux, r.same, r.differs])).toEqual([
      ['0.f', 'enforcing', 'enforcing', true, undefined],
      ['1', 'silence', 'icmp', true, undefined],
      ['2', 'silence', 'icmp', true, 'conntrack'],
    ]);
    expect(same.table).toContain('(differs by design: conntrack)');
    const other = compareRuns([row('1', 'accepted'), row('2', 'accepted')], [row('1', 'silence', false)]);
    expect(other.mismatches).toEqual([
      '1 w 1: moat accepted, linux silence',
      '2 w 2: moat accepted, linux (no row)',
    ]);
  });
});
