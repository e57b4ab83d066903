/**
 * Where the engine disagreed with a Linux sys-firewall whose rules qubesagent/firewall.py
 * made from the same QubesDB tree (issue 12's difference classes); each case failed before.
 */
import { describe, expect, it } from 'vitest';
import { V_DROPPED, V_FORWARDED } from './engine.ts';
import { acceptAll, frame4, frame6 } from './frames.ts';
import { C1, C1_6, C1_MAC, makeEngine, meta0, REMOTE, REMOTE6 } from './test-helpers.ts';

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
