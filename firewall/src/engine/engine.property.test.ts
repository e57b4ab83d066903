import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { read16, read32 } from '../wire/checksum.ts';
import { UPLINK } from './config.ts';
import { V_FORWARDED } from './engine.ts';
import { acceptAll, dropAll, frame4, frame6 } from './frames.ts';
import {
  C1,
  C1_6,
  C1_MAC,
  C2,
  C2_MAC,
  checksumsValid,
  makeEngine,
  meta0,
  NETVM_MAC,
  UP_MAC,
  UP4,
} from './test-helpers.ts';

const publicV4 = fc
  .tuple(fc.integer({ min: 1, max: 223 }), fc.nat(255), fc.nat(255), fc.integer({ min: 1, max: 254 }))
  .filter(([a]) => a !== 10 && a !== 127)
  .map((t) => Uint8Array.from(t));

/** Frames worth throwing at the engine: random bytes, and valid frames with random damage. */
const hostileFrame = fc.oneof(
  fc.uint8Array({ minLength: 0, maxLength: 200 }),
  fc
    .record({
      v6: fc.boolean(),
      proto: fc.constantFrom(1, 6, 17, 58, 47, 0, 44),
      sport: fc.nat(65535),
      dport: fc.nat(65535),
      flags: fc.nat(255),
      ttl: fc.nat(255),
      frag: fc.option(
        fc.record({ ident: fc.nat(65535), offset: fc.nat(200).map((n) => n * 8), more: fc.boolean() }),
      ),
      payload: fc.uint8Array({ maxLength: 64 }),
      damage: fc.array(fc.tuple(fc.nat(120), fc.nat(255)), { maxLength: 4 }),
      fromUplink: fc.boolean(),
    })
    .map((r) => {
      const f = r.v6
        ? frame6({
            src: r.fromUplink ? Uint8Array.of(0x26, 6, ...new Array(14).fill(1)) : C1_6,
            dst: Uint8Array.of(0x26, 6, ...new Array(14).fill(2)),
            proto: r.proto,
            sport: r.sport,
            dport: r.dport,
            tcpFlags: r.flags,
            ttl: r.ttl,
            payload: r.payload,
          })
        : frame4({
            src: r.fromUplink ? Uint8Array.of(93, 1, 2, 3) : C1,
            dst: r.fromUplink ? UP4 : Uint8Array.of(93, 1, 2, 3),
            proto: r.proto,
            sport: r.sport,
            dport: r.dport,
            tcpFlags: r.flags,
            ttl: r.ttl,
            payload: r.payload,
            fragment: r.frag ?? undefined,
            ...(r.fromUplink ? { srcMac: NETVM_MAC, dstMac: UP_MAC } : {}),
          });
      for (const [at, v] of r.damage) if (at < f.length) f[at] = v;
      return f;
    }),
);

