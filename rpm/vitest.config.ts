import { defineConfig } from 'vitest/config';

// The package phase of `./moat test`: builds every package (rpmbuild, dpkg-deb, mke2fs) and
// checks them. Not part of the unit phase because it needs those Debian tools and ~1-2 min.
export default defineConfig({
  test: {
    include: ['rpm/test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 1_200_000,
    pool: 'forks',
  },
});
