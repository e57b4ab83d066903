import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeHeader,
  encodeHeader,
  encodeMessage,
  HEADER_SIZE,
  isValidPath,
  isValidValue,
  isWritablePath,
  QdbFrameReader,
  type QdbLink,
  QdbMsg,
} from './wire.ts';

/** Builds a raw 72-byte header the way a C peer lays it out, junk and all. */
function rawHeader(type: number, pathBytes: number[] | string, dataLen: number, fill = 0): Uint8Array {
  const bytes = new Uint8Array(HEADER_SIZE).fill(fill);
  bytes[0] = type;
  const path = typeof pathBytes === 'string' ? [...Buffer.from(pathBytes, 'latin1'), 0] : pathBytes;
  bytes.set(path.slice(0, 64), 1);
  new DataView(bytes.buffer).setUint32(68, dataLen, true);
  return bytes;
}

function hex(text: string): Uint8Array {
  return Uint8Array.from(
    text
      .replace(/\s+/g, '')
      .match(/../g)!
      .map((b) => Number.parseInt(b, 16)),
  );
}

// Bytes laid out by hand from `struct qdb_hdr` (include/qubesdb.h, QubesOS/qubes-core-qubesdb @ aeb3c8d84866).
describe('QubesDB header bytes', () => {
  it('the initial QDB_CMD_MULTIREAD is 02, 64 zero path bytes, 3 pad bytes, data_len 0', () => {
    const expected = new Uint8Array(72);
    expected[0] = 0x02;
    expect(encodeHeader(QdbMsg.CMD_MULTIREAD, '', 0)).toEqual(expected);
    // The pad bytes are junk from a C sender: any value must decode the same.
    const withJunk = expected.slice();
    withJunk.set([0xde, 0xad, 0xbe], 65);
    expect(decodeHeader(withJunk, 'vchan')).toEqual({
      ok: true,
      header: { type: QdbMsg.CMD_MULTIREAD, path: '', dataLength: 0 },
    });
  });

  it('QDB_RESP_OK for /qubes-ip is 07 2f 71 75 62 65 73 2d 69 70 00 ... data_len 0', () => {
    const bytes = encodeHeader(QdbMsg.RESP_OK, '/qubes-ip', 0);
    expect(bytes.subarray(0, 11)).toEqual(hex('07 2f 71 75 62 65 73 2d 69 70 00'));
    expect(bytes.subarray(11)).toEqual(new Uint8Array(61));
    expect(decodeHeader(bytes, 'vchan')).toEqual({
      ok: true,
      header: { type: QdbMsg.RESP_OK, path: '/qubes-ip', dataLength: 0 },
    });
  });

  it('data_len is a little-endian u32 at offset 68, followed by the value', () => {
    const message = encodeMessage(QdbMsg.CMD_WRITE, '/name', new TextEncoder().encode('work'));
    expect(message.length).toBe(76);
    expect(message.subarray(68, 72)).toEqual(hex('04 00 00 00'));
    expect(new TextDecoder().decode(message.subarray(72))).toBe('work');
  });

  it('bytes after the path NUL are junk and ignored', () => {
    const bytes = rawHeader(QdbMsg.CMD_WRITE, [...Buffer.from('/a'), 0, ...Buffer.from('garbage!')], 0);
    expect(decodeHeader(bytes, 'vchan')).toMatchObject({ ok: true, header: { path: '/a' } });
  });

  it('a path that fills all 64 bytes is cut at 63 (the receiver forces path[63] = 0)', () => {
    const long = `/${'x'.repeat(63)}`; // 64 characters, no NUL in the field
    const bytes = rawHeader(QdbMsg.CMD_WRITE, [...Buffer.from(long)], 0);
    expect(decodeHeader(bytes, 'vchan')).toMatchObject({ ok: true, header: { path: long.slice(0, 63) } });
  });
});

