import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameDecoder } from './frames.ts';
import {
  checkHeader,
  decodeHeader,
  decodeMessage,
  decodePayload,
  decodeTrigger,
  encodeMessage,
  HEADER_SIZE,
  type Message,
  MsgType,
  requestIdFromText,
  requestIdText,
  sanitizeName,
  validateRequestId,
} from './wire.ts';

const hex = (s: string) => Uint8Array.from(s.split(/\s+/).filter(Boolean), (b) => Number.parseInt(b, 16));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');

// Bytes laid out by hand from libqrexec/qrexec.h (QubesOS/qubes-core-qrexec @ b2822df6fc22).
describe('qrexec bytes as qrexec.h lays them out', () => {
  const table: Array<[string, string, Message]> = [
    ['MSG_HELLO version 3', '00 03 00 00  04 00 00 00  03 00 00 00', { kind: 'hello', version: 3 }],
    [
      'MSG_CONNECTION_TERMINATED for domain 0, port 513',
      '11 02 00 00  08 00 00 00  00 00 00 00  01 02 00 00',
      { kind: 'connection-terminated', connectDomain: 0, connectPort: 513 },
    ],
    ['MSG_DATA_STDIN EOF', '90 01 00 00  00 00 00 00', { kind: 'data-stdin', data: new Uint8Array(0) }],
    ['MSG_DATA_EXIT_CODE 0', '93 01 00 00  04 00 00 00  00 00 00 00', { kind: 'data-exit-code', code: 0 }],
  ];
  for (const [name, bytes, message] of table) {
    it(`decodes and re-encodes ${name}`, () => {
      const decoded = decodeMessage(hex(bytes));
      expect(decoded).toEqual({ ok: true, value: message });
      expect(toHex(encodeMessage(message))).toBe(toHex(hex(bytes)));
    });
  }

  it('builds the MSG_EXEC_CMDLINE header for "user:QUBESRPC qubes.OpenInVM+ work" with len 0x2b', () => {
    const cmdline = 'user:QUBESRPC qubes.OpenInVM+ work';
    expect(cmdline.length).toBe(34);
    const bytes = encodeMessage({ kind: 'exec-cmdline', connectDomain: 0, connectPort: 513, cmdline });
    expect(toHex(bytes.subarray(0, 8))).toBe(toHex(hex('00 02 00 00  2b 00 00 00')));
    expect(bytes.length).toBe(8 + 8 + 35);
    expect(bytes[bytes.length - 1]).toBe(0);
    expect(decodeMessage(bytes)).toEqual({
      ok: true,
      value: { kind: 'exec-cmdline', connectDomain: 0, connectPort: 513, cmdline },
    });
  });
});

describe('every message type round-trips', () => {
  const id = requestIdFromText('SOCKET7');
  const messages: Message[] = [
    { kind: 'hello', version: 4 },
    { kind: 'exec-cmdline', connectDomain: 5, connectPort: 600, cmdline: 'user:QUBESRPC a+b dom0' },
    { kind: 'just-exec', connectDomain: 0, connectPort: 513, cmdline: 'root:QUBESRPC qubes.X+ dom0' },
    { kind: 'service-connect', connectDomain: 0, connectPort: 514, requestId: id },
    { kind: 'service-refused', requestId: id },
    { kind: 'trigger-service', serviceName: 'qubes.Filecopy', targetDomain: 'work', requestId: id },
    { kind: 'connection-terminated', connectDomain: 7, connectPort: 768 },
    {
      kind: 'trigger-service3',
      targetDomain: '@dispvm:viewer',
      requestId: id,
      serviceName: 'qubes.OpenInVM+x',
    },
    { kind: 'trigger-service4', sourceDomain: 'a', targetDomain: 'dom0', requestId: id, serviceName: 'q.S' },
    { kind: 'data-stdin', data: Uint8Array.of(1, 2, 3) },
    { kind: 'data-stdout', data: Uint8Array.of(4) },
    { kind: 'data-stderr', data: new Uint8Array(0) },
    { kind: 'data-exit-code', code: -1 },
    { kind: 'unknown', type: 0x999, payload: Uint8Array.of(9, 9) },
  ];
  for (const m of messages) {
    it(`${m.kind}`, () => {
      const bytes = encodeMessage(m);
      const h = decodeHeader(bytes);
      expect(h.ok && h.value.length).toBe(bytes.length - HEADER_SIZE);
      expect(decodeMessage(bytes)).toEqual({ ok: true, value: m });
    });
  }
});

