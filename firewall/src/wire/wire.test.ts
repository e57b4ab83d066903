import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatIpv4, formatIpv6, parseIpv4Text, parseIpv6Text } from './address.ts';
import { ArpView, emitArp, parseArp } from './arp.ts';
import {
  applyDelta,
  applyPartialDelta,
  checksum,
  fold,
  pseudoSum4,
  read16,
  replaceDelta,
  sumWords,
  wordDelta,
  write16,
} from './checksum.ts';
import { emitEthernet, formatMac, parseEthernet, parseMac } from './ethernet.ts';
import { emitIcmp, IcmpView, parseIcmp } from './icmpv4.ts';
import { checkNeighborMessage, emitNeighbor, parseNeighbor } from './icmpv6.ts';
import { emitIpv4, Ipv4View, parseIpv4 } from './ipv4.ts';
import { emitIpv6, Ipv6View, parseIpv6 } from './ipv6.ts';
import { emitTcp, parseTcp, TcpView } from './tcp.ts';
import { emitUdp, parseUdp, UdpView } from './udp.ts';

const hex = (s: string) =>
  Uint8Array.from(
    s
      .replace(/\s+/g, '')
      .match(/../g)!
      .map((b) => Number.parseInt(b, 16)),
  );

// A captured IPv4/UDP header (the classic example with checksum 0xb861).
const IPV4_HEADER = hex('4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7');
// smoltcp's wire test vectors (src/wire/{tcp,udp,icmpv4}.rs), 192.168.1.1 -> 192.168.1.2.
const TCP_BYTES = hex('bf00 0050 0123 4567 89ab cdef 6035 0123 01b6 0201 0303 0c01 aa00 00ff');
const UDP_BYTES = hex('bf00 0035 000c 124d aa00 00ff');
const ICMP_ECHO = hex('0800 8efe 1234 abcd aa00 00ff');
// An ARP request for 10.137.0.5 from 10.137.0.20 (00:16:3e:5e:6c:01), as Linux sends it.
const ARP_REQUEST = hex('0001 0800 0604 0001 0016 3e5e 6c01 0a89 0014 0000 0000 0000 0a89 0005');

function withPseudo4(l4: Uint8Array, proto: number): { buf: Uint8Array; ip: number; l4: number } {
  const buf = new Uint8Array(20 + l4.length);
  emitIpv4(
    {
      src: Uint8Array.of(192, 168, 1, 1),
      dst: Uint8Array.of(192, 168, 1, 2),
      protocol: proto,
      ttl: 64,
      tos: 0,
      ident: 0,
      dontFragment: false,
      moreFragments: false,
      fragmentOffset: 0,
      options: new Uint8Array(0),
      payloadLen: l4.length,
    },
    buf,
  );
  buf.set(l4, 20);
  return { buf, ip: 0, l4: 20 };
}

