/**
 * Where the engine disagreed with a Linux sys-firewall whose rules qubesagent/firewall.py
 * made from the same QubesDB tree (issue 12's difference classes); each case failed before.
 */
import { describe, expect, it } from 'vitest';
import { read16 } from '../wire/checksum.ts';
import { UPLINK } from './config.ts';
import { V_DROPPED, V_FORWARDED } from './engine.ts';
import { acceptAll, frame4, frame6, ruleSetOf } from './frames.ts';
import {
  C1,
  C1_6,
  C1_MAC,
  ip,
  makeEngine,
  meta0,
  NETVM_MAC,
  REMOTE,
  REMOTE6,
  UP_MAC,
  UP4,
} from './test-helpers.ts';

function setup() {
  const { engine, sink } = makeEngine();
  const c1 = engine.addClient({ mac: C1_MAC, ip4: C1, ip6: C1_6 });
  engine.setRuleSet(c1, acceptAll);
  engine.tick(1000);
  return { engine, sink, c1 };
}

describe('TCP first packets Linux conntrack calls invalid (class 2)', () => {
  const invalid: [string, number][] = [
    ['FIN', 0x01],
    ['FIN+ACK', 0x11],
    ['no flags', 0x00],
    ['SYN+FIN', 0x03],
    ['FIN+PSH+URG', 0x29],
  ];
  it.each(invalid)('drops a %s packet with no connection (action=accept), on both families', (_, flags) => {
    const { engine, sink, c1 } = setup();
    for (const f of [
      frame4({ src: C1, dst: REMOTE, proto: 6, sport: 40000, dport: 80, tcpFlags: flags }),
      frame6({ src: C1_6, dst: REMOTE6, proto: 6, sport: 40000, dport: 80, tcpFlags: flags }),
    ]) {
      expect(engine.receive(c1, f, 0, f.length, meta0())).toBe(V_DROPPED);
      // silently, as Linux drops `ct state invalid`
      expect(sink.take()).toEqual([]);
    }
    expect(engine.stats().links[1]!.dropsByReason['tcp-invalid']).toBe(2);
    expect(engine.conntrack.size).toBe(0);
  });

  it('still opens flows on SYN and picks them up on ACK (nf_conntrack_tcp_loose), PSH and URG aside', () => {
    const { engine, c1 } = setup();
    for (const [i, flags] of [0x02, 0x22, 0x10, 0x18, 0x30].entries()) {
      const f = frame4({ src: C1, dst: REMOTE, proto: 6, sport: 41000 + i, dport: 80, tcpFlags: flags });
      expect(engine.receive(c1, f, 0, f.length, meta0())).toBe(V_FORWARDED);
    }
  });
});

describe('ICMP keyed as conntrack keys it (class 1)', () => {
  const HOST = ip('198.51.100.7');
  /** `action=accept proto=icmp icmptype=<type>`, policy drop. */
  const icmpType = (type: number) =>
    ruleSetOf(
      (q) =>
        q.proto === 1 && q.icmpType === type ? { action: 'accept', rule: 0 } : { action: 'drop', rule: -1 },
      [0],
    );

  it('drops ICMP that can open no flow: replies and unknown types (action=accept), on both families', () => {
    const { engine, sink, c1 } = setup();
    for (const f of [
      frame4({ src: C1, dst: HOST, proto: 1, icmpType: 0, icmpId: 5 }),
      frame4({ src: C1, dst: HOST, proto: 1, icmpType: 42, icmpId: 5 }),
      frame6({ src: C1_6, dst: REMOTE6, proto: 58, icmpType: 129, icmpId: 5 }),
      frame6({ src: C1_6, dst: REMOTE6, proto: 58, icmpType: 200, icmpId: 5 }),
    ]) {
      expect(engine.receive(c1, f, 0, f.length, meta0())).toBe(V_DROPPED);
      expect(sink.take()).toEqual([]);
    }
    expect(engine.conntrack.size).toBe(0);
  });

  it('does not let other ICMP types ride on an echo flow past an icmptype rule', () => {
    const { engine, sink, c1 } = setup();
    engine.setRuleSet(c1, icmpType(8));
    const echo = frame4({ src: C1, dst: HOST, proto: 1, icmpType: 8, icmpId: 0 });
    expect(engine.receive(c1, echo, 0, echo.length, meta0())).toBe(V_FORWARDED);
    sink.take();
    for (const type of [42, 11, 5, 13]) {
      const f = frame4({ src: C1, dst: HOST, proto: 1, icmpType: type, icmpId: 0 });
      expect(engine.receive(c1, f, 0, f.length, meta0()), `type ${type}`).toBe(V_DROPPED);
      expect(
        sink.take().filter((s) => s.link === UPLINK),
        `type ${type}`,
      ).toEqual([]);
    }
  });

  it('keeps each query type apart: echo and timestamp with one id are two flows, and a rule change keeps the type', () => {
    const { engine, sink, c1 } = setup();
    engine.setRuleSet(c1, icmpType(13));
    const ts = frame4({ src: C1, dst: HOST, proto: 1, icmpType: 13, icmpId: 9 });
    expect(engine.receive(c1, ts, 0, ts.length, meta0())).toBe(V_FORWARDED);
    const id = read16(sink.take()[0]!.bytes, 38);
    // the same rules again: the timestamp flow is still admitted and stays
    expect(engine.setRuleSet(c1, icmpType(13))).toBe(0);
    const reply = frame4({
      src: HOST,
      dst: UP4,
      proto: 1,
      icmpType: 14,
      icmpId: id,
      srcMac: NETVM_MAC,
      dstMac: UP_MAC,
    });
    expect(engine.receive(UPLINK, reply, 0, reply.length, meta0())).toBe(V_FORWARDED);
    const back = sink.take()[0]!;
    expect(back.link).toBe(c1);
    expect(read16(back.bytes, 38)).toBe(9);
    // an echo with the same id is a new flow, checked by the rules (and refused)
    const echo = frame4({ src: C1, dst: HOST, proto: 1, icmpType: 8, icmpId: 9 });
    expect(engine.receive(c1, echo, 0, echo.length, meta0())).toBe(V_DROPPED);
    expect(engine.stats().links[1]!.dropsByReason.rule).toBe(1);
  });
});
