import { describe, expect, it } from 'vitest';
import { parseMeminfo } from './stats-service.ts';

const MEMINFO = `MemTotal:         101704 kB
MemFree:           30120 kB
MemAvailable:      52000 kB
Buffers:               0 kB
Cached:            40960 kB
Shmem:             20480 kB
Slab:               8192 kB
KernelStack:         512 kB
PageTables:         1024 kB
`;

describe('moat.FirewallStats: the VM memory from /proc/meminfo', () => {
  it('reads the fields in bytes', () => {
    expect(parseMeminfo(MEMINFO)).toEqual({
      memTotal: 101704 * 1024,
      memFree: 30120 * 1024,
      memAvailable: 52000 * 1024,
      cached: 40960 * 1024,
      shmem: 20480 * 1024,
      slab: 8192 * 1024,
      pageTables: 1024 * 1024,
      kernelStack: 512 * 1024,
    });
  });

  it('gives nothing for a file without every field', () => {
    expect(parseMeminfo('MemTotal: 1 kB\n')).toBeUndefined();
    expect(parseMeminfo('garbage')).toBeUndefined();
  });
});
