/**
 * Where the engine disagreed with a Linux sys-firewall whose rules qubesagent/firewall.py
 * made from the same QubesDB tree (issue 12's difference classes); each case failed before.
 */
import { describe, expect, it } from 'vitest';
import { compileRuleEntries } from '../rules/client-rules.ts';
import { read16, read32 } from '../wire/checksum.ts';
import { UPLINK } from './config.ts';
import { V_DROPPED, V_FORWARDED, V_LOCAL, V_REJECTED } from './engine.ts';
import { acceptAll, frame4, frame6, ruleSetOf } from './frames.ts';
import {
  C1,
  C1_6,
  C1_MAC,
  C2,
  C2_MAC,
  checksumsValid,
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
      // the rule refuses a timestamp request (and rejects it: class 5); the others are
      // dropped silently (an unknown type, and errors about no flow)
      expect(engine.receive(c1, f, 0, f.length, meta0()), `type ${type}`).toBe(
        type === 13 ? V_REJECTED : V_DROPPED,
      );
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
    expect(engine.receive(c1, echo, 0, echo.length, meta0())).toBe(V_REJECTED);
    expect(engine.stats().links[1]!.dropsByReason.rule).toBe(1);
  });
});

describe('ICMP timestamp requests to the firewall (class 4)', () => {
  // 12:34:56.789 UT: Linux's inet_current_timestamp() is ms since midnight UT
  const NOW = Date.UTC(2026, 11, 6, 12, 34, 56, 789);
  const SINCE_MIDNIGHT = ((12 * 60 + 34) * 60 + 56) * 1000 + 789;

  it('answers as the kernel does: type 14, code 0, originate copied, receive = transmit = now', () => {
    const { engine, sink } = makeEngine({ wallClockMs: () => NOW });
    const c1 = engine.addClient({ mac: C1_MAC, ip4: C1 });
    engine.tick(1000);
    const payload = new Uint8Array(12);
    payload.set([0x01, 0x02, 0x03, 0x04, 9, 9, 9, 9, 8, 8, 8, 8]);
    const f = frame4({ src: C1, dst: UP4, proto: 1, icmpType: 13, icmpCode: 5, icmpId: 0x4242, payload });
    expect(engine.receive(c1, f, 0, f.length, meta0())).toBe(V_LOCAL);
    const [out] = sink.take();
    expect(out!.link).toBe(c1);
    const b = out!.bytes;
    expect(b.length).toBe(14 + 20 + 20);
    expect([...b.subarray(26, 30)]).toEqual([...UP4]);
    expect([...b.subarray(30, 34)]).toEqual([...C1]);
    expect([b[34], b[35]]).toEqual([14, 0]);
    expect(read16(b, 38)).toBe(0x4242);
    expect(read16(b, 40)).toBe(1);
    expect([...b.subarray(42, 46)]).toEqual([1, 2, 3, 4]);
    expect(read32(b, 46)).toBe(SINCE_MIDNIGHT);
    expect(read32(b, 50)).toBe(SINCE_MIDNIGHT);
    expect(checksumsValid(b)).toBe(true);
  });

  it('drops a request too short to hold the originate timestamp, as the kernel does', () => {
    const { engine, sink } = makeEngine({ wallClockMs: () => NOW });
    const c1 = engine.addClient({ mac: C1_MAC, ip4: C1 });
    const f = frame4({ src: C1, dst: UP4, proto: 1, icmpType: 13, payload: new Uint8Array(3) });
    expect(engine.receive(c1, f, 0, f.length, meta0())).toBe(V_DROPPED);
    expect(sink.take()).toEqual([]);
  });
});

