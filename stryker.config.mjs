// StrykerJS settings shared by every module of `npm run mutate` (scripts/mutate.mjs names, per
// module, the file to mutate and the test files that exercise it).
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  plugins: ['@stryker-mutator/vitest-runner'],
  vitest: { configFile: 'vitest.config.ts', related: false },
  coverageAnalysis: 'perTest',
  // Module-level code runs once per process: the vitest runner cannot switch its mutants on per
  // test. scripts/mutate.mjs lists what it skips; test/mutation/EQUIVALENT.md says how those are covered.
  ignoreStatic: true,
  checkers: [],
  reporters: ['clear-text', 'json'],
  concurrency: 2,
  timeoutMS: 30_000,
  timeoutFactor: 2,
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
  ignorePatterns: ['bench/results', 'reports', '.tessera', 'coverage'],
};
