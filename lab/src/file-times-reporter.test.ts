import { describe, expect, it } from 'vitest';
import { formatFileTimes } from './file-times-reporter.ts';

describe("the lab phase's time per file", () => {
  it('prints one line per file in run order and the sum', () => {
    const lines = formatFileTimes([
      { file: 'lab/test/smoke.lab.test.ts', ms: 95_400, tests: 3, state: 'passed' },
      { file: 'test/x.lab.test.ts', ms: 12_000, tests: 1, state: 'failed' },
    ]);
    expect(lines[1]).toMatch(/lab\/test\/smoke\.lab\.test\.ts\s+95\.4 s {2}3 tests {2}passed$/);
    expect(lines[2]).toMatch(/test\/x\.lab\.test\.ts\s+12\.0 s {2}1 tests {2}failed$/);
    expect(lines[3]).toMatch(/all files\s+107\.4 s$/);
  });
});
