import { describe, expect, it } from 'vitest';
import { V_LOCAL } from './engine.ts';
import { acceptAll, frame4, frame6 } from './frames.ts';
import { C1, C1_6, C1_MAC, checksumsValid, makeEngine, meta0, UP4, UP6 } from './test-helpers.ts';

describe('pings to the firewall', () => {
  // Before: the echo reply was built in the engine's frame buffer, sized for the uplink MTU,
  // and a larger ping threw a RangeError out of receive().
  it('are answered whole when bigger than the uplink MTU, on both families', () => {
    const { engine, sink } = makeEngine();
    const c1 = engine.addClient({ mac: C1_MAC, ip4: C1, ip6: C1_6 });
    engine.setRuleSet(c1, acceptAll);
    engine.tick(1000);
    const payload = new Uint8Array(3000).map((_, i) => i);
    for (const f of [
      frame4({ src: C1, dst: UP4, proto: 1, payload }),
      frame6({ src: C1_6, dst: UP6, proto: 58, payload }),
    ]) {
      expect(engine.receive(c1, f, 0, f.length, meta0())).toBe(V_LOCAL);
      const [reply] = sink.take();
      expect(reply!.link).toBe(c1);
      expect(reply!.bytes.length).toBe(f.length);
      expect(checksumsValid(reply!.bytes)).toBe(true);
      expect(reply!.bytes.subarray(reply!.bytes.length - 3000)).toEqual(payload);
    }
  });
});