describe('verify_hdr: which types each link accepts', () => {
  const table: [number, string, boolean, boolean, boolean][] = [
    // type, name, accepted on vchan, by the daemon on the local socket, by a local client
    [0, 'CMD_READ', false, true, false],
    [1, 'CMD_WRITE', true, true, false],
    [2, 'CMD_MULTIREAD', true, true, false],
    [3, 'CMD_LIST', false, true, false],
    [4, 'CMD_RM', true, true, false],
    [5, 'CMD_WATCH', false, true, false],
    [6, 'CMD_UNWATCH', false, true, false],
    [7, 'RESP_OK', true, false, true],
    [8, 'RESP_ERROR_NOENT', false, false, true],
    [9, 'RESP_ERROR', true, false, true],
    [10, 'RESP_READ', false, false, true],
    [11, 'RESP_MULTIREAD', true, false, true],
    [12, 'RESP_LIST', false, false, true],
    [13, 'RESP_WATCH', false, false, true],
    [14, 'unknown', false, false, false],
    [0xff, 'QDB_INVALID_CMD', false, false, false],
  ];
  for (const [type, name, vchan, local, reply] of table) {
    it(`${name} (${type}): vchan ${vchan ? 'accepts' : 'rejects'}, local ${local ? 'accepts' : 'rejects'}`, () => {
      const bytes = rawHeader(type, '/x', 0);
      const results: Record<QdbLink, boolean> = {
        vchan: decodeHeader(bytes, 'vchan').ok,
        local: decodeHeader(bytes, 'local').ok,
        'local-reply': decodeHeader(bytes, 'local-reply').ok,
      };
      expect(results).toEqual({ vchan, local, 'local-reply': reply });
    });
  }

  it('names the reason: unknown type vs. type not allowed on the link', () => {
    expect(decodeHeader(rawHeader(14, '/x', 0), 'vchan')).toMatchObject({
      ok: false,
      reason: 'unknown-type',
      type: 14,
    });
    expect(decodeHeader(rawHeader(8, '/x', 0), 'vchan')).toMatchObject({
      ok: false,
      reason: 'type-not-allowed-on-link',
    });
  });
});

describe('verify_path and the limits', () => {
  const paths: [string, boolean][] = [
    ['', true],
    ['/', true],
    ['/qubes-ip', true],
    ['/qubes-firewall/10.137.0.5/0000', true],
    ['/a_b.c:d@e-f', true],
    ['/dir/', true], // allowed by verify_path; commands decide
    ['-leading-dash', false],
    ['/-dash-after-slash', true],
    ['/space here', false],
    ['/tab\t', false],
    ['/star*', false],
    ['/percent%', false],
    ['/plus+', false],
    ['/comma,', false],
    ['/backslash\\', false],
    ['/uml\u00e4ut', false],
    [`/${'a'.repeat(62)}`, true], // 63 characters
    [`/${'a'.repeat(63)}`, false], // 64 characters
  ];
  for (const [path, valid] of paths) {
    it(`${JSON.stringify(path)} is ${valid ? 'valid' : 'invalid'}`, () => {
      expect(isValidPath(path)).toBe(valid);
      if (path.length <= 63) {
        const decoded = decodeHeader(rawHeader(QdbMsg.CMD_RM, path, 0), 'vchan');
        expect(decoded.ok).toBe(valid);
        if (!valid) expect(decoded).toMatchObject({ reason: 'invalid-path' });
      }
    });
  }

  it('a write path must start with / and must not end with /', () => {
    expect(isWritablePath('/a')).toBe(true);
    expect(isWritablePath('a')).toBe(false);
    expect(isWritablePath('/a/')).toBe(false);
    expect(isWritablePath('/')).toBe(false);
    expect(isWritablePath('')).toBe(false);
  });

  it('data_len 3071 is accepted and 3072 rejected (the daemon checks >= QDB_MAX_DATA)', () => {
    expect(decodeHeader(rawHeader(QdbMsg.CMD_WRITE, '/a', 3071), 'vchan').ok).toBe(true);
    expect(decodeHeader(rawHeader(QdbMsg.CMD_WRITE, '/a', 3072), 'vchan')).toMatchObject({
      ok: false,
      reason: 'data-too-long',
      dataLength: 3072,
    });
    expect(decodeHeader(rawHeader(QdbMsg.CMD_WRITE, '/a', 0xffffffff), 'vchan').ok).toBe(false);
  });

  it('values may not contain NUL and may not exceed 3071 bytes', () => {
    expect(isValidValue(new Uint8Array(0))).toBe(true);
    expect(isValidValue(new Uint8Array(3071).fill(0x41))).toBe(true);
    expect(isValidValue(new Uint8Array(3072).fill(0x41))).toBe(false);
    expect(isValidValue(Uint8Array.of(0x41, 0, 0x42))).toBe(false);
  });

  it('a header shorter than 72 bytes is truncated', () => {
    expect(decodeHeader(new Uint8Array(71), 'vchan')).toMatchObject({
      ok: false,
      reason: 'truncated-header',
    });
  });

  it('encoding refuses paths that cannot be sent', () => {
    expect(() => encodeHeader(QdbMsg.CMD_WRITE, `/${'a'.repeat(63)}`, 0)).toThrow(RangeError);
    expect(() => encodeHeader(QdbMsg.CMD_WRITE, '/\u00e9', 0)).toThrow(RangeError);
  });
});

