import { describe, expect, it } from 'vitest';
import { emitArp } from '../wire/arp.ts';
import { checksum, fold, pseudoSum4, read16, read32, sumWords } from '../wire/checksum.ts';
import { type DecisionLogEntry, UPLINK } from './config.ts';
import { fillL4Checksum6 } from './emit.ts';
import { V_DROPPED, V_FORWARDED, V_LOCAL, V_REJECTED } from './engine.ts';
import { acceptAll, completePartial, dropAll, frame4, frame6, type PacketSpec, ruleSetOf } from './frames.ts';
import { parseVifAddresses } from './links.ts';
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
  UP6,
  UPSTREAM_DNS,
} from './test-helpers.ts';

const u32 = (b: Uint8Array, o: number) => read32(b, o);
const toUplink = (src: Uint8Array, dst: Uint8Array, x: Omit<PacketSpec, 'src' | 'dst'>) =>
  frame4({ ...x, src, dst, srcMac: NETVM_MAC, dstMac: UP_MAC });

function setup(extra = {}) {
  const { engine, sink } = makeEngine(extra);
  const c1 = engine.addClient({ mac: C1_MAC, ip4: C1, ip6: C1_6, name: 'work' });
  const c2 = engine.addClient({ mac: C2_MAC, ip4: C2, name: 'personal' });
  engine.setRuleSet(c1, acceptAll);
  engine.setRuleSet(c2, acceptAll);
  engine.tick(1000);
  return { engine, sink, c1, c2 };
}

/** Sends a frame from a client and returns what left on the uplink. */
function out(
  engine: ReturnType<typeof setup>['engine'],
  sink: ReturnType<typeof setup>['sink'],
  link: number,
  f: Uint8Array,
  meta = meta0(),
) {
  const v = engine.receive(link, f, 0, f.length, meta);
  return { v, frames: sink.take() };
}

describe('forwarding with source NAT', () => {
  it('masquerades a new TCP connection to the uplink address, keeping the source port', () => {
    const { engine, sink, c1 } = setup();
    const { v, frames } = out(
      engine,
      sink,
      c1,
      frame4({ src: C1, dst: REMOTE, proto: 6, sport: 40000, dport: 443 }),
    );
    expect(v).toBe(V_FORWARDED);
    expect(frames).toHaveLength(1);
    const f = frames[0]!;
    expect(f.link).toBe(UPLINK);
    expect(u32(f.bytes, 26)).toBe(u32(UP4, 0));
    expect(u32(f.bytes, 30)).toBe(u32(REMOTE, 0));
    expect(read16(f.bytes, 34)).toBe(40000);
    expect(f.bytes[22]).toBe(63); // TTL decremented
    expect(f.bytes.subarray(0, 6)).toEqual(NETVM_MAC);
    expect(f.bytes.subarray(6, 12)).toEqual(UP_MAC);
    expect(checksumsValid(f.bytes)).toBe(true);
  });

  it('translates replies back to the client that opened the connection', () => {
    const { engine, sink, c1 } = setup();
    out(
      engine,
      sink,
      c1,
      frame4({ src: C1, dst: REMOTE, proto: 6, sport: 40000, dport: 443, tcpFlags: 0x02 }),
    );
    const reply = toUplink(REMOTE, UP4, { proto: 6, sport: 443, dport: 40000, tcpFlags: 0x12 });
    const { v, frames } = out(engine, sink, UPLINK, reply);
    expect(v).toBe(V_FORWARDED);
    expect(frames[0]!.link).toBe(c1);
    expect(u32(frames[0]!.bytes, 30)).toBe(u32(C1, 0));
    expect(frames[0]!.bytes.subarray(0, 6)).toEqual(C1_MAC);
    expect(checksumsValid(frames[0]!.bytes)).toBe(true);
  });

  it('picks another port when two clients use the same source port to the same server', () => {
    const { engine, sink, c1, c2 } = setup();
    const a = out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 17, sport: 5000, dport: 53 }))
      .frames[0]!;
    const b = out(
      engine,
      sink,
      c2,
      frame4({ src: C2, dst: REMOTE, proto: 17, sport: 5000, dport: 53, srcMac: C2_MAC }),
    ).frames[0]!;
    expect(read16(a.bytes, 34)).toBe(5000);
    const port2 = read16(b.bytes, 34);
    expect(port2).not.toBe(5000);
    expect(port2).toBeGreaterThanOrEqual(1024);
    expect(checksumsValid(b.bytes)).toBe(true);
    const r = out(engine, sink, UPLINK, toUplink(REMOTE, UP4, { proto: 17, sport: 53, dport: port2 }))
      .frames[0]!;
    expect(r.link).toBe(c2);
    expect(read16(r.bytes, 36)).toBe(5000);
  });

  it('translates ICMP echo identifiers that collide', () => {
    const { engine, sink, c1, c2 } = setup();
    out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 1, icmpId: 7 }));
    const b = out(engine, sink, c2, frame4({ src: C2, dst: REMOTE, proto: 1, icmpId: 7, srcMac: C2_MAC }))
      .frames[0]!;
    const id2 = read16(b.bytes, 38);
    expect(id2).not.toBe(7);
    expect(checksumsValid(b.bytes)).toBe(true);
    const r = out(engine, sink, UPLINK, toUplink(REMOTE, UP4, { proto: 1, icmpType: 0, icmpId: id2 }))
      .frames[0]!;
    expect(r.link).toBe(c2);
    expect(read16(r.bytes, 38)).toBe(7);
    expect(checksumsValid(r.bytes)).toBe(true);
  });

  it('sends ICMP errors about a flow back to its client with the embedded header restored', () => {
    const { engine, sink, c1, c2 } = setup();
    out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 17, sport: 5000, dport: 9999 }));
    const sent = out(
      engine,
      sink,
      c2,
      frame4({ src: C2, dst: REMOTE, proto: 17, sport: 5000, dport: 9999, srcMac: C2_MAC }),
    ).frames[0]!;
    // the remote answers c2's datagram with port unreachable quoting what it received
    const quoted = sent.bytes.slice(14, 14 + 28);
    const body = new Uint8Array(8 + quoted.length);
    body[0] = 3;
    body[1] = 3;
    body.set(quoted, 8);
    const err = toUplink(REMOTE, UP4, { proto: 1, l4: body });
    // fix the ICMP checksum of the hand-built body
    err[36] = 0;
    err[37] = 0;
    const cs = checksum(err, 34, body.length);
    err[36] = cs >> 8;
    err[37] = cs & 0xff;
    const { v, frames } = out(engine, sink, UPLINK, err);
    expect(v).toBe(V_FORWARDED);
    const f = frames[0]!;
    expect(f.link).toBe(c2);
    expect(u32(f.bytes, 30)).toBe(u32(C2, 0)); // outer destination
    expect(u32(f.bytes, 42 + 12)).toBe(u32(C2, 0)); // embedded source
    expect(read16(f.bytes, 42 + 20)).toBe(5000); // embedded source port
    // the embedded datagram is quoted whole, so its own checksum must verify with c2's addresses
    const inner = f.bytes.slice(42);
    expect(fold(sumWords(inner, 20, 8, pseudoSum4(inner, 0, 17, 8)))).toBe(0xffff);
    expect(checksumsValid(f.bytes)).toBe(true);
  });

  it('keeps the partial checksum of checksum-blank and GSO frames right through NAT', () => {
    const { engine, sink, c1 } = setup();
    const payload = new Uint8Array(3000).map((_, i) => i * 7);
    const f = frame4({
      src: C1,
      dst: REMOTE,
      proto: 6,
      sport: 40001,
      dport: 443,
      tcpFlags: 0x02,
      partialChecksum: true,
      payload,
    });
    const meta = { csumBlank: true, dataValidated: false, gsoType: 1, gsoSize: 1448 };
    const { v, frames } = out(engine, sink, c1, f, meta);
    expect(v).toBe(V_FORWARDED);
    const o = frames[0]!;
    expect(o.meta).toEqual(meta);
    const seg = o.bytes.slice();
    completePartial(seg, 34, seg.length - 34, 16);
    expect(checksumsValid(seg)).toBe(true);
  });

  it('DNATs the Qubes virtual DNS address to the upstream server and restores it on replies', () => {
    const upstream = ip('192.168.1.1');
    const { engine, sink, c1 } = setup({
      dns: { virtual: [ip('10.139.1.1'), ip('10.139.1.2')], upstream: [upstream] },
    });
    const q = out(
      engine,
      sink,
      c1,
      frame4({ src: C1, dst: ip('10.139.1.1'), proto: 17, sport: 3333, dport: 53 }),
    ).frames[0]!;
    expect(u32(q.bytes, 30)).toBe(u32(upstream, 0));
    expect(checksumsValid(q.bytes)).toBe(true);
    const r = out(engine, sink, UPLINK, toUplink(upstream, UP4, { proto: 17, sport: 53, dport: 3333 }))
      .frames[0]!;
    expect(r.link).toBe(c1);
    expect(u32(r.bytes, 26)).toBe(u32(ip('10.139.1.1'), 0));
    expect(checksumsValid(r.bytes)).toBe(true);
  });

  it('drops DNS to a virtual address when no upstream server is known', () => {
    const { engine, sink, c1 } = setup({
      dns: { virtual: [ip('10.139.1.1'), ip('10.139.1.2')], upstream: [] },
    });
    const dns = frame4({ src: C1, dst: ip('10.139.1.2'), proto: 17, sport: 3333, dport: 53 });
    expect(out(engine, sink, c1, dns).v).toBe(V_DROPPED);
    expect(engine.stats().links[1]!.dropsByReason['dns-no-upstream']).toBe(1);
    // other traffic to the address is not DNS and is not redirected
    const other = frame4({ src: C1, dst: ip('10.139.1.2'), proto: 17, sport: 3333, dport: 54 });
    expect(out(engine, sink, c1, other).v).toBe(V_FORWARDED);
    void UPSTREAM_DNS;
  });
});

