import { describe, expect, it } from 'vitest';
import { measureXenstoreRoundTrip } from './bench.ts';

describe('xenstore round-trip benchmark', () => {
  it('measures both the client and the bare-socket floor in one run', async () => {
    const r = await measureXenstoreRoundTrip({ requests: 20 });
    expect(r.requests).toBe(20);
    expect(r.clientMedianUs).toBeGreaterThan(0);
    expect(r.bareSocketMedianUs).toBeGreaterThan(0);
    expect(r.pipelinedPerSecond).toBeGreaterThan(0);
  });
});
