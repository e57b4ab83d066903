import { PassThrough } from 'node:stream';
import type { ServiceCall } from '@moat/qrexec';
import { describe, expect, it } from 'vitest';
import type { Monitor } from './monitors.ts';
import { parseMonitorLayout } from './monitors.ts';
import { setMonitorLayoutService } from './service.ts';

function call(input: string): { call: ServiceCall; stderr: () => string } {
  const stdin = new PassThrough();
  stdin.end(input);
  const stderr = new PassThrough();
  let text = '';
  stderr.on('data', (chunk: Buffer) => {
    text += chunk.toString();
  });
  return {
    call: {
      service: 'qubes.SetMonitorLayout',
      argument: '',
      descriptor: 'qubes.SetMonitorLayout+',
      sourceDomain: 'dom0',
      connectDomain: 0,
      user: 'user',
      stdin,
      stdout: new PassThrough(),
      stderr,
      signal: new AbortController().signal,
    },
    stderr: () => text,
  };
}

describe('qubes.SetMonitorLayout', () => {
  it('reads W H X Y per monitor, with the optional size in mm', () => {
    expect(parseMonitorLayout('1920 1080 0 0 520 290\n1280 1024 1920 0\n')).toEqual({
      ok: true,
      monitors: [
        { x: 0, y: 0, width: 1920, height: 1080, widthMm: 520, heightMm: 290 },
        { x: 1920, y: 0, width: 1280, height: 1024 },
      ],
    });
  });

  it('refuses what is not a layout, saying why', () => {
    expect(parseMonitorLayout('')).toEqual({ ok: false, reason: 'no monitors' });
    expect(parseMonitorLayout('1920 1080 0')).toMatchObject({ ok: false });
    expect(parseMonitorLayout('0 1080 0 0')).toMatchObject({ ok: false });
    expect(parseMonitorLayout('1920 1080 0 0x10')).toMatchObject({ ok: false });
    expect(parseMonitorLayout('1e3 1080 0 0')).toMatchObject({ ok: false });
    expect(parseMonitorLayout('800 600 0 0\n'.repeat(33))).toMatchObject({ ok: false });
  });

  it('the service hands the monitors to the agent and exits 0; a bad layout exits 1 and changes nothing', async () => {
    let monitors: readonly Monitor[] = [];
    const service = setMonitorLayoutService({ setMonitors: (m) => (monitors = m) });
    expect(await service(call('2560 1440 0 0\n').call)).toBe(0);
    expect(monitors).toEqual([{ x: 0, y: 0, width: 2560, height: 1440 }]);
    const bad = call('nonsense\n');
    expect(await service(bad.call)).toBe(1);
    expect(bad.stderr()).toMatch(/bad monitor layout/);
    expect(monitors).toHaveLength(1);
    expect(await service(call('1 '.repeat(3000)).call)).toBe(1);
  });
});