describe('isolation (the mirage bugs we must not have)', () => {
  it('drops new connections from one client to another even when its rules accept everything', () => {
    const { engine, sink, c1 } = setup();
    const r = out(engine, sink, c1, frame4({ src: C1, dst: C2, proto: 6, dport: 22 }));
    expect(r.v).toBe(V_DROPPED);
    expect(r.frames).toHaveLength(0);
    expect(engine.stats().links[1]!.dropsByReason['client-to-client']).toBe(1);
  });

  it('drops traffic to connected clients that are not running', () => {
    const { engine, sink, c1 } = setup();
    engine.setConnectedIps([C1, C2, ip('10.137.0.99')]);
    expect(out(engine, sink, c1, frame4({ src: C1, dst: ip('10.137.0.99'), proto: 17 })).v).toBe(V_DROPPED);
  });

  it('drops unsolicited traffic from the uplink', () => {
    const { engine, sink } = setup();
    const r = out(engine, sink, UPLINK, toUplink(REMOTE, UP4, { proto: 6, sport: 443, dport: 40000 }));
    expect(r.v).toBe(V_DROPPED);
    expect(r.frames).toHaveLength(0);
  });

  it('drops uplink packets whose source is a client address (running or not) or our own', () => {
    const { engine, sink, c1 } = setup();
    engine.setConnectedIps([C1, ip('10.137.0.77')]);
    out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 17, sport: 1, dport: 2 }));
    for (const src of [C1, ip('10.137.0.77'), UP4]) {
      const r = out(engine, sink, UPLINK, toUplink(src, UP4, { proto: 17, sport: 2, dport: 1 }));
      expect(r.v).toBe(V_DROPPED);
    }
    expect(engine.stats().links[0]!.dropsByReason['spoofed-from-uplink']).toBe(3);
  });
});

