#!/usr/bin/env node
// `npm run mutate [-- <name>...]`: StrykerJS over the security core, one module at a time, each
// with the test files that exercise it (stryker.config.mjs holds the shared settings). Prints a
// table of scores, writes reports/mutation/<name>.json, and exits 1 when a module scores under
// 90%, or a mutant survives (or is static, which the vitest runner cannot switch on) that
// test/mutation/EQUIVALENT.md does not list with a reason.
//   npm run mutate                     every module (about 30 minutes on 2 cores)
//   npm run mutate -- rotation form    the modules whose names contain these words
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';

const MIN_SCORE = 90;

/** Each module of the security core and the tests that exercise it. */
const MODULES = [
  {
    name: 'rotation',
    mutate: ['src/refresh/rotation.ts'],
    tests: ['test/refresh-tokens.test.ts', 'test/security/b-refresh.test.ts', 'test/refresh-outage.test.ts', 'test/security/i-sessions.test.ts', 'test/metrics.test.ts', 'test/id-token-refresh.test.ts'],
  },
  {
    name: 'refresh-tokens',
    mutate: ['src/refresh/tokens.ts', 'src/refresh/housekeeping.ts'],
    tests: ['src/refresh/tokens.test.ts', 'test/refresh-tokens.test.ts', 'test/security/b-refresh.test.ts', 'test/audit-log.test.ts', 'test/password-reset.test.ts', 'test/browser-session-purge.test.ts'],
  },
  {
    name: 'client-auth',
    mutate: ['src/oauth/client-auth.ts'],
    tests: ['test/security/e-http.test.ts', 'test/client-credentials.test.ts', 'test/introspect.test.ts'],
  },
  {
    // The request layers and the client layers, with where client authentication meets them.
    name: 'rate-limits',
    mutate: ['src/limits/rate-limits.ts', 'src/limits/layers.ts', 'src/http/client-authentication.ts'],
    tests: ['src/limits/layers.test.ts', 'test/rate-limits.test.ts', 'test/security/d-rate-limits.test.ts', 'test/security/i-limits.test.ts'],
  },
  {
    // The account layers: what counts as a failed login, and the slots that keep the count exact.
    name: 'login-limits',
    mutate: ['src/limits/login-attempts.ts', 'src/limits/in-flight-slots.ts'],
    tests: ['src/limits/in-flight-slots.test.ts', 'test/rate-limits.test.ts', 'test/security/d-rate-limits.test.ts', 'test/security/i-limits.test.ts'],
  },
  {
    // Verification is src/tokens/verify-jws.ts, held to jose's answers by its differential test.
    name: 'access-token',
    mutate: ['src/tokens/access-token.ts', 'src/tokens/verify-jws.ts'],
    tests: ['src/tokens/verify-jws.test.ts', 'test/token-password.test.ts', 'test/userinfo.test.ts'],
  },
  {
    name: 'scopes',
    mutate: ['src/auth/scopes.ts'],
    tests: ['src/auth/scopes.test.ts'],
  },
  {
    name: 'form',
    mutate: ['src/http/form.ts'],
    tests: ['src/http/form.test.ts', 'test/request-bodies.test.ts'],
  },
  {
    name: 'key-lifecycle',
    mutate: ['src/keys/lifecycle.ts'],
    tests: ['test/key-lifecycle.test.ts'],
  },
  {
    name: 'passwords',
    mutate: ['src/auth/passwords.ts'],
    tests: ['src/auth/passwords.test.ts', 'test/token-password.test.ts'],
  },
  {
    name: 'bearer',
    mutate: ['src/http/bearer.ts'],
    tests: ['test/userinfo.test.ts'],
  },
  {
    name: 'admin-auth',
    mutate: ['src/http/admin/auth.ts', 'src/auth/admin-access.ts'],
    tests: ['test/admin-auth.test.ts'],
  },
  {
    name: 'redirect-uris',
    mutate: ['src/auth/redirect-uris.ts'],
    tests: ['src/auth/redirect-uris.test.ts'],
  },
  {
    // PKCE, the opaque secrets (session cookies, authorization codes) and the signed CSRF token.
    name: 'signin-secrets',
    mutate: ['src/signin/secrets.ts'],
    tests: ['src/signin/secrets.test.ts'],
  },
  {
    name: 'token-claims',
    mutate: ['src/auth/token-claims.ts'],
    tests: ['src/auth/token-claims.test.ts', 'test/token-claims.test.ts'],
  },
  {
    name: 'authorization-code',
    mutate: ['src/grants/authorization-code.ts'],
    tests: ['test/authorization-code.test.ts', 'test/security/j-browser-signin.test.ts'],
  },
  {
    // Self-service reset by email: the token, the request step and the confirm step.
    name: 'password-reset',
    mutate: ['src/password-reset/reset.ts', 'src/password-reset/tokens.ts'],
    tests: ['test/password-reset.test.ts'],
  },
];

/**
 * Survivors known to be equivalent: `| file | mutator | replacement | why |` rows of EQUIVALENT.md.
 * A row may name one mutant rather than every mutant of its mutator and replacement in the file:
 * the file cell by its line (`src/x.ts:70`), the replacement cell by the code it replaces too
 * (`` `original` → `replacement` ``); a `|` in a cell is written `\|`.
 */
