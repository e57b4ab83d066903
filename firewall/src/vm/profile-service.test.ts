import { PassThrough } from 'node:stream';
import type { ServiceCall } from '@moat/qrexec';
import { describe, expect, it } from 'vitest';
import { PROFILE_DEFAULT_MS, profileMs, profileService } from './profile-service.ts';

function call(argument: string): { call: ServiceCall; out: () => string; err: () => string } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  stderr.on('data', (d: Buffer) => {
    err += d.toString();
  });
  return {
    call: {
      service: 'moat.CpuProfile',
      argument,
      descriptor: `moat.CpuProfile+${argument}`,
      sourceDomain: 'dom0',
      connectDomain: 0,
      user: 'root',
      stdin: new PassThrough(),
      stdout,
      stderr,
      signal: new AbortController().signal,
    },
    out: () => out,
    err: () => err,
  };
}

describe('moat.CpuProfile', () => {
  it('takes milliseconds as its argument, refusing anything else', () => {
    expect(profileMs('')).toBe(PROFILE_DEFAULT_MS);
    expect(profileMs('250')).toBe(250);
    expect(profileMs('0')).toBeUndefined();
    expect(profileMs('300001')).toBeUndefined();
    expect(profileMs('1e3')).toBeUndefined();
    expect(profileMs('-5')).toBeUndefined();
  });

  it('writes a V8 CPU profile of the time asked for', async () => {
    const c = call('50');
    const busy = setInterval(() => {
      let x = 0;
      for (let i = 0; i < 1e5; i++) x += i;
      return x;
    }, 1);
    try {
      expect(await profileService(c.call)).toBe(0);
    } finally {
      clearInterval(busy);
    }
    const profile = JSON.parse(c.out()) as { nodes: unknown[]; startTime: number; endTime: number };
    expect(profile.nodes.length).toBeGreaterThan(0);
    expect(profile.endTime - profile.startTime).toBeGreaterThanOrEqual(40_000); // µs
  });

  it('refuses a bad argument and a second profile at the same time', async () => {
    const bad = call('x');
    expect(await profileService(bad.call)).toBe(2);
    expect(bad.err()).toMatch(/milliseconds/);
    const first = call('100');
    const second = call('100');
    const running = profileService(first.call);
    expect(await profileService(second.call)).toBe(1);
    expect(second.err()).toMatch(/already/);
    expect(await running).toBe(0);
  });
});