describe('anti-spoofing and link-layer answers', () => {
  it('drops packets with a source that is not the client’s own, silently', () => {
    const { engine, sink, c1 } = setup();
    const r = out(engine, sink, c1, frame4({ src: C2, dst: REMOTE, proto: 6 }));
    expect(r.v).toBe(V_DROPPED);
    expect(r.frames).toHaveLength(0);
  });

  it('answers ARP for the gateway and ignores ARP replies and gratuitous ARP', () => {
    const { engine, sink, c1 } = setup();
    const arp = (op: number, target: Uint8Array) => {
      const f = new Uint8Array(42);
      f.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 0);
      f.set(C1_MAC, 6);
      f[12] = 0x08;
      f[13] = 0x06;
      emitArp(
        { operation: op, senderMac: C1_MAC, senderIp: C1, targetMac: new Uint8Array(6), targetIp: target },
        f,
        14,
      );
      return f;
    };
    const r = out(engine, sink, c1, arp(1, UP4));
    expect(r.v).toBe(V_LOCAL);
    const reply = r.frames[0]!.bytes;
    expect(read16(reply, 20)).toBe(2);
    expect(reply.subarray(22, 28)).toEqual(NETVM_MAC); // the vif MAC fe:ff:ff:ff:ff:ff
    expect(reply.subarray(28, 32)).toEqual(UP4);
    expect(out(engine, sink, c1, arp(2, UP4)).frames).toHaveLength(0);
    expect(out(engine, sink, c1, arp(1, C1)).frames).toHaveLength(0); // gratuitous
  });

  it('answers neighbour solicitations for the IPv6 gateway', () => {
    const { engine, sink, c1 } = setup();
    const ns = new Uint8Array(32);
    ns[0] = 135;
    ns.set(UP6, 8);
    ns[24] = 1;
    ns[25] = 1;
    ns.set(C1_MAC, 26);
    const f = frame6({
      src: C1_6,
      dst: ip('ff02::1:ff89:5'),
      proto: 58,
      l4: ns,
      ttl: 255,
      dstMac: new Uint8Array([0x33, 0x33, 0xff, 0x89, 0, 5]),
    });
    fillL4Checksum6(f, 14, 54, 58, 32, 56);
    const r = out(engine, sink, c1, f);
    expect(r.v).toBe(V_LOCAL);
    const na = r.frames[0]!.bytes;
    expect(na[54]).toBe(136);
    expect(na.subarray(62, 78)).toEqual(UP6);
    expect(checksumsValid(na)).toBe(true);
  });
});

describe('traffic to the firewall itself', () => {
  it('answers pings to the gateway', () => {
    const { engine, sink, c1 } = setup();
    const r = out(engine, sink, c1, frame4({ src: C1, dst: UP4, proto: 1, icmpId: 9 }));
    expect(r.v).toBe(V_LOCAL);
    const f = r.frames[0]!;
    expect(f.link).toBe(c1);
    expect(f.bytes[34]).toBe(0);
    expect(u32(f.bytes, 30)).toBe(u32(C1, 0));
    expect(checksumsValid(f.bytes)).toBe(true);
  });

  it('rejects other traffic to the firewall with host-prohibited, and drops DHCP silently', () => {
    const { engine, sink, c1 } = setup();
    const r = out(engine, sink, c1, frame4({ src: C1, dst: UP4, proto: 6, dport: 22 }));
    expect(r.v).toBe(V_REJECTED);
    expect(r.frames[0]!.bytes[34]).toBe(3);
    expect(r.frames[0]!.bytes[35]).toBe(10);
    expect(out(engine, sink, c1, frame4({ src: C1, dst: UP4, proto: 17, dport: 68 })).frames).toHaveLength(0);
  });
});

describe('rules', () => {
  const noSsh = ruleSetOf(
    (q) => (q.dstPort === 22 ? { action: 'drop', rule: 1 } : { action: 'accept', rule: 2 }),
    [1, 2],
  );

  it('answers rule drops with ICMP admin-prohibited like Linux, or silently when configured', () => {
    const { engine, sink, c1 } = setup();
    engine.setRuleSet(c1, noSsh);
    const r = out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 6, dport: 22 }));
    expect(r.v).toBe(V_REJECTED);
    expect(r.frames[0]!.link).toBe(c1);
    expect([r.frames[0]!.bytes[34], r.frames[0]!.bytes[35]]).toEqual([3, 13]);
    expect(checksumsValid(r.frames[0]!.bytes)).toBe(true);
    const quiet = setup({ rejectWithIcmp: false });
    quiet.engine.setRuleSet(quiet.c1, noSsh);
    expect(
      out(quiet.engine, quiet.sink, quiet.c1, frame4({ src: C1, dst: REMOTE, proto: 6, dport: 22 })).frames,
    ).toHaveLength(0);
  });

  it('drops everything for a client without rules or with a fail-closed set', () => {
    const { engine, sink, c1 } = setup({ rejectWithIcmp: false });
    engine.setRuleSet(c1, undefined);
    expect(out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 17 })).v).toBe(V_DROPPED);
    engine.setRuleSet(
      c1,
      ruleSetOf(() => ({ action: 'accept', rule: 0 }), [0], 'dsthost example.com did not resolve'),
    );
    expect(out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 17 })).v).toBe(V_DROPPED);
    expect(engine.stats().links[1]!.dropsByReason['fail-closed']).toBe(2);
  });

  it('cuts existing connections that a new rule set blocks and keeps the others', () => {
    const { engine, sink, c1 } = setup();
    out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 6, sport: 1111, dport: 22 }));
    out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 6, sport: 2222, dport: 443 }));
    expect(engine.conntrack.size).toBe(2);
    expect(engine.setRuleSet(c1, noSsh)).toBe(1);
    expect(engine.conntrack.size).toBe(1);
    expect(
      out(engine, sink, UPLINK, toUplink(REMOTE, UP4, { proto: 6, sport: 22, dport: 1111, tcpFlags: 0x12 }))
        .v,
    ).toBe(V_DROPPED);
    expect(
      out(engine, sink, UPLINK, toUplink(REMOTE, UP4, { proto: 6, sport: 443, dport: 2222, tcpFlags: 0x12 }))
        .v,
    ).toBe(V_FORWARDED);
  });

  it('counts packets and bytes per rule and per client', () => {
    const { engine, sink, c1 } = setup();
    engine.setRuleSet(c1, noSsh);
    out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 6, sport: 1, dport: 22 }));
    out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 6, sport: 2, dport: 80 }));
    out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 6, sport: 2, dport: 80, tcpFlags: 0x10 }));
    const s = engine.stats().links[1]!;
    expect(s.rules).toEqual([
      { rule: 1, packets: 1, bytes: 40 },
      { rule: 2, packets: 2, bytes: 80 },
      { rule: 'policy', packets: 0, bytes: 0 },
    ]);
    expect(s.accepted).toBe(2);
    expect(s.dropsByReason.rule).toBe(1);
  });

  it('logs which rule decided each new flow while a decision log is set, rate-limited', () => {
    const { engine, sink, c1 } = setup();
    engine.setRuleSet(
      c1,
      ruleSetOf(
        (q) =>
          q.dstPort === 22
            ? { action: 'drop', rule: 1 }
            : q.dstPort === 80
              ? { action: 'accept', rule: 2 }
              : { action: 'drop', rule: -1 },
        [1, 2],
      ),
    );
    const lines: DecisionLogEntry[] = [];
    out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 6, sport: 9, dport: 80 }));
    expect(lines).toEqual([]);
    engine.setDecisionLog((e) => lines.push(e));
    out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 6, sport: 1, dport: 22 }));
    out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 6, sport: 2, dport: 80 }));
    // the flow's later packets are not decisions
    out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 6, sport: 2, dport: 80, tcpFlags: 0x10 }));
    out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 17, sport: 3, dport: 53 }));
    expect(
      lines.map(({ action, rule, client, suppressed }) => ({ action, rule, client, suppressed })),
    ).toEqual([
      { action: 'drop', rule: 1, client: 'work', suppressed: 0 },
      { action: 'accept', rule: 2, client: 'work', suppressed: 0 },
      { action: 'drop', rule: 'policy', client: 'work', suppressed: 0 },
    ]);
    expect(lines[1]!.packet).toMatch(/^tcp .*:2 -> .*:80$/);
    // a burst of new flows: 20 lines, then the rest counted on the next line that is let through
    lines.length = 0;
    for (let port = 1000; port < 1050; port++)
      out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 6, sport: port, dport: 22 }));
    expect(lines.length).toBeLessThanOrEqual(20);
    engine.tick(60_000);
    out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 6, sport: 2000, dport: 22 }));
    expect(lines.at(-1)!.suppressed).toBe(50 - (lines.length - 1));
    engine.setDecisionLog(undefined);
    const before = lines.length;
    out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 6, sport: 3000, dport: 22 }));
    expect(lines.length).toBe(before);
  });
});