describe('IPv4', () => {
  it('decodes a captured header and re-encodes the same bytes', () => {
    const r = parseIpv4(IPV4_HEADER);
    expect(r).toBe('ip4-bad-total-length'); // the header alone is shorter than its total length
    const packet = new Uint8Array(0x73);
    packet.set(IPV4_HEADER);
    const repr = parseIpv4(packet);
    if (typeof repr === 'string') throw new Error(repr);
    expect(formatIpv4(repr.src)).toBe('192.168.0.1');
    expect(formatIpv4(repr.dst)).toBe('192.168.0.199');
    expect(repr).toMatchObject({ protocol: 17, ttl: 64, dontFragment: true, payloadLen: 0x73 - 20 });
    const out = new Uint8Array(20);
    emitIpv4(repr, out);
    expect(out).toEqual(IPV4_HEADER);
    const v = new Ipv4View();
    expect(v.check(packet, 0, packet.length)).toBeUndefined();
    expect(v.headerChecksumOk()).toBe(true);
  });

  it('refuses bad versions, header lengths, options and source routing', () => {
    const p = new Uint8Array(40);
    p.set(IPV4_HEADER);
    write16(p, 2, 40);
    const v = new Ipv4View();
    p[0] = 0x65;
    expect(v.check(p, 0, 40)).toBe('ip4-bad-version');
    p[0] = 0x44;
    expect(v.check(p, 0, 40)).toBe('ip4-bad-header-length');
    p[0] = 0x46; // 4 bytes of options
    p.set([131, 3, 4, 0], 20); // loose source route
    expect(v.check(p, 0, 40)).toBe('ip4-source-route');
    p.set([7, 9, 0, 0], 20); // record route claiming 9 bytes in a 4-byte area
    expect(v.check(p, 0, 40)).toBe('ip4-bad-options');
    p.set([1, 1, 1, 0], 20); // NOPs then end of options
    expect(v.check(p, 0, 40)).toBeUndefined();
    expect(v.headerLen).toBe(24);
  });

  it('reads fragment fields', () => {
    const p = new Uint8Array(40);
    p.set(IPV4_HEADER);
    write16(p, 2, 40);
    write16(p, 6, 0x2000 | 3); // MF, offset 24
    const v = new Ipv4View();
    expect(v.check(p, 0, 40)).toBeUndefined();
    expect([v.isFragment, v.moreFragments, v.fragmentOffset]).toEqual([true, true, 24]);
  });

  it('parses and formats addresses', () => {
    expect(parseIpv4Text('10.137.0.5')).toEqual(Uint8Array.of(10, 137, 0, 5));
    for (const bad of ['10.137.0', '256.1.1.1', '1.2.3.4.5', 'a.b.c.d', ''])
      expect(parseIpv4Text(bad)).toBeUndefined();
  });
});

describe('TCP, UDP and ICMPv4', () => {
  it('decodes smoltcp’s TCP vector and verifies its checksum over the pseudo-header', () => {
    const t = parseTcp(TCP_BYTES);
    if (typeof t === 'string') throw new Error(t);
    expect(t).toMatchObject({
      srcPort: 48896,
      dstPort: 80,
      seq: 0x01234567,
      ack: 0x89abcdef,
      flags: 0x35,
      window: 0x0123,
    });
    expect(t.options).toEqual(hex('0303 0c01'));
    const { buf, l4 } = withPseudo4(TCP_BYTES, 6);
    expect(fold(sumWords(buf, l4, TCP_BYTES.length, pseudoSum4(buf, 0, 6, TCP_BYTES.length)))).toBe(0xffff);
    const out = new Uint8Array(TCP_BYTES.length);
    const hl = emitTcp(t, out);
    out.set(TCP_BYTES.subarray(hl), hl);
    write16(out, 16, t.checksum);
    write16(out, 18, 0x0201);
    expect(out).toEqual(TCP_BYTES);
    expect(new TcpView().check(TCP_BYTES, 0, 10)).toBe('tcp-truncated');
  });

  it('decodes smoltcp’s UDP vector and re-encodes it', () => {
    const u = parseUdp(UDP_BYTES);
    if (typeof u === 'string') throw new Error(u);
    expect(u).toEqual({ srcPort: 48896, dstPort: 53, length: 12, checksum: 0x124d });
    const { buf, l4 } = withPseudo4(UDP_BYTES, 17);
    expect(fold(sumWords(buf, l4, 12, pseudoSum4(buf, 0, 17, 12)))).toBe(0xffff);
    const out = new Uint8Array(12);
    emitUdp(u, out);
    out.set(UDP_BYTES.subarray(8), 8);
    write16(out, 6, u.checksum);
    expect(out).toEqual(UDP_BYTES);
    expect(new UdpView().check(hex('0001 0002 0020 0000'), 0, 8)).toBe('udp-bad-length');
  });

  it('decodes smoltcp’s ICMP echo vector and re-encodes it', () => {
    const m = parseIcmp(ICMP_ECHO);
    if (typeof m === 'string') throw new Error(m);
    expect(m).toMatchObject({ type: 8, code: 0, rest: 0x1234abcd });
    expect(checksum(ICMP_ECHO, 0, ICMP_ECHO.length)).toBe(0);
    const out = new Uint8Array(12);
    emitIcmp(m, out);
    write16(out, 2, checksum(out, 0, 12));
    expect(out).toEqual(ICMP_ECHO);
    const v = new IcmpView();
    expect(v.check(ICMP_ECHO, 0, 12)).toBeUndefined();
    expect(v.echoId).toBe(0x1234);
  });
});

