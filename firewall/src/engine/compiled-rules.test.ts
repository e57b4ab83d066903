import { describe, expect, it } from 'vitest';
import { compileRuleEntries } from '../rules/client-rules.ts';
import { V_DROPPED, V_FORWARDED } from './engine.ts';
import { frame4 } from './frames.ts';
import { C1, C1_MAC, ip, makeEngine, meta0, REMOTE } from './test-helpers.ts';

/** The engine with rule sets compiled from QubesDB entries by the rules code. */
function engineWith(entries: [string, string][], extra = {}) {
  const { engine, sink } = makeEngine({ rejectWithIcmp: false, ...extra });
  const c = engine.addClient({ mac: C1_MAC, ip4: C1 });
  engine.setRuleSet(
    c,
    compileRuleEntries(entries, '10.137.0.20', { dnsServers: [ip('10.139.1.1'), ip('10.139.1.2')] }),
  );
  engine.tick(1);
  const send = (spec: Omit<Parameters<typeof frame4>[0], 'src'>) => {
    const f = frame4({ src: C1, ...spec });
    return engine.receive(c, f, 0, f.length, meta0());
  };
  return { engine, sink, c, send };
}

describe('QubesDB rule sets through the engine (the mirage bugs we must not have)', () => {
  it('reads past gaps in rule numbers and honours the policy', () => {
    const { send, engine } = engineWith([
      ['policy', 'drop'],
      ['0001', 'action=drop proto=tcp dstports=25-25'],
      ['0005', 'action=accept proto=tcp'],
    ]);
    expect(send({ dst: REMOTE, proto: 6, dport: 25 })).toBe(V_DROPPED);
    expect(send({ dst: REMOTE, proto: 6, dport: 443 })).toBe(V_FORWARDED);
    expect(send({ dst: REMOTE, proto: 17, dport: 443 })).toBe(V_DROPPED); // the policy
    const rules = engine.stats().links[1]!.rules!;
    expect(rules.map((r) => [r.rule, r.packets])).toEqual([
      [1, 1],
      [5, 1],
      ['policy', 1],
    ]);
  });

  it('applies specialtarget=dns together with proto', () => {
    const { send } = engineWith([
      ['policy', 'drop'],
      ['0000', 'action=drop proto=tcp specialtarget=dns'],
      ['0001', 'action=accept'],
    ]);
    expect(send({ dst: ip('10.139.1.1'), proto: 6, dport: 53 })).toBe(V_DROPPED);
    expect(send({ dst: ip('10.139.1.1'), proto: 17, dport: 53 })).toBe(V_FORWARDED);
    expect(send({ dst: REMOTE, proto: 6, dport: 80 })).toBe(V_FORWARDED); // not all TCP
  });

  it('fails closed when a dsthost cannot be resolved, instead of skipping a drop rule', () => {
    const { send, engine } = engineWith([
      ['policy', 'drop'],
      ['0000', 'action=drop dsthost=blocked.example'],
      ['0001', 'action=accept'],
    ]);
    expect(send({ dst: REMOTE, proto: 6, dport: 443 })).toBe(V_DROPPED);
    expect(engine.stats().links[1]!.failClosedReason).toBeDefined();
  });

  it('drops everything for a rule set that does not parse', () => {
    const { send } = engineWith([
      ['policy', 'drop'],
      ['0000', 'action=accept dpi=NO'],
    ]);
    expect(send({ dst: REMOTE, proto: 6, dport: 443 })).toBe(V_DROPPED);
  });
});