describe('firewall-originated ICMP', () => {
  it('sends time exceeded for TTL 1, rate-limited per destination like Linux (burst 6, then 1/s)', () => {
    const { engine, sink, c1 } = setup();
    let sent = 0;
    for (let i = 0; i < 20; i++)
      sent += out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 17, ttl: 1 })).frames.length;
    expect(sent).toBe(6);
    engine.tick(3000);
    for (let i = 0; i < 20; i++)
      sent += out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 17, ttl: 1 })).frames.length;
    expect(sent).toBe(8);
  });

  it('sends fragmentation needed for DF packets over the uplink MTU, without rate limit', () => {
    const { engine, sink, c1 } = setup();
    for (let i = 0; i < 10; i++) {
      const r = out(
        engine,
        sink,
        c1,
        frame4({ src: C1, dst: REMOTE, proto: 17, df: true, payload: new Uint8Array(1600) }),
      );
      expect(r.v).toBe(V_REJECTED);
      expect([r.frames[0]!.bytes[34], r.frames[0]!.bytes[35], read16(r.frames[0]!.bytes, 40)]).toEqual([
        3, 4, 1500,
      ]);
    }
  });
});

describe('fragments', () => {
  it('forwards later fragments with their first fragment’s translation and drops orphans', () => {
    const { engine, sink, c1, c2 } = setup();
    // c2 takes port 7000 first so c1's fragments need a new port
    out(
      engine,
      sink,
      c2,
      frame4({ src: C2, dst: REMOTE, proto: 17, sport: 7000, dport: 53, srcMac: C2_MAC }),
    );
    const first = frame4({
      src: C1,
      dst: REMOTE,
      proto: 17,
      sport: 7000,
      dport: 53,
      payload: new Uint8Array(16),
      fragment: { ident: 99, offset: 0, more: true },
    });
    const a = out(engine, sink, c1, first).frames[0]!;
    const later = frame4({
      src: C1,
      dst: REMOTE,
      proto: 17,
      payload: new Uint8Array(16),
      fragment: { ident: 99, offset: 24, more: false },
    });
    const b = out(engine, sink, c1, later);
    expect(b.v).toBe(V_FORWARDED);
    expect(u32(b.frames[0]!.bytes, 26)).toBe(u32(UP4, 0));
    expect(checksumsValid(b.frames[0]!.bytes)).toBe(true);
    void a;
    const orphan = frame4({
      src: C1,
      dst: REMOTE,
      proto: 17,
      payload: new Uint8Array(16),
      fragment: { ident: 100, offset: 24, more: false },
    });
    // a later fragment before its first is held, then sent once the first fragment arrives
    expect(out(engine, sink, c1, orphan).v).toBe(V_LOCAL);
    expect(engine.stats().links[1]!.fragmentsHeld).toBe(1);
    const orphanFirst = frame4({
      src: C1,
      dst: REMOTE,
      proto: 17,
      sport: 7001,
      dport: 53,
      payload: new Uint8Array(16),
      fragment: { ident: 100, offset: 0, more: true },
    });
    const both = out(engine, sink, c1, orphanFirst);
    expect(both.v).toBe(V_FORWARDED);
    expect(both.frames.map((f) => (read16(f.bytes, 20) & 0x1fff) * 8)).toEqual([0, 24]);
    expect(both.frames.every((f) => u32(f.bytes, 26) === u32(UP4, 0))).toBe(true);
    expect(engine.stats().links[1]!.fragmentsHeld).toBe(0);
    // one that never sees its first fragment expires with ipfrag_time
    const lonely = frame4({
      src: C1,
      dst: REMOTE,
      proto: 17,
      payload: new Uint8Array(16),
      fragment: { ident: 101, offset: 24, more: false },
    });
    expect(out(engine, sink, c1, lonely).v).toBe(V_LOCAL);
    engine.tick(1000 + 31_000);
    expect(engine.stats().links[1]!.fragmentsHeld).toBe(0);
  });
});

describe('IPv6', () => {
  it('masquerades IPv6 to the uplink address and translates replies back', () => {
    const { engine, sink, c1 } = setup();
    const f = frame6({ src: C1_6, dst: REMOTE6, proto: 6, sport: 40000, dport: 443 });
    const o = out(engine, sink, c1, f).frames[0]!;
    expect(o.bytes.subarray(22, 38)).toEqual(UP6);
    expect(checksumsValid(o.bytes)).toBe(true);
    const reply = frame6({
      src: REMOTE6,
      dst: UP6,
      proto: 6,
      sport: 443,
      dport: 40000,
      tcpFlags: 0x12,
      srcMac: NETVM_MAC,
      dstMac: UP_MAC,
    });
    const r = out(engine, sink, UPLINK, reply).frames[0]!;
    expect(r.link).toBe(c1);
    expect(r.bytes.subarray(38, 54)).toEqual(C1_6);
    expect(checksumsValid(r.bytes)).toBe(true);
  });

  it('drops IPv6 from a client without an IPv6 address', () => {
    const { engine, sink, c2 } = setup();
    expect(out(engine, sink, c2, frame6({ src: C1_6, dst: REMOTE6, proto: 17, srcMac: C2_MAC })).v).toBe(
      V_DROPPED,
    );
  });
});