describe('Ethernet and ARP', () => {
  it('decodes a captured ARP request and re-encodes it', () => {
    const a = parseArp(ARP_REQUEST);
    if (typeof a === 'string') throw new Error(a);
    expect(a.operation).toBe(1);
    expect(formatMac(a.senderMac)).toBe('00:16:3e:5e:6c:01');
    expect(formatIpv4(a.targetIp)).toBe('10.137.0.5');
    const out = new Uint8Array(28);
    emitArp(a, out);
    expect(out).toEqual(ARP_REQUEST);
    const bad = ARP_REQUEST.slice();
    bad[4] = 8; // hardware length 8
    expect(new ArpView().check(bad, 0, 28)).toBe('arp-unsupported');
  });

  it('round-trips an Ethernet header and MAC text', () => {
    const f = new Uint8Array(14);
    emitEthernet(
      { dst: parseMac('fe:ff:ff:ff:ff:ff')!, src: parseMac('00:16:3e:5e:6c:00')!, etherType: 0x86dd },
      f,
    );
    expect(f).toEqual(hex('feff ffff ffff 0016 3e5e 6c00 86dd'));
    const r = parseEthernet(f);
    if (typeof r === 'string') throw new Error(r);
    expect(formatMac(r.src)).toBe('00:16:3e:5e:6c:00');
    expect(parseMac('00:16:3e:5e:6c')).toBeUndefined();
  });
});

describe('IPv6', () => {
  const base = () => {
    const b = new Uint8Array(40 + 16 + 8 + 8);
    emitIpv6(
      {
        src: parseIpv6Text('fd09:24ef:4179::a89:14')!,
        dst: parseIpv6Text('2606:2800:220:1::1')!,
        nextHeader: 0, // hop-by-hop
        hopLimit: 64,
        trafficClass: 0,
        flowLabel: 0x12345,
        payloadLen: 32,
      },
      b,
    );
    // hop-by-hop (8 bytes, PadN) -> fragment -> UDP
    b.set([44, 0, 1, 4, 0, 0, 0, 0], 40);
    b.set([17, 0, 0, 0, 0, 0, 0, 0x2a], 48); // fragment header, offset 0, M=0: an atomic fragment
    b.set([0x30, 0x39, 0, 53, 0, 16, 0, 0], 56);
    return b;
  };

  it('walks the extension header chain to the upper layer', () => {
    const b = base();
    const v = new Ipv6View();
    expect(v.check(b, 0, b.length)).toBeUndefined();
    expect([v.upperProtocol, v.upperOffset, v.fragmentHeaderOffset, v.isFragment]).toEqual([
      17,
      56,
      48,
      false,
    ]);
    b[51] = 1; // M flag: a real first fragment
    expect(v.check(b, 0, b.length)).toBeUndefined();
    expect([v.isFragment, v.moreFragments, v.fragmentIdent, v.fragmentOffset]).toEqual([true, true, 0x2a, 0]);
    const r = parseIpv6(b);
    if (typeof r === 'string') throw new Error(r);
    expect(formatIpv6(r.src)).toBe('fd09:24ef:4179::a89:14');
    expect(r.flowLabel).toBe(0x12345);
    const out = new Uint8Array(40);
    emitIpv6(r, out);
    expect(out).toEqual(b.subarray(0, 40));
  });

  it('refuses hop-by-hop after the first header, type 0 routing and long chains', () => {
    const b = base();
    b[48] = 0; // fragment header's next header: hop-by-hop again
    expect(new Ipv6View().check(b, 0, b.length)).toBe('ip6-bad-extension');
    const r = base();
    r[40] = 43; // hop-by-hop -> routing
    r.set([17, 0, 0, 1, 0, 0, 0, 0], 48); // type 0, segments left 1
    expect(new Ipv6View().check(r, 0, r.length)).toBe('ip6-routing-type0');
    const chain = new Uint8Array(40 + 9 * 8);
    emitIpv6(
      {
        src: new Uint8Array(16),
        dst: new Uint8Array(16),
        nextHeader: 60,
        hopLimit: 1,
        trafficClass: 0,
        flowLabel: 0,
        payloadLen: 72,
      },
      chain,
    );
    for (let i = 0; i < 9; i++) chain.set([60, 0, 1, 4, 0, 0, 0, 0], 40 + i * 8);
    expect(new Ipv6View().check(chain, 0, chain.length)).toBe('ip6-too-many-extensions');
  });

  it('parses and formats addresses like RFC 5952', () => {
    for (const s of ['::', '::1', 'fe80::fcff:ffff:feff:ffff', '2001:db8::1:0:0:1', 'fd09:24ef:4179::a89:5'])
      expect(formatIpv6(parseIpv6Text(s)!)).toBe(s);
    expect(formatIpv6(parseIpv6Text('::ffff:10.137.0.5')!)).toBe('::ffff:a89:5');
    for (const bad of [':::', '1::2::3', '12345::', '1:2:3:4:5:6:7:8:9', 'g::1'])
      expect(parseIpv6Text(bad)).toBeUndefined();
  });

  it('validates and round-trips neighbour solicitations', () => {
    const ns = new Uint8Array(32);
    const len = emitNeighbor(
      {
        kind: 'solicit',
        target: parseIpv6Text('fd09::5')!,
        flags: 0,
        lladdr: parseMac('00:16:3e:5e:6c:01'),
      },
      ns,
    );
    expect(len).toBe(32);
    const r = parseNeighbor(ns, 0, 32, 255);
    if (typeof r === 'string') throw new Error(r);
    expect(formatIpv6(r.target)).toBe('fd09::5');
    expect(formatMac(r.lladdr!)).toBe('00:16:3e:5e:6c:01');
    expect(checkNeighborMessage(ns, 0, 32, 64)).toBe('nd-bad-hop-limit');
    ns[25] = 0; // an option of length zero
    expect(checkNeighborMessage(ns, 0, 32, 255)).toBe('nd-bad-options');
  });
});