async function readEquivalents() {
  const text = await readFile(new URL('../test/mutation/EQUIVALENT.md', import.meta.url), 'utf8').catch(() => '');
  const rows = text.split('\n').filter((line) => /^\| src\//.test(line));
  return new Set(
    rows.map((line) => {
      const [file, mutator, change] = line.split(/(?<!\\)\|/).slice(1, 4).map((cell) => cell.trim().replaceAll('\\|', '|'));
      const [original, replacement] = change.includes(' → ') ? change.split(' → ') : [undefined, change];
      return key(file, mutator, unquote(replacement), original === undefined ? undefined : unquote(original));
    }),
  );
}

const unquote = (cell) => cell.replace(/^`|`$/g, '');
const key = (file, mutator, replacement, original) =>
  `${file} ${mutator} ${original === undefined ? '' : `${original.replace(/\s+/g, ' ')} → `}${replacement.replace(/\s+/g, ' ')}`;

/** The code a mutant replaces, from the report's copy of the source (lines and columns count from 1). */
function originalOf(source, { start, end }) {
  const lines = source.split('\n').slice(start.line - 1, end.line);
  lines[lines.length - 1] = lines[lines.length - 1].slice(0, end.column - 1);
  lines[0] = lines[0].slice(start.column - 1);
  return lines.join('\n');
}

/** Whether EQUIVALENT.md lists this mutant: by file or file:line, by its replacement alone or with the code it replaces. */
const isListed = (equivalents, result) =>
  [result.fileName, `${result.fileName}:${result.location.start.line}`].some(
    (file) =>
      equivalents.has(key(file, result.mutatorName, result.replacement ?? '')) ||
      equivalents.has(key(file, result.mutatorName, result.replacement ?? '', result.original)),
  );

const words = process.argv.slice(2);
const chosen = words.length === 0 ? MODULES : MODULES.filter((module) => words.some((word) => module.name.includes(word)));
if (chosen.length === 0) {
  console.error(`no module matches ${words.join(' ')}; modules: ${MODULES.map((module) => module.name).join(', ')}`);
  process.exit(2);
}

const equivalents = await readEquivalents();
await mkdir('reports/mutation', { recursive: true });
const rows = [];
const unexplained = [];
for (const module of chosen) {
  const started = Date.now();
  // One Stryker process per module, on a configuration file of its own (the shared one, plus what
  // this module mutates, its tests and where its report goes).
  const report = `reports/mutation/${module.name}.json`;
  const configFile = `reports/mutation/${module.name}.config.mjs`;
  await writeFile(
    configFile,
    `import shared from '../../stryker.config.mjs';\nexport default ${JSON.stringify({ mutate: module.mutate, testFiles: module.tests, jsonReporter: { fileName: report } })
      .replace(/^\{/, '{ ...shared, ')};\n`,
  );
  const run = spawnSync('npx', ['stryker', 'run', configFile], { stdio: 'inherit' });
  if (run.status !== 0) {
    console.error(`stryker failed on ${module.name} (exit ${run.status})`);
    process.exit(1);
  }
  const results = Object.entries(JSON.parse(await readFile(report, 'utf8')).files).flatMap(([fileName, file]) =>
    file.mutants.map((mutant) => ({ ...mutant, fileName, original: originalOf(file.source, mutant.location) })),
  );
  const count = (status) => results.filter((result) => result.status === status).length;
  const [killed, survived, timedOut, noCoverage] = ['Killed', 'Survived', 'Timeout', 'NoCoverage'].map(count);
  // Module-level code (ignoreStatic): not run by the vitest runner, so listed for a check by hand.
  const statics = results.filter((result) => result.status === 'Ignored' && result.static);
  const detected = killed + timedOut;
  const valid = detected + survived + noCoverage;
  const score = valid === 0 ? 100 : (100 * detected) / valid;
  const shown = (result) => `${result.fileName}:${result.location.start.line} ${result.mutatorName} \`${result.original}\` → \`${result.replacement}\``;
  for (const result of results.filter((r) => r.status === 'Survived' || r.status === 'NoCoverage')) {
    if (!isListed(equivalents, result)) unexplained.push(`${shown(result)} (${result.status})`);
  }
  for (const result of statics) {
    if (!isListed(equivalents, result)) unexplained.push(`${shown(result)} (static)`);
  }
  rows.push({
    module: module.mutate.join(' '),
    mutants: valid,
    killed,
    survived,
    timed_out: timedOut,
    no_coverage: noCoverage,
    static: statics.length,
    score: `${score.toFixed(1)}%`,
    minutes: ((Date.now() - started) / 60_000).toFixed(1),
  });
}

const summary = rows.map((row) => `| ${Object.values(row).join(' | ')} |`).join('\n');
const table = `| ${Object.keys(rows[0]).join(' | ')} |\n|${Object.keys(rows[0]).map(() => '---').join('|')}|\n${summary}\n`;
await writeFile('reports/mutation/summary.md', table);
console.log(`\n${table}`);
if (unexplained.length > 0) console.log(`Survivors not in test/mutation/EQUIVALENT.md:\n  ${unexplained.join('\n  ')}`);
const low = rows.filter((row) => Number.parseFloat(row.score) < MIN_SCORE);
process.exit(low.length > 0 || unexplained.length > 0 ? 1 : 0);
