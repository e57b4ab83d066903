import { inflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { vchanBenchPlan } from './bench-vchan.ts';
import { LabError } from './errors.ts';
import { domUCommandLine } from './lab.ts';

describe('domU command line', () => {
  it('carries the args deflated, so the vchan bench plan fits in what Xen passes a PV guest', () => {
    const args = { peer: 0, tasks: vchanBenchPlan(2 * 1024 * 1024, 10_000_000).domU };
    const line = domUCommandLine(args);
    expect(line.length).toBeLessThanOrEqual(1023);
    const packed = /moat\.argz=([A-Za-z0-9_-]+)$/.exec(line)?.[1] ?? '';
    expect(JSON.parse(inflateRawSync(Buffer.from(packed, 'base64url')).toString('utf8'))).toEqual(args);
  });

  it('refuses args that do not fit, naming the limit', () => {
    // Random text does not compress: about 2 KiB after deflate.
    const noise = Array.from({ length: 1500 }, (_, i) => ((i * 2654435761) >>> 7).toString(36)).join('');
    expect(() => domUCommandLine({ noise })).toThrow(LabError);
    expect(() => domUCommandLine({ noise })).toThrow(/at most 1023/);
  });
});
