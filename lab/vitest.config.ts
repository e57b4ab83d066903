import { defineConfig } from 'vitest/config';

/**
 * The lab suite: each file boots Xen in QEMU once (beforeAll) and runs its guests; files run
 * one at a time (two emulated machines on two cores starve each other). Timeouts are long
 * because everything runs under software emulation, often on a busy machine.
 */
export default defineConfig({
  test: {
    // lab/src's own host tests run here too: the root config leaves lab/ out.
    include: ['lab/src/**/*.test.ts', 'lab/test/**/*.lab.test.ts', 'test/**/*.lab.test.ts'],
    fileParallelism: false,
    pool: 'forks',
    testTimeout: 600_000,
    hookTimeout: 900_000,
    teardownTimeout: 60_000,
  },
});