describe('connection table', () => {
  it('expires unanswered UDP after 30 s and answered UDP after 120 s (nf_conntrack defaults)', () => {
    const { engine, sink, c1 } = setup({ conntrackMax: 64 });
    out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 17, sport: 1, dport: 2 }));
    out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 17, sport: 3, dport: 4 }));
    out(engine, sink, UPLINK, toUplink(REMOTE, UP4, { proto: 17, sport: 4, dport: 3 }));
    engine.tick(1000 + 31_000);
    expect(engine.conntrack.size).toBe(1);
    engine.tick(1000 + 121_000);
    expect(engine.conntrack.size).toBe(0);
  });

  it('keeps established TCP for days and evicts idle or unanswered flows first when full', () => {
    const { engine, sink, c1 } = setup({ conntrackMax: 4, conntrackPerClient: 4 });
    for (const p of [1, 2]) {
      out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 6, sport: p, dport: 443, tcpFlags: 0x02 }));
      out(engine, sink, UPLINK, toUplink(REMOTE, UP4, { proto: 6, sport: 443, dport: p, tcpFlags: 0x12 }));
      out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 6, sport: p, dport: 443, tcpFlags: 0x10 }));
    }
    for (let p = 100; p < 120; p++)
      expect(out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 17, sport: p, dport: 9 })).v).toBe(
        V_FORWARDED,
      );
    expect(engine.conntrack.size).toBe(4);
    // the established flows survived the flood
    expect(
      out(engine, sink, UPLINK, toUplink(REMOTE, UP4, { proto: 6, sport: 443, dport: 1, tcpFlags: 0x10 })).v,
    ).toBe(V_FORWARDED);
    expect(
      out(engine, sink, UPLINK, toUplink(REMOTE, UP4, { proto: 6, sport: 443, dport: 2, tcpFlags: 0x10 })).v,
    ).toBe(V_FORWARDED);
    engine.tick(1000 + 3_600_000);
    expect(
      out(engine, sink, UPLINK, toUplink(REMOTE, UP4, { proto: 6, sport: 443, dport: 1, tcpFlags: 0x10 })).v,
    ).toBe(V_FORWARDED);
  });

  it('keeps a flooding client within its share of the table', () => {
    const { engine, sink, c1, c2 } = setup({ conntrackMax: 8, conntrackPerClient: 4 });
    const open = (link: number, src: Uint8Array, mac: Uint8Array, p: number) => {
      out(
        engine,
        sink,
        link,
        frame4({ src, dst: REMOTE, proto: 6, sport: p, dport: 443, tcpFlags: 0x02, srcMac: mac }),
      );
      out(engine, sink, UPLINK, toUplink(REMOTE, UP4, { proto: 6, sport: 443, dport: p, tcpFlags: 0x12 }));
      out(
        engine,
        sink,
        link,
        frame4({ src, dst: REMOTE, proto: 6, sport: p, dport: 443, tcpFlags: 0x10, srcMac: mac }),
      );
    };
    open(c2, C2, C2_MAC, 7001);
    open(c2, C2, C2_MAC, 7002);
    for (let p = 100; p < 200; p++)
      out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 17, sport: p, dport: 9 }));
    expect(engine.conntrack.countOf(c1)).toBe(4);
    expect(engine.conntrack.countOf(c2)).toBe(2);
    // c2 can still open new flows
    expect(
      out(engine, sink, c2, frame4({ src: C2, dst: REMOTE, proto: 17, sport: 5, dport: 9, srcMac: C2_MAC }))
        .v,
    ).toBe(V_FORWARDED);
  });

  it('refuses new flows rather than evicting live established ones', () => {
    const { engine, sink, c1 } = setup({ conntrackMax: 2, conntrackPerClient: 2 });
    for (const p of [1, 2]) {
      out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 6, sport: p, dport: 443, tcpFlags: 0x02 }));
      out(engine, sink, UPLINK, toUplink(REMOTE, UP4, { proto: 6, sport: 443, dport: p, tcpFlags: 0x12 }));
      out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 6, sport: p, dport: 443, tcpFlags: 0x10 }));
    }
    expect(out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 17, sport: 5, dport: 9 })).v).toBe(
      V_DROPPED,
    );
    expect(engine.stats().links[1]!.dropsByReason['conntrack-full']).toBe(1);
  });
});

describe('mapped IP clients (net.fake-ip)', () => {
  it('accepts the visible address and answers on the visible gateway', () => {
    const { engine, sink } = makeEngine();
    const visible = ip('192.168.77.2');
    const vgw = ip('192.168.77.1');
    const c = engine.addClient({ mac: C1_MAC, ip4: C1, visibleIp4: visible, visibleGateway4: vgw });
    engine.setRuleSet(c, acceptAll);
    expect(engine.receive(c, ...args(frame4({ src: visible, dst: REMOTE, proto: 17 })))).toBe(V_FORWARDED);
    expect(engine.receive(c, ...args(frame4({ src: C1, dst: REMOTE, proto: 17 })))).toBe(V_DROPPED);
    sink.take();
    expect(engine.receive(c, ...args(frame4({ src: visible, dst: vgw, proto: 1 })))).toBe(V_LOCAL);
    expect(u32(sink.take()[0]!.bytes, 26)).toBe(u32(vgw, 0));
  });
});

describe('drop logging', () => {
  it('says why, and is rate-limited', () => {
    const lines: { reason: string; packet: string }[] = [];
    const { engine, sink } = makeEngine({ log: (e) => lines.push(e), logPerSecond: 2 });
    const c = engine.addClient({ mac: C1_MAC, ip4: C1 });
    engine.setRuleSet(c, dropAll);
    engine.tick(0);
    for (let i = 0; i < 50; i++)
      engine.receive(c, ...args(frame4({ src: C1, dst: REMOTE, proto: 6, sport: 1234, dport: 25 })));
    void sink;
    expect(lines.length).toBe(4);
    expect(lines[0]).toMatchObject({ reason: 'rule', packet: 'tcp 10.137.0.20:1234 -> 93.184.216.34:25' });
    expect(engine.stats().logSuppressed).toBe(46);
  });
});

