import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SourceRules } from '../rules/client-rules.ts';
import type { FlowQuery } from '../rules/types.ts';
import { dnsServersFromQubesDb, StubResolver, type StubResolverOptions } from './resolver.ts';
import { a, aaaa, asUdpReply, cname, questionOf, reply, seededRandomSource } from './test-server.ts';
import type { DnsDatagramOut, DnsPacketOut } from './types.ts';
import { CLASS_IN, RCODE_NXDOMAIN, RCODE_SERVFAIL, TYPE_A, TYPE_AAAA, TYPE_SOA } from './wire.ts';

const PRIMARY = Uint8Array.of(10, 139, 1, 1);
const SECONDARY = Uint8Array.of(10, 139, 1, 2);

function setup(overrides: Partial<StubResolverOptions> = {}) {
  let now = 1_000;
  const logs: string[] = [];
  const resolver = new StubResolver({
    servers: dnsServersFromQubesDb(['10.139.1.1', '10.139.1.2']),
    now: () => now,
    random: seededRandomSource(42),
    log: (l) => logs.push(l),
    ...overrides,
  });
  const changes: string[] = [];
  resolver.subscribe((name, family) => changes.push(`${family}:${name}`));
  return {
    resolver,
    logs,
    changes,
    get now() {
      return now;
    },
    advance(ms: number) {
      now += ms;
      resolver.tick(now);
    },
    udp(): DnsDatagramOut[] {
      return resolver.takeOutgoing().filter((p): p is DnsDatagramOut => p.transport === 'udp');
    },
  };
}

