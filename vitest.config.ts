import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Run-wide gates: contract coverage, and Prism under `npm run test:prism`.
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // PGlite is CPU-bound: more files at once than cores only slows each down.
    maxWorkers: 2,
  },
});
