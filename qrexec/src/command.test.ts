import { describe, expect, it } from 'vitest';
import { formatRpcCommandLine, parseRpcCommandLine } from './command.ts';

describe('qrexec command lines (parse_qubes_rpc_command)', () => {
  it('parses what dom0 sends for a call without argument (bare +)', () => {
    expect(parseRpcCommandLine('user:QUBESRPC qubes.OpenInVM+ work')).toEqual({
      ok: true,
      value: {
        user: 'user',
        nogui: false,
        service: 'qubes.OpenInVM',
        argument: '',
        descriptor: 'qubes.OpenInVM+',
        sourceDomain: 'work',
      },
    });
  });
  it('parses nogui:, an argument and the dom0 target pair', () => {
    expect(parseRpcCommandLine('root:nogui:QUBESRPC qubes.GetDate+nanoseconds dom0 keyword adminvm')).toEqual(
      {
        ok: true,
        value: {
          user: 'root',
          nogui: true,
          service: 'qubes.GetDate',
          argument: 'nanoseconds',
          descriptor: 'qubes.GetDate+nanoseconds',
          sourceDomain: 'dom0',
          requestedTarget: { type: 'keyword', target: 'adminvm' },
        },
      },
    );
  });
  it('adds the trailing + to a descriptor without one', () => {
    const r = parseRpcCommandLine('user:QUBESRPC qubes.WaitForSession none');
    expect(r.ok && r.value.descriptor).toBe('qubes.WaitForSession+');
  });
  const bad: Array<[string, string]> = [
    ['QUBESRPC qubes.A dom0', 'no-colon'],
    ['user:ls -l /', 'not-rpc'],
    ['user:QUBESRPCqubes.A dom0', 'no-space-after-qubesrpc'],
    ['user:QUBESRPC qubes.A', 'no-space-after-descriptor'],
    ['user:QUBESRPC  qubes.A dom0', 'empty-descriptor'],
    ['user:QUBESRPC +arg dom0', 'empty-service-name'],
    [`user:QUBESRPC ${'s'.repeat(256)} dom0`, 'service-name-too-long'],
    [`user:QUBESRPC a+${'x'.repeat(65000)} dom0`, 'descriptor-too-long'],
    ['user:QUBESRPC qubes.A  dom0', 'empty-source-domain'],
  ];
  for (const [line, reason] of bad) {
    it(`rejects ${JSON.stringify(line.slice(0, 40))} (${reason})`, () => {
      expect(parseRpcCommandLine(line)).toEqual({ ok: false, reason });
    });
  }
  it('formats and parses back', () => {
    const line = formatRpcCommandLine({ user: 'user', service: 'qubes.X', sourceDomain: 'dom0' });
    expect(line).toBe('user:QUBESRPC qubes.X+ dom0');
    expect(parseRpcCommandLine(line).ok).toBe(true);
  });
});