describe('StubResolver over UDP', () => {
  it('asks the primary server from a random port with a random id, and takes a matching answer', () => {
    const t = setup();
    t.resolver.retain('www.example.com', 4);
    expect(t.resolver.answer('www.example.com', 4)).toEqual({ state: 'pending' });
    const [q] = t.udp();
    expect(q).toMatchObject({ transport: 'udp', server: PRIMARY, serverPort: 53 });
    expect(q!.localPort).toBeGreaterThanOrEqual(49152);
    expect(questionOf(q!)).toMatchObject({ name: 'www.example.com', type: TYPE_A });
    expect(
      t.resolver.deliver(
        asUdpReply(q!, reply(q!.payload, [a('www.example.com', [93, 184, 216, 34])])),
        t.now,
      ),
    ).toBe(true);
    expect(t.resolver.answer('www.example.com', 4)).toEqual({
      state: 'resolved',
      addresses: [Uint8Array.of(93, 184, 216, 34)],
    });
    expect(t.changes).toEqual(['4:www.example.com']);
  });

  it('uses a different id and port for every query', () => {
    const t = setup({ random: undefined }); // crypto.getRandomValues
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) t.resolver.retain(`n${i}.example`, 4);
    for (const q of t.udp()) seen.add(`${questionOf(q).id}/${q.localPort}`);
    expect(seen.size).toBe(20);
    const ports = new Set([...seen].map((s) => s.split('/')[1]));
    expect(ports.size).toBe(20);
  });

  it('ignores answers from another address or port, with another id, question or QR unset', () => {
    const t = setup();
    t.resolver.retain('www.example.com', 4);
    const [q] = t.udp();
    const good = reply(q!.payload, [a('www.example.com', [1, 2, 3, 4])]);
    const forged = [
      { ...asUdpReply(q!, good), server: Uint8Array.of(10, 139, 1, 3) },
      { ...asUdpReply(q!, good), serverPort: 5353 },
      asUdpReply(
        q!,
        reply(q!.payload, [a('www.example.com', [6, 6, 6, 6])], { id: (questionOf(q!).id + 1) & 0xffff }),
      ),
      asUdpReply(q!, reply(q!.payload, [a('www.example.com', [6, 6, 6, 6])], { qr: false })),
      asUdpReply(q!, Uint8Array.from([1, 2, 3])),
    ];
    for (const p of forged) expect(t.resolver.deliver(p, t.now)).toBe(true);
    // another question with the right id
    const other = reply(q!.payload, [a('evil.example', [6, 6, 6, 6])]);
    other[13] = 0x78; // 'www' → 'wxw'
    expect(t.resolver.deliver(asUdpReply(q!, other), t.now)).toBe(true);
    expect(t.resolver.answer('www.example.com', 4)).toEqual({ state: 'pending' });
    expect(t.resolver.stats.answersRejected).toBe(5);
    expect(t.resolver.stats.malformed).toBe(1);
    t.resolver.deliver(asUdpReply(q!, good), t.now);
    expect(t.resolver.answer('www.example.com', 4)).toMatchObject({ state: 'resolved' });
  });

  it('leaves packets for other ports to the engine', () => {
    const t = setup();
    t.resolver.retain('www.example.com', 4);
    const [q] = t.udp();
    expect(
      t.resolver.deliver(
        { ...asUdpReply(q!, new Uint8Array(12)), localPort: q!.localPort === 50000 ? 50001 : 50000 },
        t.now,
      ),
    ).toBe(false);
    expect(t.resolver.ownsPort('udp', q!.localPort)).toBe(true);
  });

  it('asks AAAA for IPv6 trees', () => {
    const t = setup();
    t.resolver.retain('v6.example', 6);
    const [q] = t.udp();
    expect(questionOf(q!).type).toBe(TYPE_AAAA);
    const addr = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    t.resolver.deliver(asUdpReply(q!, reply(q!.payload, [aaaa('v6.example', addr)])), t.now);
    expect(t.resolver.answer('v6.example', 6)).toEqual({
      state: 'resolved',
      addresses: [Uint8Array.from(addr)],
    });
  });

  it('times out, goes on to the secondary server, and fails after two rounds', () => {
    const t = setup();
    t.resolver.retain('slow.example', 4);
    const servers: Uint8Array[] = [];
    servers.push(t.udp()[0]!.server);
    for (let i = 0; i < 3; i++) {
      t.advance(2000);
      servers.push(t.udp()[0]!.server);
    }
    expect(servers).toEqual([PRIMARY, SECONDARY, PRIMARY, SECONDARY]);
    t.advance(2000);
    expect(t.resolver.answer('slow.example', 4)).toEqual({
      state: 'failed',
      reason: 'no answer from the DNS servers (timeout)',
    });
    expect(t.logs.at(-1)).toMatch(/DNS lookup of slow.example \(IPv4\) failed/);
    // asked again later
    t.advance(30_000);
    expect(t.udp()).toHaveLength(1);
  });

  it('tries the next server on SERVFAIL, and fails on NXDOMAIN with the SOA negative TTL', () => {
    const t = setup();
    t.resolver.retain('gone.example', 4);
    const [q1] = t.udp();
    t.resolver.deliver(asUdpReply(q1!, reply(q1!.payload, [], { rcode: RCODE_SERVFAIL })), t.now);
    const [q2] = t.udp();
    expect(q2!.server).toEqual(SECONDARY);
    const soa = {
      name: 'example',
      type: TYPE_SOA,
      class: CLASS_IN,
      ttl: 900,
      data: {
        kind: 'soa' as const,
        mname: 'ns.example',
        rname: 'h.example',
        serial: 1,
        refresh: 1,
        retry: 1,
        expire: 1,
        minimum: 120,
      },
    };
    t.resolver.deliver(asUdpReply(q2!, reply(q2!.payload, [], { rcode: RCODE_NXDOMAIN }, [soa])), t.now);
    expect(t.resolver.answer('gone.example', 4)).toEqual({ state: 'failed', reason: 'NXDOMAIN' });
    t.advance(119_000);
    expect(t.udp()).toHaveLength(0);
    t.advance(1_000);
    expect(t.udp()).toHaveLength(1);
  });

  it('reports no addresses for a name without records of the family (NODATA)', () => {
    const t = setup();
    t.resolver.retain('v6only.example', 4);
    const [q] = t.udp();
    t.resolver.deliver(asUdpReply(q!, reply(q!.payload, [])), t.now);
    expect(t.resolver.answer('v6only.example', 4)).toEqual({ state: 'resolved', addresses: [] });
  });

  it('follows CNAME chains in the answer, asks for a target left out, and bounds chains and loops', () => {
    const t = setup();
    t.resolver.retain('www.example', 4);
    let [q] = t.udp();
    t.resolver.deliver(
      asUdpReply(
        q!,
        reply(q!.payload, [
          cname('www.example', 'cdn.example', 600),
          cname('cdn.example', 'edge.cdn.example', 50),
          a('edge.cdn.example', [5, 5, 5, 5], 400),
        ]),
      ),
      t.now,
    );
    expect(t.resolver.answer('www.example', 4)).toEqual({
      state: 'resolved',
      addresses: [Uint8Array.of(5, 5, 5, 5)],
    });
    // the chain's smallest TTL (50 s) decides the refresh
    t.advance(49_000);
    expect(t.udp()).toHaveLength(0);
    t.advance(1_000);
    expect(t.udp()).toHaveLength(1);

    t.resolver.retain('partial.example', 4);
    [q] = t.udp();
    t.resolver.deliver(
      asUdpReply(q!, reply(q!.payload, [cname('partial.example', 'target.example')])),
      t.now,
    );
    const [q2] = t.udp();
    expect(questionOf(q2!).name).toBe('target.example');
    t.resolver.deliver(asUdpReply(q2!, reply(q2!.payload, [a('target.example', [7, 7, 7, 7])])), t.now);
    expect(t.resolver.answer('partial.example', 4)).toMatchObject({
      state: 'resolved',
      addresses: [Uint8Array.of(7, 7, 7, 7)],
    });

    t.resolver.retain('loop.example', 4);
    [q] = t.udp();
    t.resolver.deliver(
      asUdpReply(
        q!,
        reply(q!.payload, [cname('loop.example', 'b.example'), cname('b.example', 'loop.example')]),
      ),
      t.now,
    );
    expect(t.resolver.answer('loop.example', 4)).toEqual({ state: 'failed', reason: 'CNAME loop' });

    t.resolver.retain('c0.example', 4);
    [q] = t.udp();
    const chain = Array.from({ length: 12 }, (_, i) => cname(`c${i}.example`, `c${i + 1}.example`));
    t.resolver.deliver(asUdpReply(q!, reply(q!.payload, [...chain, a('c12.example', [1, 1, 1, 1])])), t.now);
    expect(t.resolver.answer('c0.example', 4)).toEqual({
      state: 'failed',
      reason: 'CNAME chain longer than 8 names',
    });
  });

  it('clamps TTLs: at least 30 s, at most a day', () => {
    const t = setup();
    t.resolver.retain('short.example', 4);
    let [q] = t.udp();
    t.resolver.deliver(asUdpReply(q!, reply(q!.payload, [a('short.example', [1, 1, 1, 1], 0)])), t.now);
    t.advance(29_999);
    expect(t.udp()).toHaveLength(0);
    t.advance(1);
    [q] = t.udp();
    t.resolver.deliver(
      asUdpReply(q!, reply(q!.payload, [a('short.example', [1, 1, 1, 1], 0x7fffffff)])),
      t.now,
    );
    t.advance(86_400_000 - 1);
    expect(t.udp()).toHaveLength(0);
    t.advance(1);
    expect(t.udp()).toHaveLength(1);
  });

  it('keeps old addresses through a refresh until a new answer arrives, and on refresh failure', () => {
    const t = setup();
    t.resolver.retain('www.example', 4);
    let [q] = t.udp();
    t.resolver.deliver(asUdpReply(q!, reply(q!.payload, [a('www.example', [1, 1, 1, 1], 60)])), t.now);
    t.advance(60_000);
    [q] = t.udp();
    expect(t.resolver.answer('www.example', 4)).toMatchObject({ addresses: [Uint8Array.of(1, 1, 1, 1)] });
    // the same addresses again: no change is reported
    t.resolver.deliver(asUdpReply(q!, reply(q!.payload, [a('www.example', [1, 1, 1, 1], 60)])), t.now);
    expect(t.changes).toEqual(['4:www.example']);
    t.advance(60_000);
    for (let i = 0; i < 4; i++) {
      t.udp();
      t.advance(2000); // every server times out
    }
    expect(t.resolver.answer('www.example', 4)).toMatchObject({
      state: 'resolved',
      addresses: [Uint8Array.of(1, 1, 1, 1)],
    });
    expect(t.logs.at(-1)).toMatch(/keeping the previous addresses/);
    // the failed refresh is reported too (the answer is stale now; a rules commit must not count it)
    expect(t.changes).toEqual(['4:www.example', '4:www.example']);
    expect(t.resolver.freshness('www.example', 4)).toBe('stale');
    t.advance(30_000);
    [q] = t.udp();
    t.resolver.deliver(asUdpReply(q!, reply(q!.payload, [a('www.example', [2, 2, 2, 2], 60)])), t.now);
    expect(t.resolver.answer('www.example', 4)).toMatchObject({ addresses: [Uint8Array.of(2, 2, 2, 2)] });
    expect(t.resolver.freshness('www.example', 4)).toBe('fresh');
    expect(t.changes).toEqual(['4:www.example', '4:www.example', '4:www.example']);
  });

  it('stops refreshing names no longer in use', () => {
    const t = setup();
    t.resolver.retain('www.example', 4);
    t.resolver.retain('www.example', 4);
    const [q] = t.udp();
    t.resolver.deliver(asUdpReply(q!, reply(q!.payload, [a('www.example', [1, 1, 1, 1], 60)])), t.now);
    t.resolver.release('www.example', 4);
    t.advance(60_000);
    expect(t.udp()).toHaveLength(1);
    t.resolver.release('www.example', 4);
    t.advance(600_000);
    expect(t.udp()).toHaveLength(0);
    expect(t.resolver.answer('www.example', 4)).toEqual({ state: 'pending' });
  });

  it('keeps at most maxInFlight lookups going and starts the rest as others finish', () => {
    const t = setup({ maxInFlight: 2 });
    for (const n of ['a.example', 'b.example', 'c.example']) t.resolver.retain(n, 4);
    const first = t.udp();
    expect(first.map((q) => questionOf(q).name)).toEqual(['a.example', 'b.example']);
    t.resolver.deliver(
      asUdpReply(first[0]!, reply(first[0]!.payload, [a('a.example', [1, 1, 1, 1])])),
      t.now,
    );
    t.advance(0);
    expect(t.udp().map((q) => questionOf(q).name)).toEqual(['c.example']);
  });

  it('fails names beyond maxNames instead of tracking without bound', () => {
    const t = setup({ maxNames: 1 });
    t.resolver.retain('a.example', 4);
    t.resolver.retain('b.example', 4);
    expect(t.resolver.answer('b.example', 4)).toEqual({
      state: 'failed',
      reason: 'too many names to resolve',
    });
  });

  it('keeps at most maxAddresses addresses of an answer', () => {
    const t = setup({ maxAddresses: 3 });
    t.resolver.retain('many.example', 4);
    const [q] = t.udp();
    const recs = Array.from({ length: 10 }, (_, i) => a('many.example', [10, 0, 0, i]));
    t.resolver.deliver(asUdpReply(q!, reply(q!.payload, recs)), t.now);
    const ans = t.resolver.answer('many.example', 4);
    expect(ans.state === 'resolved' && ans.addresses.length).toBe(3);
  });

  it('survives any garbage sent to its ports (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.constant(new Uint8Array(0))), {
          maxLength: 20,
        }),
        fc.array(
          fc.record({
            seq: fc.nat(),
            ack: fc.nat(),
            flags: fc.nat(255),
            payload: fc.uint8Array({ maxLength: 80 }),
          }),
          { maxLength: 20 },
        ),
        (datagrams, segments) => {
          const t = setup();
          t.resolver.retain('www.example', 4);
          const [q] = t.udp();
          for (const d of datagrams) t.resolver.deliver(asUdpReply(q!, d), t.now);
          expect(t.resolver.answer('www.example', 4)).toEqual({ state: 'pending' });
          // go to TCP and throw random segments at the connection
          t.resolver.deliver(asUdpReply(q!, reply(q!.payload, [], { tc: true })), t.now);
          const [syn] = t.resolver.takeOutgoing();
          for (const s of segments)
            t.resolver.deliver(
              {
                ...s,
                transport: 'tcp',
                server: syn!.server,
                serverPort: 53,
                localPort: syn!.localPort,
                window: 1,
              },
              t.now,
            );
          t.advance(10_000);
          t.resolver.takeOutgoing();
        },
      ),
      { numRuns: 300 },
    );
  });

  it('fails without servers', () => {
    const t = setup({ servers: [] });
    t.resolver.retain('www.example', 4);
    expect(t.resolver.answer('www.example', 4)).toEqual({
      state: 'failed',
      reason: 'no DNS servers configured',
    });
  });
});