describe('the engine under hostile input', () => {
  it('never throws and keeps every table within its bound', () => {
    const { engine } = makeEngine({ conntrackMax: 32, fragmentsPerLink: 4 });
    const c1 = engine.addClient({ mac: C1_MAC, ip4: C1, ip6: C1_6 });
    const c2 = engine.addClient({ mac: C2_MAC, ip4: C2 });
    engine.setRuleSet(c1, acceptAll);
    let now = 0;
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom(UPLINK, c1, c2, 9), hostileFrame, fc.nat(5000)), { maxLength: 40 }),
        (batch) => {
          for (const [link, f, dt] of batch) {
            now += dt;
            engine.tick(now);
            const meta = {
              csumBlank: (dt & 1) === 1,
              dataValidated: (dt & 2) === 2,
              gsoType: dt & 3,
              gsoSize: dt,
            };
            engine.receive(link, f, 0, f.length, meta);
            // a frame shorter than the buffer it sits in, and an offset past the end
            engine.receive(link, f, 1, Math.max(0, f.length - 1), meta);
            engine.receive(link, f, f.length, 10, meta);
          }
          const s = engine.stats();
          expect(s.conntrack.size).toBeLessThanOrEqual(32);
          for (const l of s.links) expect(l.fragmentTrains).toBeLessThanOrEqual(l.link === UPLINK ? 16 : 4);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('NAT', () => {
  it('is reversible for every tracked flow: replies reach the client with its own tuple', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            second: fc.boolean(),
            proto: fc.constantFrom(6, 17, 1),
            sport: fc.integer({ min: 1, max: 65535 }),
            dport: fc.integer({ min: 1, max: 65535 }),
            dst: publicV4,
            partial: fc.boolean(),
            dns: fc.boolean(),
          }),
          { minLength: 1, maxLength: 30 },
        ),
        (flows) => {
          const virtualDns = Uint8Array.of(10, 139, 1, 1);
          const upstreamDns = Uint8Array.of(192, 0, 2, 53);
          const { engine, sink } = makeEngine({ dns: { virtual: [virtualDns], upstream: [upstreamDns] } });
          const links = [
            engine.addClient({ mac: C1_MAC, ip4: C1 }),
            engine.addClient({ mac: C2_MAC, ip4: C2 }),
          ];
          for (const l of links) engine.setRuleSet(l, acceptAll);
          engine.tick(1);
          for (const f0 of flows) {
            // some flows are DNS to the virtual server, DNATed to the upstream one
            const isDns = f0.dns && f0.proto !== 1;
            const flow = isDns ? { ...f0, dst: virtualDns, dport: 53 } : f0;
            const remote = isDns ? upstreamDns : flow.dst;
            const link = links[flow.second ? 1 : 0]!;
            const src = flow.second ? C2 : C1;
            const spec = {
              src,
              dst: flow.dst,
              proto: flow.proto,
              sport: flow.sport,
              dport: flow.dport,
              icmpId: flow.sport,
              tcpFlags: 0x02,
            };
            const f = frame4({
              ...spec,
              srcMac: flow.second ? C2_MAC : C1_MAC,
              partialChecksum: flow.partial && flow.proto !== 1,
            });
            const meta = { ...meta0(), csumBlank: flow.partial && flow.proto !== 1 };
            if (engine.receive(link, f, 0, f.length, meta) !== V_FORWARDED) continue; // e.g. two clients, same ICMP id, ports exhausted
            const out = sink.take().find((s) => s.link === UPLINK)!;
            const o = out.bytes;
            expect(read32(o, 26)).toBe(read32(UP4, 0));
            expect(read32(o, 30)).toBe(read32(remote, 0));
            // the remote answers the translated tuple
            const natPort = read16(o, 34);
            const reply = frame4({
              src: remote,
              dst: UP4,
              proto: flow.proto,
              sport: flow.dport,
              dport: natPort,
              icmpType: 0,
              icmpId: read16(o, 38),
              tcpFlags: 0x12,
              srcMac: NETVM_MAC,
              dstMac: UP_MAC,
            });
            expect(engine.receive(UPLINK, reply, 0, reply.length, meta0())).toBe(V_FORWARDED);
            const back = sink.take()[0]!;
            expect(back.link).toBe(link);
            expect(read32(back.bytes, 30)).toBe(read32(src, 0));
            expect(read32(back.bytes, 26)).toBe(read32(flow.dst, 0));
            if (flow.proto === 1) expect(read16(back.bytes, 38)).toBe(flow.sport);
            else {
              expect(read16(back.bytes, 36)).toBe(flow.sport);
              expect(read16(back.bytes, 34)).toBe(flow.dport);
            }
            expect(checksumsValid(back.bytes)).toBe(true);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('a drop-all rule set', () => {
  it('lets nothing out to the uplink', () => {
    const { engine, sink } = makeEngine();
    const c = engine.addClient({ mac: C1_MAC, ip4: C1, ip6: C1_6 });
    engine.setRuleSet(c, dropAll);
    engine.tick(1);
    fc.assert(
      fc.property(fc.array(hostileFrame, { maxLength: 30 }), (frames) => {
        for (const f of frames) engine.receive(c, f, 0, f.length, meta0());
        expect(sink.take().filter((s) => s.link === UPLINK)).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });
});
