import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    // Checks every response the HTTP tests get against openapi.yaml, and every log line for secrets.
    setupFiles: ['test/openapi.setup.ts', 'test/logs.setup.ts'],
    // Each test file gets its own PostgreSQL database and Redis prefix, so files can run in parallel.
    pool: 'forks',
    testTimeout: 20_000,
    hookTimeout: 60_000,
  },
});