describe('layouts', () => {
  it('puts TRIGGER_SERVICE3 fields at 0/64/96 with len = 96 + strlen + 1', () => {
    const bytes = encodeMessage({
      kind: 'trigger-service3',
      targetDomain: 'dom0',
      requestId: requestIdFromText('MOAT1'),
      serviceName: 'qubes.FeaturesRequest',
    });
    const payload = bytes.subarray(8);
    expect(decodeHeader(bytes)).toEqual({ ok: true, value: { type: 0x212, length: 96 + 21 + 1 } });
    expect(Buffer.from(payload.subarray(0, 5)).toString('latin1')).toBe('dom0\0');
    expect(Buffer.from(payload.subarray(64, 70)).toString('latin1')).toBe('MOAT1\0');
    expect(Buffer.from(payload.subarray(96)).toString('latin1')).toBe('qubes.FeaturesRequest\0');
  });

  it('puts SERVICE_CONNECT exec_params then the 32-byte ident (len 40)', () => {
    const bytes = encodeMessage({
      kind: 'service-connect',
      connectDomain: 0,
      connectPort: 513,
      requestId: requestIdFromText('MOAT1'),
    });
    expect(toHex(bytes.subarray(0, 16))).toBe('020200002800000000000000' + '01020000');
    expect(requestIdText(bytes.subarray(16))).toBe('MOAT1');
  });

  it('keeps the last byte of fixed text fields NUL even for over-long text', () => {
    const id = requestIdFromText('x'.repeat(40));
    expect(id.length).toBe(32);
    expect(id[31]).toBe(0);
    expect(requestIdText(id)).toBe('x'.repeat(31));
  });

  it('cuts the cmdline at the first NUL and ignores the forced last byte, as the agent does', () => {
    const payload = new Uint8Array(8 + 6);
    payload.set(Buffer.from('ab\0cdX'), 8);
    const m = decodePayload(MsgType.EXEC_CMDLINE, payload);
    expect(m.ok && m.value.kind === 'exec-cmdline' && m.value.cmdline).toBe('ab');
    payload.set(Buffer.from('abcdeX'), 8);
    const n = decodePayload(MsgType.EXEC_CMDLINE, payload);
    expect(n.ok && n.value.kind === 'exec-cmdline' && n.value.cmdline).toBe('abcde');
  });

  it('reads a short MSG_DATA_EXIT_CODE as status 255', () => {
    expect(decodePayload(MsgType.DATA_EXIT_CODE, Uint8Array.of(1))).toEqual({
      ok: true,
      value: { kind: 'data-exit-code', code: 255 },
    });
  });
});

