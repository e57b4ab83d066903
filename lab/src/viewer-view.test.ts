import { describe, expect, it } from 'vitest';
import { parseMemoryLines } from './viewer-view.ts';

describe('the moat-viewer VM log', () => {
  it('gives first-frame time and memory per call', () => {
    const lines = [
      '[   12.3] moat-viewer: qubesdb synchronised (x)',
      'moat-viewer: a.png: shown, decoded at 1/1; first frame after 5931 ms; rss 66 MiB; VM used 60 of 218 MiB',
    ];
    expect(parseMemoryLines(lines)).toEqual([{ firstFrameMs: 5931, rssMiB: 66, usedMiB: 60, totalMiB: 218 }]);
  });
});
