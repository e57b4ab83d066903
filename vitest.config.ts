import { defineConfig } from 'vitest/config';

// Host tests only; the lab suites (lab/test/) have their own config because
// they boot Xen in QEMU and must run one file at a time.
export default defineConfig({
  test: {
    include: ['*/src/**/*.test.ts'],
    exclude: ['**/node_modules/**', 'lab/**'],
    testTimeout: 30_000,
    pool: 'forks',
  },
});
