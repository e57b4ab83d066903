import { describe, expect, it } from 'vitest';
import { UPLINK } from './config.ts';
import { V_REJECTED } from './engine.ts';
import { acceptAll, frame4 } from './frames.ts';
import {
  C1,
  C1_MAC,
  checksumsValid,
  makeEngine,
  meta0,
  NETVM_MAC,
  REMOTE,
  UP_MAC,
  UP4,
} from './test-helpers.ts';

/** An engine with one client, and the frames it writes for a few packets that draw ICMP errors. */
function run(noise?: () => void): Uint8Array[] {
  const { engine, sink } = makeEngine({ seed: 7 });
  const c1 = engine.addClient({ mac: C1_MAC, ip4: C1 });
  engine.setRuleSet(c1, acceptAll);
  engine.tick(1000);
  for (let i = 0; i < 3; i++) {
    // TCP to the firewall: rejected host-prohibited; a TTL-1 packet: time exceeded
    const toUs = frame4({ src: C1, dst: UP4, proto: 6, sport: 40000 + i, dport: 22 });
    expect(engine.receive(c1, toUs, 0, toUs.length, meta0())).toBe(V_REJECTED);
    noise?.();
    const ttl1 = frame4({ src: C1, dst: REMOTE, proto: 17, sport: 5000 + i, dport: 53, ttl: 1 });
    expect(engine.receive(c1, ttl1, 0, ttl1.length, meta0())).toBe(V_REJECTED);
    noise?.();
    engine.tick(1000 + (i + 1) * 2000);
  }
  engine.solicitGateway();
  return sink.take().map((f) => f.bytes);
}

describe('frames the engine writes', () => {
  // Before: emit.ts numbered IPv4 headers from one module-global counter, so what an
  // engine wrote depended on every other engine in the process.
  it('are the same for two engines with the same seed, whatever a third engine does meanwhile', () => {
    const first = run();
    const { engine: other } = makeEngine({ seed: 7 });
    const c = other.addClient({ mac: C1_MAC, ip4: C1 });
    other.tick(1000);
    const second = run(() => {
      for (let i = 0; i < 5; i++) {
        const f = frame4({ src: C1, dst: UP4, proto: 17, sport: 1000 + i, dport: 9 });
        other.receive(c, f, 0, f.length, meta0());
        const g = frame4({ src: REMOTE, dst: UP4, proto: 6, ttl: 1, srcMac: NETVM_MAC, dstMac: UP_MAC });
        other.receive(UPLINK, g, 0, g.length, meta0());
      }
    });
    expect(first.length).toBe(7);
    expect(second).toEqual(first);
    for (const f of first) expect(checksumsValid(f)).toBe(true);
    // each ICMP error carries its own identification, counted per engine
    const idents = first.slice(0, 6).map((f) => (f[18]! << 8) | f[19]!);
    expect(new Set(idents).size).toBe(6);
  });
});
