import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CLASS_IN,
  type DnsMessage,
  type DnsRecord,
  decodeMessage,
  encodeMessage,
  encodeQuery,
  labelToText,
  namesEqual,
  nameToLabels,
  TYPE_A,
  TYPE_AAAA,
  TYPE_CNAME,
} from './wire.ts';

function hex(s: string): Uint8Array {
  const clean = s.replace(/\s+/g, '');
  return Uint8Array.from(clean.match(/../g)!.map((h) => Number.parseInt(h, 16)));
}

// A response to "www.example.com A" as a recursive resolver sends it: CNAME then A,
// names compressed against the question (c00c) and the CNAME target (c02d).
const RESPONSE = hex(`
  1a2b 8180 0001 0002 0000 0000
  03 777777 07 6578616d706c65 03 636f6d 00  0001 0001
  c00c 0005 0001 00000e10 000e  0b 6578616d706c652d636e61 c010
  c02d 0001 0001 0000012c 0004 5db8d822
`);

describe('DNS wire format', () => {
  it('decodes a captured-style response with compression and re-encodes it to the same bytes', () => {
    const r = decodeMessage(RESPONSE);
    expect(r.ok, r.ok ? '' : r.reason).toBe(true);
    if (!r.ok) return;
    const m = r.message;
    expect(m.header).toMatchObject({ id: 0x1a2b, qr: true, rd: true, ra: true, rcode: 0, tc: false });
    expect(m.questions).toEqual([{ name: 'www.example.com', type: TYPE_A, class: CLASS_IN }]);
    expect(m.answers).toEqual([
      {
        name: 'www.example.com',
        type: TYPE_CNAME,
        class: 1,
        ttl: 3600,
        data: { kind: 'cname', target: 'example-cna.example.com' },
      },
      {
        name: 'example-cna.example.com',
        type: TYPE_A,
        class: 1,
        ttl: 300,
        data: { kind: 'a', address: Uint8Array.of(93, 184, 216, 34) },
      },
    ]);
    expect(encodeMessage(m)).toEqual(RESPONSE);
  });

  it('encodes a stub query as resolvers do', () => {
    expect(encodeQuery(0xbeef, 'example.com', TYPE_AAAA)).toEqual(
      hex('beef 0100 0001 0000 0000 0000 07 6578616d706c65 03 636f6d 00 001c 0001'),
    );
  });

  const malformed: [string, Uint8Array, RegExp][] = [
    ['a short header', hex('1a2b 8180 0001'), /shorter than a header/],
    ['counts larger than the message', hex('1a2b 8180 0001 00ff 0000 0000 00 0001 0001'), /counts exceed/],
    ['a pointer loop', hex('0000 8180 0001 0000 0000 0000 c00c 0001 0001'), /backwards/],
    ['a forward pointer', hex('0000 8180 0001 0000 0000 0000 c010 0001 0001 0000'), /backwards/],
    ['a label past the end', hex('0000 8180 0001 0000 0000 0000 3f 6162 0001 0001'), /past the end/],
    ['a reserved label type', hex('0000 8180 0001 0000 0000 0000 40 0001 0001'), /reserved/],
    [
      'an A record of 5 bytes',
      hex('0000 8180 0000 0001 0000 0000 00 0001 0001 00000001 0005 0102030405'),
      /not 4 bytes/,
    ],
    [
      'rdata past the end',
      hex('0000 8180 0000 0001 0000 0000 00 0001 0001 00000001 0010 0102'),
      /past the end/,
    ],
  ];
  it.each(malformed)('rejects %s with a reason', (_name, bytes, reason) => {
    const r = decodeMessage(bytes);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(reason);
  });

  it('rejects names longer than 255 bytes on the wire, even through pointers', () => {
    // 5 labels of 63 bytes = 320 bytes
    const label = `3f${'61'.repeat(63)}`;
    const r = decodeMessage(hex(`0000 0100 0001 0000 0000 0000 ${label.repeat(5)} 00 0001 0001`));
    expect(r).toMatchObject({ ok: false, reason: /longer than 255/ });
  });

  it('escapes label bytes so any name round-trips through presentation form', () => {
    const label = Uint8Array.of(0x41, 0x2e, 0x5c, 0x20, 0xff, 0x00);
    const text = labelToText(label);
    expect(text).toBe('A\\046\\092\\032\\255\\000');
    expect(nameToLabels(`${text}.com`)).toEqual([label, Uint8Array.from([0x63, 0x6f, 0x6d])]);
    expect(namesEqual('WWW.Example.COM.', 'www.example.com')).toBe(true);
    expect(nameToLabels('a..b')).toBeUndefined();
    expect(nameToLabels(`${'a'.repeat(64)}.com`)).toBeUndefined();
  });

  it('never throws on random bytes, and never on mutations of a real response', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        decodeMessage(bytes);
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(RESPONSE.length - 1), fc.nat(255)), { maxLength: 6 }), (edits) => {
        const b = Uint8Array.from(RESPONSE);
        for (const [i, v] of edits) b[i] = v;
        decodeMessage(b);
      }),
      { numRuns: 2000 },
    );
  });

  // ---- property: encode then decode gives the message back ----
  const label = fc.uint8Array({ minLength: 1, maxLength: 20 }).map(labelToText);
  const name = fc.array(label, { maxLength: 5 }).map((ls) => ls.join('.'));
  const ttl = fc.nat({ max: 0xffffffff });
  const record: fc.Arbitrary<DnsRecord> = fc.oneof(
    fc
      .record({ name, ttl, address: fc.uint8Array({ minLength: 4, maxLength: 4 }) })
      .map(({ name: n, ttl: t, address }) => ({
        name: n,
        type: TYPE_A,
        class: CLASS_IN,
        ttl: t,
        data: { kind: 'a' as const, address },
      })),
    fc
      .record({ name, ttl, address: fc.uint8Array({ minLength: 16, maxLength: 16 }) })
      .map(({ name: n, ttl: t, address }) => ({
        name: n,
        type: TYPE_AAAA,
        class: CLASS_IN,
        ttl: t,
        data: { kind: 'aaaa' as const, address },
      })),
    fc.record({ name, ttl, target: name }).map(({ name: n, ttl: t, target }) => ({
      name: n,
      type: TYPE_CNAME,
      class: CLASS_IN,
      ttl: t,
      data: { kind: 'cname' as const, target },
    })),
    fc
      .record({
        name,
        ttl,
        mname: name,
        rname: name,
        nums: fc.array(fc.nat({ max: 0xffffffff }), { minLength: 5, maxLength: 5 }),
      })
      .map(({ name: n, ttl: t, mname, rname, nums }) => ({
        name: n,
        type: 6,
        class: CLASS_IN,
        ttl: t,
        data: {
          kind: 'soa' as const,
          mname,
          rname,
          serial: nums[0]!,
          refresh: nums[1]!,
          retry: nums[2]!,
          expire: nums[3]!,
          minimum: nums[4]!,
        },
      })),
    fc
      .record({
        name,
        ttl,
        type: fc.constantFrom(16, 99, 41, 65280),
        bytes: fc.uint8Array({ maxLength: 40 }),
      })
      .map(({ name: n, ttl: t, type, bytes }) => ({
        name: n,
        type,
        class: CLASS_IN,
        ttl: t,
        data: { kind: 'raw' as const, bytes },
      })),
  );
  const message: fc.Arbitrary<DnsMessage> = fc.record({
    header: fc.record({
      id: fc.nat({ max: 0xffff }),
      qr: fc.boolean(),
      opcode: fc.nat({ max: 15 }),
      aa: fc.boolean(),
      tc: fc.boolean(),
      rd: fc.boolean(),
      ra: fc.boolean(),
      z: fc.boolean(),
      ad: fc.boolean(),
      cd: fc.boolean(),
      rcode: fc.nat({ max: 15 }),
    }),
    questions: fc.array(fc.record({ name, type: fc.nat({ max: 0xffff }), class: fc.nat({ max: 0xffff }) }), {
      maxLength: 3,
    }),
    answers: fc.array(record, { maxLength: 6 }),
    authorities: fc.array(record, { maxLength: 3 }),
    additionals: fc.array(record, { maxLength: 3 }),
  });

  it('round-trips random messages, compressed or not', () => {
    fc.assert(
      fc.property(message, fc.boolean(), (m, compress) => {
        const bytes = encodeMessage(m, { compress });
        const r = decodeMessage(bytes);
        if (!r.ok) throw new Error(r.reason);
        expect(r.message).toEqual(m);
      }),
      { numRuns: 500 },
    );
  });
});
