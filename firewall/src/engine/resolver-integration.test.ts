import { describe, expect, it } from 'vitest';
import { StubResolver } from '../dns/resolver.ts';
import { a, reply, seededRandomSource } from '../dns/test-server.ts';
import { read16 } from '../wire/checksum.ts';
import { UPLINK } from './config.ts';
import { V_LOCAL } from './engine.ts';
import { acceptAll, frame4 } from './frames.ts';
import {
  C1,
  C1_MAC,
  checksumsValid,
  makeEngine,
  meta0,
  NETVM_MAC,
  UP_MAC,
  UP4,
  UPSTREAM_DNS,
} from './test-helpers.ts';

describe('the engine hosting the firewall’s own resolver', () => {
  it('sends its queries from the uplink address and hands it the answers, apart from client NAT', () => {
    const { engine, sink } = makeEngine();
    let now = 1000;
    const resolver = new StubResolver({
      servers: [{ address: UPSTREAM_DNS, port: 53 }],
      now: () => now,
      random: seededRandomSource(7),
      portAvailable: (t, p) => engine.localPortAvailable(t, p),
    });
    engine.attachResolver(resolver);
    const c = engine.addClient({ mac: C1_MAC, ip4: C1 });
    engine.setRuleSet(c, acceptAll);
    engine.tick(now);
    // a client's DNS flow to the same server holds port 40000 on the uplink
    const q0 = frame4({ src: C1, dst: UPSTREAM_DNS, proto: 17, sport: 40000, dport: 53 });
    engine.receive(c, q0, 0, q0.length, meta0());
    expect(engine.localPortAvailable('udp', 40000)).toBe(false);
    sink.take();

    resolver.retain('example.com', 4);
    now += 1;
    engine.tick(now);
    const out = sink.take().filter((s) => s.link === UPLINK);
    expect(out).toHaveLength(1);
    const q = out[0]!.bytes;
    expect(checksumsValid(q)).toBe(true);
    const localPort = read16(q, 34);
    expect(localPort).not.toBe(40000);
    const query = q.slice(42, 14 + read16(q, 16));
    const answer = reply(query, [a('example.com', [93, 184, 216, 34])]);
    const f = frame4({
      src: UPSTREAM_DNS,
      dst: UP4,
      proto: 17,
      sport: 53,
      dport: localPort,
      payload: answer,
      srcMac: NETVM_MAC,
      dstMac: UP_MAC,
    });
    expect(engine.receive(UPLINK, f, 0, f.length, meta0())).toBe(V_LOCAL);
    expect(resolver.answer('example.com', 4)).toEqual({
      state: 'resolved',
      addresses: [Uint8Array.of(93, 184, 216, 34)],
    });
  });
});