describe('header limits per channel', () => {
  const h = (type: number, length: number) => ({ type, length });
  it('accepts data chunks up to 64 KiB at v3 and 4 KiB at v2, and rejects one byte more', () => {
    expect(checkHeader(h(MsgType.DATA_STDIN, 65536), 'data', 3).ok).toBe(true);
    expect(checkHeader(h(MsgType.DATA_STDIN, 65537), 'data', 3)).toMatchObject({
      reason: 'too-big-data-chunk',
    });
    expect(checkHeader(h(MsgType.DATA_STDOUT, 4096), 'data', 2).ok).toBe(true);
    expect(checkHeader(h(MsgType.DATA_STDOUT, 4097), 'data', 2)).toMatchObject({
      reason: 'too-big-data-chunk',
    });
  });
  it('allows only HELLO of length 4 before the data handshake', () => {
    expect(checkHeader(h(MsgType.HELLO, 4), 'data-hello', 0).ok).toBe(true);
    expect(checkHeader(h(MsgType.HELLO, 5), 'data-hello', 0)).toMatchObject({ reason: 'bad-length' });
    expect(checkHeader(h(MsgType.DATA_STDIN, 0), 'data-hello', 0)).toMatchObject({
      reason: 'unexpected-type',
    });
  });
  it('rejects control messages on the data channel and unknown types everywhere', () => {
    expect(checkHeader(h(MsgType.EXEC_CMDLINE, 20), 'data', 3)).toMatchObject({ reason: 'unexpected-type' });
    expect(checkHeader(h(0x1234, 0), 'data', 3)).toMatchObject({ reason: 'unknown-type' });
    expect(checkHeader(h(0x1234, 0), 'control-from-daemon', 3)).toMatchObject({ reason: 'unknown-type' });
    expect(checkHeader(h(0x1234, 0), 'control-from-agent', 3)).toMatchObject({ reason: 'unknown-type' });
  });
  it('checks daemon → agent lengths: exec > 8, SERVICE_CONNECT 40, SERVICE_REFUSED 32', () => {
    expect(checkHeader(h(MsgType.EXEC_CMDLINE, 8), 'control-from-daemon', 3)).toMatchObject({
      reason: 'bad-length',
    });
    expect(checkHeader(h(MsgType.EXEC_CMDLINE, 9), 'control-from-daemon', 3).ok).toBe(true);
    expect(checkHeader(h(MsgType.JUST_EXEC, 8 + 65536), 'control-from-daemon', 3)).toMatchObject({
      reason: 'bad-length',
    });
    expect(checkHeader(h(MsgType.SERVICE_CONNECT, 40), 'control-from-daemon', 3).ok).toBe(true);
    expect(checkHeader(h(MsgType.SERVICE_CONNECT, 8), 'control-from-daemon', 3)).toMatchObject({
      reason: 'bad-length',
    });
    expect(checkHeader(h(MsgType.SERVICE_REFUSED, 33), 'control-from-daemon', 3)).toMatchObject({
      reason: 'bad-length',
    });
    expect(checkHeader(h(MsgType.TRIGGER_SERVICE3, 100), 'control-from-daemon', 3)).toMatchObject({
      reason: 'unexpected-type',
    });
  });
  it('checks agent → daemon messages against the negotiated version (sanitize_message_from_agent)', () => {
    expect(checkHeader(h(MsgType.TRIGGER_SERVICE, 128), 'control-from-agent', 3)).toMatchObject({
      reason: 'unexpected-type',
    });
    expect(checkHeader(h(MsgType.TRIGGER_SERVICE, 128), 'control-from-agent', 2).ok).toBe(true);
    expect(checkHeader(h(MsgType.TRIGGER_SERVICE3, 97), 'control-from-agent', 3).ok).toBe(true);
    expect(checkHeader(h(MsgType.TRIGGER_SERVICE3, 96), 'control-from-agent', 3)).toMatchObject({
      reason: 'bad-length',
    });
    expect(checkHeader(h(MsgType.TRIGGER_SERVICE3, 96 + 65000), 'control-from-agent', 3).ok).toBe(true);
    expect(checkHeader(h(MsgType.TRIGGER_SERVICE3, 96 + 65001), 'control-from-agent', 3)).toMatchObject({
      reason: 'bad-length',
    });
    expect(checkHeader(h(MsgType.TRIGGER_SERVICE3, 97), 'control-from-agent', 2)).toMatchObject({
      reason: 'unexpected-type',
    });
    expect(checkHeader(h(MsgType.TRIGGER_SERVICE4, 161), 'control-from-agent', 3)).toMatchObject({
      reason: 'unexpected-type',
    });
    expect(checkHeader(h(MsgType.TRIGGER_SERVICE4, 161), 'control-from-agent', 4).ok).toBe(true);
    expect(checkHeader(h(MsgType.CONNECTION_TERMINATED, 9), 'control-from-agent', 3)).toMatchObject({
      reason: 'bad-length',
    });
  });
  it('reports truncated headers and payloads', () => {
    expect(decodeHeader(Uint8Array.of(0, 3, 0, 0, 4, 0, 0))).toEqual({
      ok: false,
      reason: 'truncated-header',
    });
    expect(decodeMessage(hex('00 03 00 00 04 00 00 00 03 00 00'))).toEqual({
      ok: false,
      reason: 'truncated-payload',
    });
    expect(decodeMessage(hex('00 03 00 00 04 00 00 00 03 00 00 00 00'))).toMatchObject({
      reason: 'bad-length',
    });
  });
});