describe('the firewall’s own DNS traffic', () => {
  it('frames the resolver’s datagrams from the uplink address and hands back the answers', () => {
    const { engine, sink } = setup();
    const got: unknown[] = [];
    let pending = [
      {
        transport: 'udp' as const,
        server: UPSTREAM_DNS,
        serverPort: 53,
        localPort: 31337,
        payload: new Uint8Array([1, 2, 3]),
      },
    ];
    engine.attachResolver({
      takeOutgoing: () => {
        const p = pending;
        pending = [];
        return p;
      },
      deliver: (p) => {
        got.push(p);
        return true;
      },
      tick: () => {},
    });
    const q = sink.take()[0]!;
    expect(q.link).toBe(UPLINK);
    expect(u32(q.bytes, 26)).toBe(u32(UP4, 0));
    expect(read16(q.bytes, 34)).toBe(31337);
    expect(checksumsValid(q.bytes)).toBe(true);
    const a = toUplink(UPSTREAM_DNS, UP4, {
      proto: 17,
      sport: 53,
      dport: 31337,
      payload: new Uint8Array([9]),
    });
    expect(engine.receive(UPLINK, a, 0, a.length, meta0())).toBe(V_LOCAL);
    expect(got).toHaveLength(1);
  });
});

function args(f: Uint8Array): [Uint8Array, number, number, ReturnType<typeof meta0>] {
  return [f, 0, f.length, meta0()];
}

describe('client addresses', () => {
  it('reads the first IPv4 and IPv6 of a vif backend `ip` key', () => {
    expect(parseVifAddresses('10.137.0.20 fd09:24ef:4179::a89:14')).toEqual({ ip4: C1, ip6: C1_6 });
    expect(parseVifAddresses('  10.137.0.20  ')).toEqual({ ip4: C1, ip6: undefined });
    expect(parseVifAddresses('garbage 10.137.0.999 ::zz')).toEqual({ ip4: undefined, ip6: undefined });
  });
});

describe('more of the packet path', () => {
  it('cuts tracked flows to an address that becomes a client’s, and a removed client’s flows', () => {
    const { engine, sink, c1 } = setup();
    const other = ip('198.51.100.7');
    out(engine, sink, c1, frame4({ src: C1, dst: other, proto: 17, sport: 1, dport: 2 }));
    out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 17, sport: 3, dport: 4 }));
    expect(engine.conntrack.size).toBe(2);
    engine.setConnectedIps([C1, C2, other]);
    expect(engine.conntrack.size).toBe(1);
    engine.removeClient(c1);
    expect(engine.conntrack.size).toBe(0);
    expect(out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 17 })).v).toBe(V_DROPPED);
  });

  it('calls a TCP flow opened by RST or SYN+ACK invalid, and closes flows on FIN with short timeouts', () => {
    const { engine, sink, c1 } = setup({ conntrackMax: 64 });
    expect(
      out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 6, sport: 9, tcpFlags: 0x04 })).v,
    ).toBe(V_DROPPED);
    expect(
      out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 6, sport: 9, tcpFlags: 0x12 })).v,
    ).toBe(V_DROPPED);
    expect(engine.stats().links[1]!.dropsByReason['tcp-invalid']).toBe(2);
    const c = (flags: number) =>
      out(
        engine,
        sink,
        c1,
        frame4({ src: C1, dst: REMOTE, proto: 6, sport: 10, dport: 443, tcpFlags: flags }),
      );
    const u = (flags: number) =>
      out(engine, sink, UPLINK, toUplink(REMOTE, UP4, { proto: 6, sport: 443, dport: 10, tcpFlags: flags }));
    c(0x02);
    u(0x12);
    c(0x10);
    c(0x11); // FIN from the client
    u(0x11); // FIN from the server
    c(0x10); // last ACK: TIME_WAIT, 2 minutes
    engine.tick(1000 + 121_000);
    expect(engine.conntrack.size).toBe(0);
  });

  it('answers ARP for the uplink address, learns the netvm’s MAC, and asks for it', () => {
    const { engine, sink } = setup();
    const arp = (op: number, senderMac: Uint8Array, sender: Uint8Array, target: Uint8Array) => {
      const f = new Uint8Array(42);
      f.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 0);
      f.set(senderMac, 6);
      f[12] = 0x08;
      f[13] = 0x06;
      emitArp(
        { operation: op, senderMac, senderIp: sender, targetMac: new Uint8Array(6), targetIp: target },
        f,
        14,
      );
      return f;
    };
    const netvm = ip('10.137.0.1');
    const r = out(engine, sink, UPLINK, arp(1, NETVM_MAC, netvm, UP4));
    expect(r.v).toBe(V_LOCAL);
    expect(r.frames[0]!.bytes.subarray(22, 28)).toEqual(UP_MAC);
    const learned = new Uint8Array([0x02, 0, 0, 0, 0, 9]);
    out(engine, sink, UPLINK, arp(2, learned, netvm, UP4));
    expect(engine.uplinkGatewayMac).toBe('02:00:00:00:00:09');
    engine.solicitGateway();
    const q = sink.take()[0]!;
    expect([q.link, read16(q.bytes, 20)]).toEqual([UPLINK, 1]);
  });

  it('answers IPv6 pings to the gateway, rejects other IPv6 to it, and sends IPv6 errors', () => {
    const { engine, sink, c1 } = setup();
    const ping = out(engine, sink, c1, frame6({ src: C1_6, dst: UP6, proto: 58 }));
    expect(ping.v).toBe(V_LOCAL);
    expect(ping.frames[0]!.bytes[54]).toBe(129);
    expect(checksumsValid(ping.frames[0]!.bytes)).toBe(true);
    const tcp = out(engine, sink, c1, frame6({ src: C1_6, dst: UP6, proto: 6, dport: 22 }));
    expect([tcp.frames[0]!.bytes[54], tcp.frames[0]!.bytes[55]]).toEqual([1, 1]);
    const ttl = out(engine, sink, c1, frame6({ src: C1_6, dst: REMOTE6, proto: 17, ttl: 1 }));
    expect(ttl.frames[0]!.bytes[54]).toBe(3);
    const big = out(
      engine,
      sink,
      c1,
      frame6({ src: C1_6, dst: REMOTE6, proto: 17, payload: new Uint8Array(1500) }),
    );
    expect([big.frames[0]!.bytes[54], read32(big.frames[0]!.bytes, 58)]).toEqual([2, 1500]);
    expect(checksumsValid(big.frames[0]!.bytes)).toBe(true);
  });

  it('checks GSO frames against the MTU per segment', () => {
    const { engine, sink, c1 } = setup();
    const payload = new Uint8Array(4000);
    const ok = frame4({
      src: C1,
      dst: REMOTE,
      proto: 6,
      sport: 1,
      tcpFlags: 0x02,
      df: true,
      partialChecksum: true,
      payload,
    });
    expect(
      out(engine, sink, c1, ok, { csumBlank: true, dataValidated: false, gsoType: 1, gsoSize: 1460 }).v,
    ).toBe(V_FORWARDED);
    const tooBig = frame4({
      src: C1,
      dst: REMOTE,
      proto: 6,
      sport: 2,
      tcpFlags: 0x02,
      df: true,
      partialChecksum: true,
      payload,
    });
    const r = out(engine, sink, c1, tooBig, {
      csumBlank: true,
      dataValidated: false,
      gsoType: 1,
      gsoSize: 1480,
    });
    expect(r.v).toBe(V_REJECTED);
    expect([r.frames[0]!.bytes[34], r.frames[0]!.bytes[35], read16(r.frames[0]!.bytes, 40)]).toEqual([
      3, 4, 1500,
    ]);
  });

  it('sends a client’s ICMP error about a reply out with our address and the embedded header translated', () => {
    const { engine, sink, c1, c2 } = setup();
    out(
      engine,
      sink,
      c2,
      frame4({ src: C2, dst: REMOTE, proto: 17, sport: 6000, dport: 7000, srcMac: C2_MAC }),
    );
    out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 17, sport: 6000, dport: 7000 }));
    sink.take();
    // c1's flow got another port; the reply to port 6000 reaches c2, which answers port unreachable
    expect(engine.stats().conntrack.size).toBe(2);
    const reply = toUplink(REMOTE, UP4, { proto: 17, sport: 7000, dport: 6000 });
    const back = out(engine, sink, UPLINK, reply).frames[0]!;
    expect(back.link).toBe(c2); // port 6000 was c2's
    const quoted = back.bytes.slice(14, 14 + 28);
    const body = new Uint8Array(8 + 28);
    body[0] = 3;
    body[1] = 3;
    body.set(quoted, 8);
    const err = frame4({ src: C2, dst: REMOTE, proto: 1, l4: body, srcMac: C2_MAC });
    err[36] = 0;
    err[37] = 0;
    const cs = checksum(err, 34, body.length);
    err[36] = cs >> 8;
    err[37] = cs & 0xff;
    const r = out(engine, sink, c2, err);
    expect(r.v).toBe(V_FORWARDED);
    const f = r.frames[0]!;
    expect(f.link).toBe(UPLINK);
    expect(u32(f.bytes, 26)).toBe(u32(UP4, 0));
    expect(u32(f.bytes, 42 + 16)).toBe(u32(UP4, 0)); // embedded destination: our address
    expect(checksumsValid(f.bytes)).toBe(true);
  });
});

