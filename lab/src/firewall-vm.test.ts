import { describe, expect, it } from 'vitest';
import { memInUse } from './firewall-vm.ts';

describe('memInUse', () => {
  it('is MemTotal - MemAvailable in bytes, undefined when either is missing', () => {
    const meminfo = 'MemTotal:         187460 kB\nMemFree:          120000 kB\nMemAvailable:     150000 kB\n';
    expect(memInUse(meminfo)).toBe((187460 - 150000) * 1024);
    expect(memInUse('MemTotal: 1 kB\n')).toBeUndefined();
    expect(memInUse('')).toBeUndefined();
  });
});
