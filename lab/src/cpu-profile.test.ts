import { describe, expect, it } from 'vitest';
import { summarizeCpuProfile } from './cpu-profile.ts';

const frame = (functionName: string, url = '', lineNumber = -1) => ({ functionName, url, lineNumber });

describe('summarizeCpuProfile', () => {
  it('sums samples by function and keeps idle, GC and program apart', () => {
    const s = summarizeCpuProfile({
      startTime: 0,
      endTime: 100_000, // 100 ms
      nodes: [
        { id: 1, callFrame: frame('(root)') },
        { id: 2, callFrame: frame('(idle)') },
        { id: 3, callFrame: frame('receive', 'file:///app/netback-rings.ts', 9) },
        { id: 4, callFrame: frame('(garbage collector)') },
        { id: 5, callFrame: frame('receive', 'file:///app/netback-rings.ts', 9) },
      ],
      samples: [2, 2, 2, 2, 2, 3, 3, 5, 4, 2],
    });
    expect(s).toMatchObject({ ms: 100, samples: 10, idle: 0.6, gc: 0.1, program: 0 });
    expect(s.top[0]).toEqual({ fn: 'receive netback-rings.ts:10', ms: 30, busyShare: 0.75 });
    expect(s.top.map((t) => t.fn)).not.toContain('(idle) :0');
  });

  it('reads hit counts when the profile has no sample list, and an empty one gives zeros', () => {
    const s = summarizeCpuProfile({
      startTime: 0,
      endTime: 1000,
      nodes: [{ id: 1, callFrame: frame('f', 'x.js', 0), hitCount: 4 }],
    });
    expect(s.top).toEqual([{ fn: 'f x.js:1', ms: 1, busyShare: 1 }]);
    expect(summarizeCpuProfile({ startTime: 0, endTime: 0, nodes: [] })).toMatchObject({
      samples: 0,
      idle: 0,
      top: [],
    });
  });

  it('names native code (no script) by its JS caller', () => {
    const s = summarizeCpuProfile({
      startTime: 0,
      endTime: 4000,
      nodes: [
        { id: 1, callFrame: frame('(root)'), children: [2, 4] },
        { id: 2, callFrame: frame('copy', 'file:///app/main.js', 3177), children: [3] },
        { id: 3, callFrame: frame('') },
        { id: 4, callFrame: frame('(program)') },
      ],
      samples: [3, 3, 3, 4],
    });
    expect(s.top.map((t) => t.fn)).toEqual(['(anonymous) :0 <- copy main.js:3178', '(program) :0']);
  });
});
