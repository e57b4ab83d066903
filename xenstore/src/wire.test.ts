import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeHeader,
  decodeMessage,
  encodeMessage,
  HEADER_SIZE,
  joinStrings,
  MessageReader,
  splitStrings,
  typeName,
  utf8,
  XENBUS_DEVICE_PAYLOAD_MAX,
  XENSTORE_PAYLOAD_MAX,
  XS_ERRORS,
  XsType,
} from './wire.ts';

const hex = (s: string) => Uint8Array.from(s.split(/\s+/).filter(Boolean), (b) => Number.parseInt(b, 16));

describe('xenstore wire format', () => {
  // XS_READ (2) of relative `domid`, req_id 1: `struct xsd_sockmsg` {type, req_id, tx_id, len}
  // then the NUL-terminated path (xen/include/public/io/xs_wire.h, xen-project/xen @ c447b7308b13).
  const readDomid = hex('02 00 00 00  01 00 00 00  00 00 00 00  06 00 00 00  64 6f 6d 69 64 00');

  it('decodes the XS_READ of "domid" from the reference bytes and re-encodes it identically', () => {
    const m = decodeMessage(readDomid);
    expect(m.ok).toBe(true);
    if (!m.ok) return;
    expect(m.value).toMatchObject({ type: XsType.READ, reqId: 1, txId: 0, len: 6 });
    expect(splitStrings(m.value.payload)).toEqual({ ok: true, value: ['domid'] });
    expect(encodeMessage(XsType.READ, 1, 0, joinStrings(['domid']))).toEqual(readDomid);
  });

  it('lays out the header as four little-endian uint32', () => {
    const bytes = encodeMessage(XsType.TRANSACTION_END, 0x01020304, 0xa0b0c0d0, joinStrings(['T']));
    expect([...bytes.subarray(0, HEADER_SIZE)]).toEqual([
      7, 0, 0, 0, 4, 3, 2, 1, 0xd0, 0xc0, 0xb0, 0xa0, 2, 0, 0, 0,
    ]);
    expect(decodeHeader(bytes)).toEqual({
      ok: true,
      value: { type: 7, reqId: 0x01020304, txId: 0xa0b0c0d0, len: 2 },
    });
  });

  it('keeps the xs_wire.h numbering, with XS_RESTRICT (20) gone', () => {
    expect(XsType.RESET_WATCHES).toBe(21);
    expect(XsType.DIRECTORY_PART).toBe(22);
    expect(typeName(20)).toBeUndefined();
    expect(typeName(15)).toBe('WATCH_EVENT');
    expect(XS_ERRORS[0]).toBe('EINVAL');
    expect(XS_ERRORS.at(-1)).toBe('EPERM');
    expect(XENBUS_DEVICE_PAYLOAD_MAX).toBe(4080);
  });

  it('returns reasons for truncated, oversized and unknown messages', () => {
    expect(decodeMessage(readDomid.subarray(0, 10))).toMatchObject({ ok: false, reason: 'truncated-header' });
    expect(decodeMessage(readDomid.subarray(0, 20))).toMatchObject({
      ok: false,
      reason: 'truncated-payload',
    });
    const big = encodeMessage(XsType.READ, 1, 0, new Uint8Array(0));
    new DataView(big.buffer).setUint32(12, XENSTORE_PAYLOAD_MAX + 1, true);
    expect(decodeMessage(big)).toMatchObject({ ok: false, reason: 'oversized-length' });
    expect(decodeMessage(encodeMessage(20, 1, 0, new Uint8Array(0)))).toMatchObject({
      ok: false,
      reason: 'unknown-type',
    });
    expect(() => encodeMessage(XsType.WRITE, 1, 0, new Uint8Array(4097))).toThrow(RangeError);
  });

  it('splits NUL-terminated strings and rejects an unterminated or non-UTF-8 payload', () => {
    expect(splitStrings(joinStrings(['a', '', 'bc']))).toEqual({ ok: true, value: ['a', '', 'bc'] });
    expect(splitStrings(new Uint8Array(0))).toEqual({ ok: true, value: [] });
    expect(splitStrings(utf8('abc'))).toMatchObject({ ok: false, reason: 'unterminated' });
    expect(splitStrings(new Uint8Array([0xff, 0]))).toMatchObject({ ok: false, reason: 'not-utf8' });
    expect(joinStrings(['p'], new Uint8Array([1, 0, 2]))).toEqual(new Uint8Array([0x70, 0, 1, 0, 2]));
  });

  it('reassembles messages however the stream is cut', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 8 }),
        fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 20 }),
        (payloads, cuts) => {
          const stream = payloads.map((p, i) => encodeMessage(XsType.READ, i + 1, 0, p));
          const all = new Uint8Array(stream.reduce((n, m) => n + m.length, 0));
          let at = 0;
          for (const m of stream) {
            all.set(m, at);
            at += m.length;
          }
          const reader = new MessageReader();
          const got: Uint8Array[] = [];
          let pos = 0;
          let i = 0;
          while (pos < all.length) {
            const n = cuts[i++ % cuts.length]!;
            const r = reader.push(all.subarray(pos, pos + n));
            expect(r.error).toBeUndefined();
            for (const m of r.messages) got.push(m.payload);
            pos += n;
          }
          expect(got).toEqual(payloads);
          expect(reader.midMessage).toBe(false);
        },
      ),
    );
  });

  it('stops a stream at a length field over the limit before allocating it', () => {
    const reader = new MessageReader(XENSTORE_PAYLOAD_MAX);
    const h = encodeMessage(XsType.READ, 1, 0, new Uint8Array(0));
    new DataView(h.buffer).setUint32(12, 0xffffffff, true);
    const r = reader.push(h);
    expect(r.error?.reason).toBe('oversized-length');
    expect(reader.push(readDomid).error?.reason).toBe('oversized-length');
  });

  it('lets a server reader accept unknown types (xenstored answers them with ENOSYS)', () => {
    const reader = new MessageReader(XENSTORE_PAYLOAD_MAX, true);
    const r = reader.push(encodeMessage(20, 9, 0, joinStrings([''])));
    expect(r.error).toBeUndefined();
    expect(r.messages[0]?.type).toBe(20);
  });
});