describe('denied in both, in the same form as Linux (class 5)', () => {
  /** `action=accept proto=tcp dstports=443`, policy drop. */
  const httpsOnly = ruleSetOf(
    (q) =>
      q.proto === 6 && q.dstPort === 443 ? { action: 'accept', rule: 0 } : { action: 'drop', rule: -1 },
    [0],
  );
  const adminProhibited = (s: { link: number; bytes: Uint8Array }[], link: number, v6 = false) => {
    expect(s).toHaveLength(1);
    expect(s[0]!.link).toBe(link);
    if (v6) expect([s[0]!.bytes[54], s[0]!.bytes[55]]).toEqual([1, 1]);
    else expect([s[0]!.bytes[34], s[0]!.bytes[35]]).toEqual([3, 13]);
    expect(checksumsValid(s[0]!.bytes)).toBe(true);
  };

  it('rejects client-to-client traffic its rules deny (the per-client chain runs first)', () => {
    const { engine, sink, c1 } = setup();
    const c2 = engine.addClient({ mac: C2_MAC, ip4: C2 });
    engine.setRuleSet(c2, acceptAll);
    engine.setRuleSet(c1, httpsOnly);
    const denied = frame4({ src: C1, dst: C2, proto: 6, sport: 40000, dport: 22 });
    expect(engine.receive(c1, denied, 0, denied.length, meta0())).toBe(V_REJECTED);
    adminProhibited(sink.take(), c1);
    // what the rules accept meets `oifgroup 2 drop`: silent
    const accepted = frame4({ src: C1, dst: C2, proto: 6, sport: 40001, dport: 443 });
    expect(engine.receive(c1, accepted, 0, accepted.length, meta0())).toBe(V_DROPPED);
    expect(sink.take()).toEqual([]);
    expect(engine.stats().links[1]!.dropsByReason).toEqual({ rule: 1, 'client-to-client': 1 });
  });

  it('drops silently ICMP the rules deny when Linux sends no error about it (unknown types, errors)', () => {
    const { engine, sink, c1 } = setup();
    engine.setRuleSet(c1, httpsOnly);
    for (const type of [42, 19, 255, 1, 2, 6, 7, 9, 10]) {
      const f = frame4({ src: C1, dst: REMOTE, proto: 1, icmpType: type });
      expect(engine.receive(c1, f, 0, f.length, meta0()), `type ${type}`).toBe(V_DROPPED);
      expect(sink.take(), `type ${type}`).toEqual([]);
    }
    // the query types it knows are rejected
    for (const type of [8, 13, 15, 17, 0, 14]) {
      const f = frame4({ src: C1, dst: REMOTE, proto: 1, icmpType: type });
      expect(engine.receive(c1, f, 0, f.length, meta0()), `type ${type}`).toBe(V_REJECTED);
      adminProhibited(sink.take(), c1);
    }
    // ICMPv6: net/ipv6/icmp.c is_ineligible() spares every informational type (>= 128)
    const f6 = frame6({ src: C1_6, dst: REMOTE6, proto: 58, icmpType: 200 });
    expect(engine.receive(c1, f6, 0, f6.length, meta0())).toBe(V_REJECTED);
    adminProhibited(sink.take(), c1, true);
  });

  const flags: [string, number][] = [
    ['RST', 0x04],
    ['SYN+ACK', 0x12],
    ['RST+ACK', 0x14],
    ['FIN', 0x01],
  ];
  it.each(flags)('rejects a %s first packet its rules deny, on both families', (_, tcpFlags) => {
    const { engine, sink, c1 } = setup();
    engine.setRuleSet(c1, httpsOnly);
    const f4 = frame4({ src: C1, dst: REMOTE, proto: 6, sport: 40000, dport: 80, tcpFlags });
    expect(engine.receive(c1, f4, 0, f4.length, meta0())).toBe(V_REJECTED);
    adminProhibited(sink.take(), c1);
    const f6 = frame6({ src: C1_6, dst: REMOTE6, proto: 6, sport: 40000, dport: 80, tcpFlags });
    expect(engine.receive(c1, f6, 0, f6.length, meta0())).toBe(V_REJECTED);
    adminProhibited(sink.take(), c1, true);
    // accepted by the rules, they are invalid to conntrack: silent
    const ok = frame4({ src: C1, dst: REMOTE, proto: 6, sport: 40000, dport: 443, tcpFlags });
    expect(engine.receive(c1, ok, 0, ok.length, meta0())).toBe(V_DROPPED);
    expect(sink.take()).toEqual([]);
  });
});

describe('where Linux is wrong and moat keeps its behaviour (class 6)', () => {
  const HOST = ip('198.51.100.7');
  const tree = (entries: Record<string, string>) => compileRuleEntries(entries, '10.137.0.20');

  it('purges the flows a new rule set refuses: ICMP ones too, and ports compared as numbers', () => {
    const { engine, sink, c1 } = setup();
    engine.setRuleSet(c1, tree({ policy: 'accept' }));
    const sent = [
      frame4({ src: C1, dst: HOST, proto: 17, sport: 41000, dport: 10000 }),
      frame4({ src: C1, dst: HOST, proto: 17, sport: 41001, dport: 53 }),
      frame4({ src: C1, dst: HOST, proto: 17, sport: 41002, dport: 8000 }),
      frame4({ src: C1, dst: HOST, proto: 1, icmpType: 8, icmpId: 77 }),
    ];
    for (const f of sent) expect(engine.receive(c1, f, 0, f.length, meta0())).toBe(V_FORWARDED);
    // the uplink-side UDP source ports, and the echo's id (offset 38)
    const natPorts = sink.take().map((s) => read16(s.bytes, s.bytes[23] === 1 ? 38 : 34));
    const echoReply = frame4({
      src: HOST,
      dst: UP4,
      proto: 1,
      icmpType: 0,
      icmpId: natPorts[3]!,
      srcMac: NETVM_MAC,
      dstMac: UP_MAC,
    });
    expect(engine.receive(UPLINK, echoReply.slice(), 0, echoReply.length, meta0())).toBe(V_FORWARDED);
    sink.take();
    expect(engine.conntrack.size).toBe(4);
    // Linux's is_blocked() compares '10000' and '53' with '1000'-'9000' as strings (both pass),
    // and conntrack_get_connections() skips ICMP entries (no dport=): all four would survive
    expect(
      engine.setRuleSet(c1, tree({ policy: 'drop', '0000': 'action=accept proto=udp dstports=1000-9000' })),
    ).toBe(3);
    expect(engine.conntrack.size).toBe(1);
    const reply = (i: number) =>
      frame4({
        src: HOST,
        dst: UP4,
        proto: 17,
        sport: [10000, 53, 8000][i]!,
        dport: natPorts[i]!,
        srcMac: NETVM_MAC,
        dstMac: UP_MAC,
      });
    for (const i of [0, 1]) {
      const f = reply(i);
      expect(engine.receive(UPLINK, f, 0, f.length, meta0()), `reply ${i}`).toBe(V_DROPPED);
    }
    const kept = reply(2);
    expect(engine.receive(UPLINK, kept, 0, kept.length, meta0())).toBe(V_FORWARDED);
    expect(engine.receive(UPLINK, echoReply, 0, echoReply.length, meta0())).toBe(V_DROPPED);
  });
});