describe('QdbFrameReader', () => {
  const messages = [
    encodeMessage(QdbMsg.RESP_MULTIREAD, '/name', new TextEncoder().encode('work')),
    encodeMessage(QdbMsg.RESP_MULTIREAD, '/empty'),
    encodeMessage(QdbMsg.CMD_WRITE, '/qubes-ip', new TextEncoder().encode('10.137.0.5')),
    encodeMessage(QdbMsg.RESP_MULTIREAD, ''),
  ];
  const stream = Buffer.concat(messages);

  it('yields the same messages however the bytes are split', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: stream.length }), { maxLength: 12 }), (cuts) => {
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        const reader = new QdbFrameReader('vchan');
        const out: string[] = [];
        let last = 0;
        for (const point of [...points, stream.length]) {
          for (const event of reader.push(stream.subarray(last, point))) {
            if (event.kind !== 'message') throw new Error(event.reason);
            out.push(
              `${event.message.header.type}:${event.message.header.path}:${Buffer.from(event.message.data)}`,
            );
          }
          last = point;
        }
        expect(out).toEqual(['11:/name:work', '11:/empty:', '1:/qubes-ip:10.137.0.5', '11::']);
        expect(reader.midMessage).toBe(false);
      }),
    );
  });

  it('stops at the first invalid header and reads nothing after it', () => {
    const reader = new QdbFrameReader('vchan');
    const bad = rawHeader(QdbMsg.CMD_READ, '/x', 0);
    const events = [...reader.push(Buffer.concat([messages[0]!, bad, messages[1]!]))];
    expect(events.map((e) => e.kind)).toEqual(['message', 'invalid']);
    expect([...reader.push(messages[2]!)]).toEqual([]);
  });

  it('knows when EOF comes in the middle of a message', () => {
    const reader = new QdbFrameReader('vchan');
    [...reader.push(messages[0]!.subarray(0, 74))];
    expect(reader.midMessage).toBe(true);
    expect(reader.partialBytes).toBe(74);
  });

  it('in recovery mode (local clients) skips an invalid message and its data, then goes on', () => {
    const reader = new QdbFrameReader('local', { recover: true });
    const bad = rawHeader(QdbMsg.RESP_OK, '/x', 5);
    const next = encodeMessage(QdbMsg.CMD_READ, '/name');
    const events = [...reader.push(Buffer.concat([bad, Buffer.from('12345'), next]))];
    expect(events.map((e) => e.kind)).toEqual(['invalid', 'message']);
    expect(events[1]).toMatchObject({ message: { header: { type: QdbMsg.CMD_READ, path: '/name' } } });
  });

  it('never buffers more than one validated message (data_len is checked before the data)', () => {
    const reader = new QdbFrameReader('vchan');
    const events = [...reader.push(rawHeader(QdbMsg.CMD_WRITE, '/a', 0x7fffffff))];
    expect(events).toMatchObject([{ kind: 'invalid', reason: 'data-too-long' }]);
  });
});
