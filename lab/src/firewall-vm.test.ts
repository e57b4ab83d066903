import { describe, expect, it } from 'vitest';
import { memInUse, meminfo } from './firewall-vm.ts';

describe('memInUse', () => {
  it('is MemTotal - MemAvailable in bytes, undefined when either is missing', () => {
    const meminfo = 'MemTotal:         187460 kB\nMemFree:          120000 kB\nMemAvailable:     150000 kB\n';
    expect(memInUse(meminfo)).toBe((187460 - 150000) * 1024);
    expect(memInUse('MemTotal: 1 kB\n')).toBeUndefined();
    expect(memInUse('')).toBeUndefined();
  });
});

describe('meminfo', () => {
  it('reads MemTotal, MemAvailable and Slab in bytes, undefined when one is missing', () => {
    const text = 'MemTotal:         187460 kB\nMemAvailable:     150000 kB\nSlab:              15360 kB\n';
    expect(meminfo(text)).toEqual({
      memTotal: 187460 * 1024,
      memAvailable: 150000 * 1024,
      slab: 15360 * 1024,
    });
    expect(meminfo('MemTotal: 1 kB\nMemAvailable: 1 kB\n')).toBeUndefined();
  });
});
