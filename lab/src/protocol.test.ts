import { describe, expect, it } from 'vitest';
import { encodeMessage, parseLine } from './protocol.ts';

describe('guest protocol lines', () => {
  it('finds a result after console noise on the same line', () => {
    const line = `[   12.3] something ${encodeMessage({ kind: 'result', name: 'a', ok: true, ms: 3, data: { x: 1 } })}`;
    expect(parseLine(line)).toEqual({
      kind: 'message',
      message: { kind: 'result', name: 'a', ok: true, ms: 3, data: { x: 1 } },
    });
  });

  it('treats lines without the prefix as text', () => {
    expect(parseLine('moat-init: node started (pid 81)')).toEqual({ kind: 'text' });
  });

  it('returns a reason for broken protocol lines instead of throwing', () => {
    expect(parseLine('@@moat1 {"kind":"result"')).toEqual({ kind: 'bad', reason: 'not JSON' });
    expect(parseLine('@@moat1 {"kind":"result","name":"a"}')).toEqual({
      kind: 'bad',
      reason: 'result without name/ok/ms',
    });
    expect(parseLine('@@moat1 {"kind":"nope"}')).toEqual({ kind: 'bad', reason: 'unknown kind nope' });
  });
});