describe('dsthost rules through the resolver', () => {
  const tcp = (d: number[]): FlowQuery => ({
    family: 4,
    proto: 6,
    dst: Uint8Array.from(d),
    dstPort: 443,
    icmpType: -1,
    icmpCode: -1,
  });

  it('resolves when rules are applied and swaps in the set once the answer arrives', () => {
    const t = setup();
    const rules = new SourceRules({
      source: '10.137.0.9',
      dnsServers: [PRIMARY, SECONDARY],
      resolver: t.resolver,
    });
    rules.update({ policy: 'drop', '0000': 'action=accept dsthost=www.example.com', '0001': 'action=drop' });
    expect(rules.current.evaluate(tcp([1, 2, 3, 4]), { action: 'accept', rule: 0 }).action).toBe('drop');
    const [q] = t.udp();
    t.resolver.deliver(asUdpReply(q!, reply(q!.payload, [a('www.example.com', [1, 2, 3, 4])])), t.now);
    expect(rules.current.evaluate(tcp([1, 2, 3, 4]), { action: 'drop', rule: 0 })).toEqual({
      action: 'accept',
      rule: 0,
    });
  });

  it('rebuilds the set when a TTL refresh brings new addresses, keeping the old ones meanwhile', () => {
    const t = setup();
    const rules = new SourceRules({
      source: '10.137.0.9',
      dnsServers: [PRIMARY, SECONDARY],
      resolver: t.resolver,
    });
    rules.update({ policy: 'drop', '0000': 'action=accept dsthost=lb.example' });
    let [q] = t.udp();
    t.resolver.deliver(asUdpReply(q!, reply(q!.payload, [a('lb.example', [1, 1, 1, 1], 120)])), t.now);
    const first = rules.current;
    t.advance(120_000);
    [q] = t.udp();
    expect(q).toBeDefined();
    expect(rules.current).toBe(first); // refresh in flight: old addresses still allowed
    expect(rules.current.evaluate(tcp([1, 1, 1, 1]), { action: 'drop', rule: 0 }).action).toBe('accept');
    t.resolver.deliver(asUdpReply(q!, reply(q!.payload, [a('lb.example', [2, 2, 2, 2], 120)])), t.now);
    expect(rules.current).not.toBe(first);
    expect(rules.current.evaluate(tcp([2, 2, 2, 2]), { action: 'drop', rule: 0 }).action).toBe('accept');
    expect(rules.current.evaluate(tcp([1, 1, 1, 1]), { action: 'drop', rule: 0 }).action).toBe('drop');
  });

  it('resolves AAAA for an IPv6 tree', () => {
    const t = setup();
    const rules = new SourceRules({ source: 'fd09:24ef:4179::a89:9', dnsServers: [], resolver: t.resolver });
    rules.update({ policy: 'drop', '0000': 'action=accept dsthost=v6.example' });
    const [q] = t.udp();
    expect(questionOf(q!).type).toBe(TYPE_AAAA);
    const addr = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
    t.resolver.deliver(asUdpReply(q!, reply(q!.payload, [aaaa('v6.example', addr)])), t.now);
    const query: FlowQuery = {
      family: 6,
      proto: 17,
      dst: Uint8Array.from(addr),
      dstPort: 443,
      icmpType: -1,
      icmpCode: -1,
    };
    expect(rules.current.evaluate(query, { action: 'drop', rule: -1 })).toEqual({
      action: 'accept',
      rule: 0,
    });
  });

  it('blocks the client when the name cannot be resolved (a drop rule never fails open)', () => {
    const t = setup();
    const logs: string[] = [];
    const rules = new SourceRules({
      source: '10.137.0.9',
      dnsServers: [PRIMARY, SECONDARY],
      resolver: t.resolver,
      log: (l) => logs.push(l),
    });
    rules.update({ policy: 'drop', '0000': 'action=drop dsthost=tracker.example', '0001': 'action=accept' });
    for (let i = 0; i < 5; i++) t.advance(2000);
    expect(rules.current.failClosedReason).toMatch(/tracker.example: no answer from the DNS servers/);
    expect(rules.current.evaluate(tcp([8, 8, 8, 8]), { action: 'accept', rule: 0 }).action).toBe('drop');
    expect(logs.at(-1)).toMatch(/blocking traffic/);
  });
});

export type { DnsPacketOut };
