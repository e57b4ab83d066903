import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { outcomeMeets, parseScenario } from './scenario.ts';
import { judgeProbe, reportedSource } from './scenario-run.ts';

const example = new URL('../../test/scenarios/direct-upstream.json', import.meta.url).pathname;

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
    [{ firewall: 'moat' }, 'scenario.firewall: "moat" is not available yet'],
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
  ])('refuses %j with a message naming the field', (patch, message) => {
    expect(() => parseScenario({ ...minimal(), ...patch })).toThrow(message);
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
  });
});