describe('trigger validation as qrexec-daemon does it', () => {
  const trigger3 = (target: string, id: Uint8Array, name: Uint8Array) => {
    const payload = new Uint8Array(96 + name.length);
    payload.set(Buffer.from(target, 'latin1').subarray(0, 64), 0);
    payload.set(id, 64);
    payload.set(name, 96);
    return payload;
  };
  const nameBytes = (s: string) => Buffer.from(`${s}\0`, 'latin1');
  const id = requestIdFromText('MOAT 1.x_y-z');

  it('accepts a well-formed TRIGGER_SERVICE3 and sanitises the target domain', () => {
    const r = decodeTrigger(MsgType.TRIGGER_SERVICE3, trigger3('@dispvm:my vm!', id, nameBytes('qubes.A+b')));
    expect(r).toMatchObject({
      ok: true,
      value: { kind: 'trigger-service3', targetDomain: '@dispvm:my_vm_', serviceName: 'qubes.A+b' },
    });
  });
  it('replaces characters outside [A-Za-z0-9_.-+] in the service name with _', () => {
    const r = decodeTrigger(MsgType.TRIGGER_SERVICE3, trigger3('dom0', id, nameBytes('qubes.A/b c')));
    expect(r.ok && r.value.serviceName).toBe('qubes.A_b_c');
  });
  it('forces the target domain NUL-terminated at byte 63', () => {
    const r = decodeTrigger(MsgType.TRIGGER_SERVICE3, trigger3('d'.repeat(64), id, nameBytes('s')));
    expect(r.ok && r.value.targetDomain).toBe('d'.repeat(63));
  });
  const refusals: Array<[string, Uint8Array, Uint8Array, string]> = [
    ['a request id with a bad byte', requestIdFromText('SOCKET/1'), nameBytes('s'), 'bad-request-id'],
    ['a request id without NUL', new Uint8Array(32).fill(0x41), nameBytes('s'), 'bad-request-id'],
    [
      'a request id with bytes after the NUL',
      (() => {
        const b = requestIdFromText('A');
        b[5] = 0x41;
        return b;
      })(),
      nameBytes('s'),
      'bad-request-id',
    ],
    ['an empty service name', id, Uint8Array.of(0), 'empty-service-name'],
    ['a service name starting with +', id, nameBytes('+x'), 'service-name-starts-with-plus'],
    ['a service name not ending in NUL', id, Buffer.from('abc'), 'service-name-not-terminated'],
    ['a service name with an embedded NUL', id, Buffer.from('ab\0c\0'), 'service-name-embedded-nul'],
  ];
  for (const [what, rid, name, reason] of refusals) {
    it(`refuses (MSG_SERVICE_REFUSED, not a dropped agent) ${what}`, () => {
      const r = decodeTrigger(MsgType.TRIGGER_SERVICE3, trigger3('dom0', rid, name));
      expect(r.ok).toBe(false);
      if (!r.ok) {
        expect(r.reason).toBe(reason);
        expect(r.refuse && toHex(r.refuse)).toBe(toHex(rid));
      }
    });
  }
  it('validates request ids: letters, digits, _-. and space, NUL-terminated, NUL-padded', () => {
    expect(validateRequestId(requestIdFromText('SOCKET12'))).toEqual({ ok: true, value: 'SOCKET12' });
    expect(validateRequestId(requestIdFromText(''))).toEqual({ ok: true, value: '' });
    expect(validateRequestId(requestIdFromText('a:b')).ok).toBe(false);
  });
  it('sanitises names like sanitize_name', () => {
    expect(sanitizeName('a b/c@d:e+f', '@:')).toBe('a_b_c@d:e_f');
  });
});

describe('properties', () => {
  const bytes = fc.uint8Array({ maxLength: 300 });
  const text = fc.string({ unit: fc.constantFrom(...'abcXYZ019._-+@: '), maxLength: 40 });
  const u32 = fc.integer({ min: 0, max: 0xffffffff });
  const message: fc.Arbitrary<Message> = fc.oneof(
    u32.map((version) => ({ kind: 'hello', version }) as Message),
    fc.tuple(u32, u32, text).map(
      ([connectDomain, connectPort, cmdline]) =>
        ({
          kind: 'exec-cmdline',
          connectDomain,
          connectPort,
          cmdline,
        }) as Message,
    ),
    fc
      .tuple(u32, u32)
      .map(([d, p]) => ({ kind: 'connection-terminated', connectDomain: d, connectPort: p }) as Message),
    bytes.map((data) => ({ kind: 'data-stdout', data }) as Message),
    bytes.map((data) => ({ kind: 'data-stdin', data }) as Message),
    fc
      .integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })
      .map((code) => ({ kind: 'data-exit-code', code }) as Message),
  );

  it('decode(encode(m)) = m', () => {
    fc.assert(
      fc.property(message, (m) => {
        expect(decodeMessage(encodeMessage(m))).toEqual({ ok: true, value: m });
      }),
    );
  });

  it('never throws on arbitrary bytes, for any message type', () => {
    fc.assert(
      fc.property(fc.constantFrom(...Object.values(MsgType), 0, 0x999), bytes, (type, payload) => {
        decodePayload(type, payload);
        decodeTrigger(type, payload);
      }),
    );
  });

  it('frames a stream the same however it is split', () => {
    fc.assert(
      fc.property(
        fc.array(message, { maxLength: 8 }),
        fc.array(fc.nat(40), { maxLength: 20 }),
        (msgs, cuts) => {
          const stream = new Uint8Array(Buffer.concat(msgs.map((m) => encodeMessage(m))));
          const decoder = new FrameDecoder();
          const out: Message[] = [];
          const drain = () => {
            for (;;) {
              const r = decoder.next((h) => ({ ok: true, value: h }));
              if (r.kind !== 'frame') {
                expect(r.kind).toBe('need-more');
                return;
              }
              const d = decodePayload(r.frame.type, r.frame.payload);
              if (d.ok) out.push(d.value);
            }
          };
          let off = 0;
          for (const cut of cuts) {
            decoder.push(stream.subarray(off, Math.min(stream.length, off + cut)));
            off = Math.min(stream.length, off + cut);
            drain();
          }
          decoder.push(stream.subarray(off));
          drain();
          expect(out).toEqual(msgs);
          expect(decoder.atBoundary).toBe(true);
        },
      ),
    );
  });
});
