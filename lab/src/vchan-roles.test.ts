import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PATTERN_PERIOD, patternBlock, patternSha256 } from './vchan-roles.ts';

describe('the vchan test pattern', () => {
  it('repeats with its prime period, so a moved chunk changes the stream', () => {
    const block = patternBlock(1);
    expect(block.subarray(PATTERN_PERIOD, PATTERN_PERIOD + 4096)).toEqual(block.subarray(0, 4096));
    expect(block.subarray(4096, 8192)).not.toEqual(block.subarray(0, 4096));
  });

  it('hashes the stream a sender writes, across period boundaries', () => {
    const block = patternBlock(2);
    const bytes = PATTERN_PERIOD + 12_345;
    const stream = Buffer.concat([block.subarray(0, PATTERN_PERIOD), block.subarray(0, 12_345)]);
    expect(patternSha256(2, bytes)).toBe(createHash('sha256').update(stream).digest('hex'));
  });

  it('differs between the two directions', () => {
    expect(patternSha256(1, 1000)).not.toBe(patternSha256(2, 1000));
  });
});
