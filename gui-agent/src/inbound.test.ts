import { describe, expect, it } from 'vitest';
import { GuiProtocolError } from './errors.ts';
import { DaemonStreamParser } from './inbound.ts';
import {
  encodeHeader,
  encodeMessage,
  encodeVersion,
  encodeXconf,
  Msg,
  versionWord,
  xconfFor,
} from './wire.ts';

const handshake = (version: number) =>
  Buffer.concat([encodeVersion(version), encodeXconf(xconfFor(1280, 800))]);

function reason(bytes: Uint8Array): string | undefined {
  const parser = new DaemonStreamParser(versionWord(1, 7));
  parser.push(bytes);
  try {
    while (parser.next()) {}
    return undefined;
  } catch (error) {
    expect(error).toBeInstanceOf(GuiProtocolError);
    return (error as GuiProtocolError).reason;
  }
}

describe("the agent's reading of the daemon", () => {
  it('accepts 1.4 to its own 1.7 as the C agent does, and nothing else', () => {
    expect(reason(handshake(versionWord(1, 4)))).toBeUndefined();
    expect(reason(handshake(versionWord(1, 7)))).toBeUndefined();
    expect(reason(handshake(versionWord(1, 3)))).toBe('bad-version');
    expect(reason(handshake(versionWord(1, 8)))).toBe('bad-version');
    expect(reason(handshake(versionWord(2, 7)))).toBe('bad-version');
  });

  it('refuses an xconf no screen has', () => {
    expect(
      reason(
        Buffer.concat([encodeVersion(versionWord(1, 7)), encodeXconf({ w: 0, h: 800, depth: 24, mem: 1 })]),
      ),
    ).toBe('bad-xconf');
  });

  it('refuses a known message whose length is not its struct size, before reading its body', () => {
    const header = encodeHeader({ type: Msg.KEYPRESS, window: 1, untrustedLength: 1_000_000 });
    expect(reason(Buffer.concat([handshake(versionWord(1, 7)), header]))).toBe('bad-length');
  });

  it('skips unknown messages by their length, up to the largest body a daemon sends', () => {
    const parser = new DaemonStreamParser(versionWord(1, 7));
    parser.push(handshake(versionWord(1, 7)));
    parser.push(encodeMessage({ kind: 'unknown', type: 199, window: 1, body: new Uint8Array(10) }));
    parser.push(encodeMessage({ kind: 'close', window: 1 }));
    expect(parser.next()?.kind).toBe('handshake');
    expect(parser.next()).toMatchObject({ kind: 'skipped', header: { type: 199, untrustedLength: 10 } });
    expect(parser.next()).toEqual({ kind: 'message', message: { kind: 'close', window: 1 } });
    expect(parser.next()).toBeUndefined();
    const huge = encodeHeader({ type: 199, window: 1, untrustedLength: 300_000 });
    expect(reason(Buffer.concat([handshake(versionWord(1, 7)), huge]))).toBe('too-long');
  });

  it('bounds a paste by the negotiated protocol (65000 bytes before 1.8)', () => {
    const paste = encodeHeader({ type: Msg.CLIPBOARD_DATA, window: 1, untrustedLength: 65001 });
    expect(reason(Buffer.concat([handshake(versionWord(1, 7)), paste]))).toBe('too-long');
  });
});
