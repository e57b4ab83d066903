import { defineConfig } from 'vitest/config';

/**
 * The lab suite. Lab test files live in two places (rule in lab/NOTES.md): top-level `test/`
 * for system tests of the product across packages, `lab/test/` for library-level lab tests.
 *
 * Every file runs in one process, one after another, with a shared module registry (singleFork,
 * isolate off), so they share one booted lab (src/shared-lab.ts: the first file boots Xen, the
 * rest reuse it; each file's session cleans up after itself). Two emulated machines on two
 * cores would starve each other anyway. Timeouts are long because everything runs under
 * software emulation, often on a busy machine.
 */
export default defineConfig({
  test: {
    // lab/src's own host tests run here too: the root config leaves lab/ out.
    include: ['lab/src/**/*.test.ts', 'lab/test/**/*.lab.test.ts', 'test/**/*.lab.test.ts'],
    fileParallelism: false,
    pool: 'forks',
    isolate: false,
    poolOptions: { forks: { singleFork: true } },
    reporters: ['default', './lab/src/file-times-reporter.ts'],
    testTimeout: 600_000,
    hookTimeout: 900_000,
    teardownTimeout: 60_000,
  },
});
