import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { vifSpecParts } from './lab.ts';
import { qubesMac } from './topology.ts';
import { patternChunk, patternStreamSha256 } from './topology-wire.ts';

describe('topology wire', () => {
  it('stream pattern blocks differ and hash the same way in pieces or whole', async () => {
    const a = patternChunk(7, 0, 65536);
    const b = patternChunk(7, 65536, 65536);
    expect(a.equals(b)).toBe(false);
    expect(patternChunk(7, 0, 100).equals(a.subarray(0, 100))).toBe(true);
    const whole = createHash('sha256').update(a).update(b.subarray(0, 1000)).digest('hex');
    expect(await patternStreamSha256(7, 65536 + 1000)).toBe(whole);
    expect(() => patternChunk(7, 10, 10)).toThrow('whole 64 KiB blocks');
  });

  it('vif specs in xl syntax, refusing characters that would break the config', () => {
    expect(
      vifSpecParts({ backend: 'netvm', mac: qubesMac(10), ip: '10.137.0.10', script: 'vif-moat' }),
    ).toEqual(['backend=netvm', 'mac=00:16:3e:5e:6c:0a', 'ip=10.137.0.10', 'script=vif-moat']);
    expect(() => vifSpecParts({ backend: "x',y" })).toThrow('bad vif backend');
    expect(() => qubesMac(256)).toThrow('out of 0..255');
  });
});