describe('fragmentation on output', () => {
  for (const partial of [false, true]) {
    it(`fragments non-DF packets over the uplink MTU${partial ? ' (checksum-blank: the checksum is finished first)' : ''}`, () => {
      const { engine, sink, c1 } = setup();
      const payload = new Uint8Array(3000).map((_, i) => (i * 31) & 0xff);
      const f = frame4({
        src: C1,
        dst: REMOTE,
        proto: 17,
        sport: 4444,
        dport: 5555,
        payload,
        partialChecksum: partial,
      });
      const r = out(engine, sink, c1, f, { ...meta0(), csumBlank: partial });
      expect(r.v).toBe(V_FORWARDED);
      expect(r.frames.length).toBe(3);
      const datagram = new Uint8Array(8 + 3000);
      let expectOffset = 0;
      r.frames.forEach((fr, i) => {
        const b = fr.bytes;
        expect(b.length).toBeLessThanOrEqual(1514);
        expect(fr.meta.csumBlank).toBe(false);
        expect(checksum(b, 14, 20)).toBe(0);
        expect(u32(b, 26)).toBe(u32(UP4, 0));
        const ff = read16(b, 20);
        expect((ff & 0x1fff) * 8).toBe(expectOffset);
        expect((ff & 0x2000) !== 0).toBe(i < 2);
        const data = b.subarray(34, 14 + read16(b, 16));
        datagram.set(data, expectOffset);
        expectOffset += data.length;
      });
      expect(expectOffset).toBe(3008);
      expect(datagram.subarray(8)).toEqual(payload);
      // the reassembled datagram's UDP checksum verifies with the translated addresses
      const pseudo = new Uint8Array(20 + 3008);
      pseudo.set(r.frames[0]!.bytes.subarray(14, 34), 0);
      pseudo.set(datagram, 20);
      expect(fold(sumWords(pseudo, 20, 3008, pseudoSum4(pseudo, 0, 17, 3008)))).toBe(0xffff);
    });
  }
});

describe('fragment trains and reused flow slots', () => {
  it('drops a later fragment whose flow was cut, even when its slot holds a new flow', () => {
    const { engine, sink, c1 } = setup();
    const first = frame4({
      src: C1,
      dst: REMOTE,
      proto: 17,
      sport: 1,
      dport: 2,
      payload: new Uint8Array(16),
      fragment: { ident: 5, offset: 0, more: true },
    });
    expect(out(engine, sink, c1, first).v).toBe(V_FORWARDED);
    engine.setRuleSet(c1, dropAll);
    engine.setRuleSet(c1, acceptAll);
    expect(engine.conntrack.size).toBe(0);
    expect(out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 17, sport: 3, dport: 4 })).v).toBe(
      V_FORWARDED,
    );
    const later = frame4({
      src: C1,
      dst: REMOTE,
      proto: 17,
      payload: new Uint8Array(16),
      fragment: { ident: 5, offset: 24, more: false },
    });
    expect(out(engine, sink, c1, later).v).toBe(V_DROPPED);
    expect(engine.stats().links[1]!.dropsByReason['fragment-untracked']).toBe(1);
  });
});

