import { describe, expect, it } from 'vitest';
import { parseMeminfo, parseSlabinfo } from './stats-service.ts';

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
const MEMINFO_MORE = `${MEMINFO}AnonPages:         20000 kB
SUnreclaim:         5000 kB
VmallocUsed:        3000 kB
Active(file):       1000 kB
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

  it('adds anonymous pages, unreclaimable slab and vmalloc when the kernel reports them', () => {
    expect(parseMeminfo(MEMINFO_MORE)).toMatchObject({
      memTotal: 101704 * 1024,
      anonPages: 20000 * 1024,
      sUnreclaim: 5000 * 1024,
      vmallocUsed: 3000 * 1024,
    });
  });

  it('gives nothing for a file without every field', () => {
    expect(parseMeminfo('MemTotal: 1 kB\n')).toBeUndefined();
    expect(parseMeminfo('garbage')).toBeUndefined();
  });
});

describe('moat.FirewallStats: the largest slab caches from /proc/slabinfo', () => {
  it('ranks caches by the pages their slabs hold', () => {
    const slabinfo = `slabinfo - version: 2.1
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
kmalloc-1k           512    512   1024   16    4 : tunables    0    0    0 : slabdata     32     32      0
dentry              2000   2100    192   21    1 : tunables    0    0    0 : slabdata    100    100      0
kmalloc-8k            12     12   8192    4    8 : tunables    0    0    0 : slabdata      3      3      0
`;
    expect(parseSlabinfo(slabinfo, 2)).toEqual([
      { name: 'kmalloc-1k', bytes: 32 * 4 * 4096 },
      { name: 'dentry', bytes: 100 * 4096 },
    ]);
    expect(parseSlabinfo('garbage')).toEqual([]);
  });
});
