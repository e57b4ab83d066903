/**
 * A vitest reporter for the lab phase: one line per test file with its time (import, hooks and
 * tests: the first lab file's includes booting the shared lab) and its outcome,
 * and the sum; so `./moat test` shows where the lab phase spends its minutes.
 */
import { relative } from 'node:path';
import type { Reporter, TestModule } from 'vitest/node';

export interface FileTime {
  readonly file: string;
  readonly ms: number;
  readonly tests: number;
  readonly state: string;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

export function formatFileTimes(rows: readonly FileTime[]): string[] {
  const width = Math.max(...rows.map((r) => r.file.length), 4);
  const total = rows.reduce((sum, r) => sum + r.ms, 0);
  return [
    'lab phase, time per test file (the first lab file to run boots the shared lab):',
    ...rows.map(
      (r) => `  ${r.file.padEnd(width)}  ${seconds(r.ms).padStart(8)}  ${r.tests} tests  ${r.state}`,
    ),
    `  ${'all files'.padEnd(width)}  ${seconds(total).padStart(8)}`,
  ];
}

export default class FileTimesReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const rows = testModules.map((module) => {
      const d = module.diagnostic();
      return {
        file: relative(process.cwd(), module.moduleId),
        ms: d.collectDuration + d.duration,
        tests: [...module.children.allTests()].length,
        state: module.state(),
      };
    });
    if (rows.length > 0) console.log(`\n${formatFileTimes(rows).join('\n')}`);
  }
}