describe('incremental checksums (RFC 1624)', () => {
  it('match a full recomputation after any 16-bit change', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 8, maxLength: 64 }),
        fc.nat(),
        fc.integer({ min: 0, max: 0xffff }),
        (data, at, value) => {
          const b = Uint8Array.from(data.length % 2 ? [...data, 0] : data);
          write16(b, 0, 0);
          write16(b, 0, checksum(b, 0, b.length));
          const pos = 2 + 2 * (at % ((b.length - 2) / 2));
          const old = read16(b, pos);
          write16(b, pos, value);
          applyDelta(b, 0, wordDelta(old, value), false);
          return fold(sumWords(b, 0, b.length, 0)) === 0xffff;
        },
      ),
    );
  });

  it('keep a checksum-blank partial sum right when an address changes', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 8, maxLength: 200 }),
        fc.uint8Array({ minLength: 4, maxLength: 4 }),
        (payload, newSrc) => {
          const seg = Uint8Array.from(payload);
          seg[4] = 0;
          seg[5] = 0;
          const { buf, l4 } = withPseudo4(seg, 6);
          // partial: the folded pseudo-header sum in the checksum field (here bytes 16..18 of TCP)
          if (seg.length < 20) return true;
          write16(buf, l4 + 16, fold(pseudoSum4(buf, 0, 6, seg.length)));
          const d = replaceDelta(buf, 12, newSrc, 0, 4);
          buf.set(newSrc, 12);
          applyPartialDelta(buf, l4 + 16, d);
          // finishing the partial sum must give the checksum of the rewritten packet
          const s = fold(sumWords(buf, l4, seg.length, 0));
          write16(buf, l4 + 16, ~s & 0xffff);
          return fold(sumWords(buf, l4, seg.length, pseudoSum4(buf, 0, 6, seg.length))) === 0xffff;
        },
      ),
    );
  });

  it('sums odd lengths and long buffers like the byte-wise definition', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 3000 }), fc.nat(7), (data, start) => {
        const off = Math.min(start, data.length);
        let ref = 0;
        for (let i = off; i < data.length; i += 2) ref += (data[i]! << 8) | (data[i + 1] ?? 0);
        return fold(sumWords(data, off, data.length - off, 0)) === fold(ref);
      }),
    );
  });
});
