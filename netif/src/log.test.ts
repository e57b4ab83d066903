import { describe, expect, it } from 'vitest';
import { RateLimitedLog } from './log.ts';

describe('rate-limited log', () => {
  it('writes a burst per interval, counts the rest, and says how many it held back', () => {
    const out: string[] = [];
    let now = 0;
    const log = new RateLimitedLog(
      (l) => out.push(l),
      3,
      10_000,
      () => now,
    );
    for (let i = 0; i < 1000; i++) log.log(`line ${i}`);
    expect(out).toEqual(['line 0', 'line 1', 'line 2']);
    expect(log.suppressed).toBe(997);
    now = 10_000;
    log.log('later');
    expect(out[3]).toBe('later (997 similar lines suppressed)');
    expect(log.suppressed).toBe(0);
  });
});
