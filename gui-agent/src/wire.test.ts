import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AGENT_PROTOCOL_VERSION,
  DAEMON_PROTOCOL_VERSION,
  decodeBody,
  decodeHeader,
  decodeVersion,
  decodeXconf,
  encodeMessage,
  encodeVersion,
  encodeXconf,
  FIXED_BODY_SIZE,
  type GuiMessage,
  HEADER_SIZE,
  MAX_GRANT_REFS_COUNT,
  MAX_WINDOW_DUMP_MESSAGE,
  Msg,
  xconfFor,
} from './wire.ts';

const hex = (text: string) => new Uint8Array(Buffer.from(text.replace(/\s+/g, ''), 'hex'));

/** Decodes a whole message (header + body) as a peer would, and checks it re-encodes to the same bytes. */
function roundTrip(bytes: Uint8Array): GuiMessage {
  const header = decodeHeader(bytes);
  expect(header.untrustedLength).toBe(bytes.length - HEADER_SIZE);
  const decoded = decodeBody(header.type, header.window, bytes.subarray(HEADER_SIZE));
  if (!decoded.ok) throw new Error(decoded.reason);
  expect(encodeMessage(decoded.message)).toEqual(bytes);
  return decoded.message;
}

describe('GUI wire format, from bytes laid out as the C structs of qubes-gui-protocol.h', () => {
  it('the version words: 1.7 for Qubes 4.2 dom0s, 1.8 current; major << 16 | minor, little-endian', () => {
    expect(encodeVersion(AGENT_PROTOCOL_VERSION)).toEqual(hex('07 00 01 00'));
    expect(encodeVersion(DAEMON_PROTOCOL_VERSION)).toEqual(hex('08 00 01 00'));
    expect(decodeVersion(hex('04 00 01 00'))).toBe(0x00010004);
  });

  it('xconf for a 1920x1080 depth-24 root: mem = w*h*4/1024 + 1 = 8101 KiB', () => {
    const bytes = hex('80 07 00 00  38 04 00 00  18 00 00 00  a5 1f 00 00');
    expect(encodeXconf(xconfFor(1920, 1080))).toEqual(bytes);
    expect(decodeXconf(bytes)).toEqual({ w: 1920, h: 1080, depth: 24, mem: 8101 });
  });

  it('MSG_CREATE (130) for window 0x00a00003 at -10,20 of 800x600, parent 0, not override-redirect', () => {
    const m = roundTrip(
      hex(`82 00 00 00  03 00 a0 00  18 00 00 00
           f6 ff ff ff  14 00 00 00  20 03 00 00  58 02 00 00  00 00 00 00  00 00 00 00`),
    );
    expect(m).toEqual({
      kind: 'create',
      window: 0xa00003,
      x: -10,
      y: 20,
      width: 800,
      height: 600,
      parent: 0,
      overrideRedirect: 0,
    });
  });

  it('MSG_MAP carries transient_for first, then override_redirect', () => {
    const m = roundTrip(hex('84 00 00 00  05 00 00 00  08 00 00 00  04 00 00 00  01 00 00 00'));
    expect(m).toEqual({ kind: 'map', window: 5, transientFor: 4, overrideRedirect: 1 });
  });

  it('MSG_WINDOW_DUMP: header, {type 0, width, height, bpp 32}, then the grant refs', () => {
    const m = roundTrip(
      hex(`93 00 00 00  01 00 00 00  18 00 00 00
           00 00 00 00  20 00 00 00  10 00 00 00  20 00 00 00  0a 00 00 00  0b 00 00 00`),
    );
    expect(m).toMatchObject({ kind: 'window-dump', window: 1, dumpType: 0, width: 32, height: 16, bpp: 32 });
    expect([...(m as Extract<GuiMessage, { kind: 'window-dump' }>).refs]).toEqual([10, 11]);
    expect(MAX_WINDOW_DUMP_MESSAGE).toBe(393244); // QUBES_MAX_MSG_WINDOW_DUMP_LEN
    expect(MAX_GRANT_REFS_COUNT).toBe(98304);
  });

  it('daemon input: MSG_KEYPRESS KeyPress keycode 38 (evdev KEY_A 30 + 8) with Shift', () => {
    const m = roundTrip(
      hex(`7c 00 00 00  01 00 00 00  14 00 00 00
           02 00 00 00  05 00 00 00  06 00 00 00  01 00 00 00  26 00 00 00`),
    );
    expect(m).toEqual({ kind: 'keypress', window: 1, eventType: 2, x: 5, y: 6, state: 1, keycode: 38 });
  });

  it('daemon MSG_CONFIGURE and its bodiless messages (CLOSE, DESTROY echo, WINDOW_DUMP_ACK)', () => {
    expect(
      roundTrip(
        hex(
          '86 00 00 00 02 00 00 00 14 00 00 00 0a 00 00 00 14 00 00 00 2c 01 00 00 c8 00 00 00 00 00 00 00',
        ),
      ),
    ).toEqual({ kind: 'configure', window: 2, x: 10, y: 20, width: 300, height: 200, overrideRedirect: 0 });
    expect(roundTrip(hex('89 00 00 00 02 00 00 00 00 00 00 00'))).toEqual({ kind: 'close', window: 2 });
    expect(roundTrip(hex('83 00 00 00 02 00 00 00 00 00 00 00'))).toEqual({ kind: 'destroy', window: 2 });
    expect(roundTrip(hex('95 00 00 00 02 00 00 00 00 00 00 00'))).toEqual({
      kind: 'window-dump-ack',
      window: 2,
    });
  });

  it('MSG_WMNAME is a 128-byte NUL-padded field', () => {
    const body = new Uint8Array(128);
    body.set(new TextEncoder().encode('moat viewer'));
    const bytes = new Uint8Array(140);
    bytes.set(hex('8d 00 00 00 01 00 00 00 80 00 00 00'));
    bytes.set(body, 12);
    expect(roundTrip(bytes)).toEqual({ kind: 'wmname', window: 1, data: body });
  });

  it('every fixed-size struct has the size sizeof gives on x86-64', () => {
    expect(Object.fromEntries([...FIXED_BODY_SIZE].map(([t, n]) => [t, n]))).toEqual({
      [Msg.KEYPRESS]: 20,
      [Msg.BUTTON]: 20,
      [Msg.MOTION]: 16,
      [Msg.CROSSING]: 28,
      [Msg.FOCUS]: 12,
      [Msg.RESIZE]: 8,
      [Msg.CREATE]: 24,
      [Msg.DESTROY]: 0,
      [Msg.MAP]: 8,
      [Msg.UNMAP]: 0,
      [Msg.CONFIGURE]: 20,
      [Msg.SHMIMAGE]: 16,
      [Msg.CLOSE]: 0,
      [Msg.EXECUTE]: 255,
      [Msg.CLIPBOARD_REQ]: 0,
      [Msg.WMNAME]: 128,
      [Msg.KEYMAP_NOTIFY]: 32,
      [Msg.DOCK]: 0,
      [Msg.WINDOW_HINTS]: 36,
      [Msg.WINDOW_FLAGS]: 8,
      [Msg.WMCLASS]: 128,
      [Msg.CURSOR]: 4,
      [Msg.WINDOW_DUMP_ACK]: 0,
    });
  });

  it('refuses wrong body lengths with a reason, and keeps unknown types as unknown', () => {
    expect(decodeBody(Msg.CONFIGURE, 1, new Uint8Array(19))).toEqual({
      ok: false,
      reason: 'MSG_CONFIGURE body is 19 bytes, expected 20',
    });
    expect(decodeBody(Msg.WINDOW_DUMP, 1, new Uint8Array(18)).ok).toBe(false);
    expect(decodeBody(Msg.MFNDUMP, 1, new Uint8Array(28 + 3)).ok).toBe(false);
    expect(decodeBody(200, 9, hex('01 02'))).toEqual({
      ok: true,
      message: { kind: 'unknown', type: 200, window: 9, body: hex('01 02') },
    });
  });

  it('any bytes decode to a message or a reason, never an exception, and messages re-encode exactly', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 120, max: 152 }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.uint8Array({ maxLength: 300 }),
        (type, window, body) => {
          const decoded = decodeBody(type, window, body);
          if (!decoded.ok) {
            expect(decoded.reason.length).toBeGreaterThan(0);
            return;
          }
          expect(encodeMessage(decoded.message).subarray(HEADER_SIZE)).toEqual(body);
        },
      ),
      { numRuns: 3000 },
    );
  });
});