describe('IPv6 details', () => {
  it('forwards packets with extension headers and translates ICMPv6 errors back to the client', () => {
    const { engine, sink, c1 } = setup();
    // UDP behind a destination-options header
    const udp = frame6({
      src: C1_6,
      dst: REMOTE6,
      proto: 17,
      sport: 5353,
      dport: 9999,
      payload: new Uint8Array(4),
    });
    const withExt = new Uint8Array(udp.length + 8);
    withExt.set(udp.subarray(0, 54));
    withExt[20] = 60; // next header: destination options
    withExt.set([17, 0, 1, 4, 0, 0, 0, 0], 54);
    withExt.set(udp.subarray(54), 62);
    withExt[18] = 0;
    withExt[19] = 8 + 12; // payload length
    const o = out(engine, sink, c1, withExt);
    expect(engine.stats().links[1]!.dropsByReason).toEqual({});
    expect(o.v).toBe(V_FORWARDED);
    const sent = o.frames[0]!.bytes;
    expect(sent.subarray(22, 38)).toEqual(UP6);
    // the remote answers with port unreachable quoting what it received
    const quote = sent.slice(14);
    const body = new Uint8Array(8 + quote.length);
    body[0] = 1;
    body[1] = 4;
    body.set(quote, 8);
    const err = frame6({ src: REMOTE6, dst: UP6, proto: 58, l4: body, srcMac: NETVM_MAC, dstMac: UP_MAC });
    fillL4Checksum6(err, 14, 54, 58, body.length, 56);
    const r = out(engine, sink, UPLINK, err);
    expect(r.v).toBe(V_FORWARDED);
    const back = r.frames[0]!.bytes;
    expect(back.subarray(38, 54)).toEqual(C1_6); // outer destination
    expect(back.subarray(62 + 8, 62 + 24)).toEqual(C1_6); // embedded source
    expect(checksumsValid(back)).toBe(true);
  });

  it('answers neighbour solicitations for its uplink address and ignores router advertisements', () => {
    const { engine, sink } = setup();
    const ns = new Uint8Array(32);
    ns[0] = 135;
    ns.set(UP6, 8);
    ns[24] = 1;
    ns[25] = 1;
    ns.set(NETVM_MAC, 26);
    const f = frame6({
      src: ip('fe80::1'),
      dst: ip('ff02::1:ff89:5'),
      proto: 58,
      l4: ns,
      ttl: 255,
      srcMac: NETVM_MAC,
      dstMac: new Uint8Array([0x33, 0x33, 0xff, 0x89, 0, 5]),
    });
    fillL4Checksum6(f, 14, 54, 58, 32, 56);
    const r = out(engine, sink, UPLINK, f);
    expect(r.v).toBe(V_LOCAL);
    expect(r.frames[0]!.bytes.subarray(62, 78)).toEqual(UP6);
    const ra = new Uint8Array(16);
    ra[0] = 134;
    const g = frame6({
      src: ip('fe80::1'),
      dst: ip('ff02::1'),
      proto: 58,
      l4: ra,
      ttl: 255,
      srcMac: NETVM_MAC,
      dstMac: new Uint8Array([0x33, 0x33, 0, 0, 0, 1]),
    });
    fillL4Checksum6(g, 14, 54, 58, 16, 56);
    expect(out(engine, sink, UPLINK, g).v).toBe(V_DROPPED);
  });
});

describe('ICMPv6 echo', () => {
  it('translates the echo identifier and the ICMPv6 checksum both ways', () => {
    const { engine, sink, c1 } = setup();
    const o = out(engine, sink, c1, frame6({ src: C1_6, dst: REMOTE6, proto: 58, icmpId: 77 })).frames[0]!;
    expect(o.bytes.subarray(22, 38)).toEqual(UP6);
    expect(checksumsValid(o.bytes)).toBe(true);
    const id = read16(o.bytes, 58);
    const reply = frame6({
      src: REMOTE6,
      dst: UP6,
      proto: 58,
      icmpType: 129,
      icmpId: id,
      srcMac: NETVM_MAC,
      dstMac: UP_MAC,
    });
    const back = out(engine, sink, UPLINK, reply).frames[0]!;
    expect(back.link).toBe(c1);
    expect(read16(back.bytes, 58)).toBe(77);
    expect(back.bytes.subarray(38, 54)).toEqual(C1_6);
    expect(checksumsValid(back.bytes)).toBe(true);
  });
});

describe('a new uplink', () => {
  it('keeps clients and rules, cuts flows when our address changes, and keeps working', () => {
    const { engine, sink, c1 } = setup();
    out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 17, sport: 1, dport: 2 }));
    // the netvm restarted with the same addresses: flows stay
    expect(engine.setUplink({ mac: UP_MAC, ip4: UP4, gateway4: ip('10.137.0.1'), ip6: UP6 })).toBe(0);
    expect(engine.conntrack.size).toBe(1);
    // a different netvm and a new address for us
    const newUp = ip('10.138.0.9');
    expect(engine.setUplink({ mac: UP_MAC, ip4: newUp, gateway4: ip('10.138.0.1') })).toBe(1);
    const o = out(engine, sink, c1, frame4({ src: C1, dst: REMOTE, proto: 17, sport: 1, dport: 2 }))
      .frames[0]!;
    expect(u32(o.bytes, 26)).toBe(u32(newUp, 0));
    const r = out(engine, sink, UPLINK, toUplink(REMOTE, newUp, { proto: 17, sport: 2, dport: 1 }));
    expect(r.frames[0]!.link).toBe(c1);
    // the old address is ours no longer, the new one is
    expect(out(engine, sink, UPLINK, toUplink(newUp, newUp, { proto: 17, sport: 2, dport: 1 })).v).toBe(
      V_DROPPED,
    );
    expect(engine.stats().links[0]!.dropsByReason['spoofed-from-uplink']).toBe(1);
  });
});

describe('knobs for tests', () => {
  it('frame4 sets the IPv4 identification and keeps every checksum complete', () => {
    for (const proto of [6, 17, 1]) {
      const f = frame4({ src: C1, dst: REMOTE, proto, ipId: 0xbeef });
      expect(read16(f, 18)).toBe(0xbeef);
      expect(checksumsValid(f)).toBe(true);
    }
  });

  it('the ICMP rate limit is configurable (EngineConfig.icmpRate); by default a burst of 6 per destination', () => {
    const rejects = (extra: object) => {
      const { engine, sink, c1 } = setup(extra);
      engine.setRuleSet(c1, dropAll);
      let sent = 0;
      for (let i = 0; i < 20; i++) {
        const r = out(
          engine,
          sink,
          c1,
          frame4({ src: C1, dst: REMOTE, proto: 6, sport: 30000 + i, dport: 22 }),
        );
        sent += r.frames.length;
        expect(r.v).toBe(r.frames.length > 0 ? V_REJECTED : V_DROPPED);
      }
      return sent;
    };
    expect(rejects({})).toBe(6);
    expect(rejects({ icmpRate: { perDestBurst: 100 } })).toBe(20);
    expect(rejects({ icmpRate: { perDestBurst: 100, globalBurst: 3 } })).toBe(3);
  });
});
