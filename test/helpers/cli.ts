import { join } from 'node:path';
import { runCli } from '../../src/cli/run.js';
import type { Clock } from '../../src/clock.js';
import type { Env } from '../../src/config.js';
import { watchLogOutput } from './logs.js';
import { noteSecret } from './secrets.js';

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * `tessera <argv>` in-process with DATA_DIR inside `dir` and no DATABASE_URL, so that anything that
 * reached the database would create the embedded one there; reading standard input fails it.
 */
export async function runCliWithoutDatabase(dir: string, argv: readonly string[]): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, { DATA_DIR: join(dir, 'data') }, {
    readStdin: () => Promise.reject(new Error(`tessera ${argv.join(' ')} read stdin`)),
    stdout: (text) => (stdout += text),
    stderr: (text) => (stderr += text),
  });
  return { code, stdout, stderr };
}

/**
 * `tessera <argv>` in-process against `env` (a test database), on `clock` (the service's, so that
 * both read one host's time). Without `stdin` the command must not read standard input. Stderr
 * joins the file's logs for the secrets check (test/logs.setup.ts).
 */
export async function runCliOn(
  env: Env,
  argv: readonly string[],
  options: { stdin?: string; clock?: Clock } = {},
): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  watchLogOutput(`tessera ${argv.join(' ')}`, () => stderr);
  noteSecret('stdin of a tessera command', options.stdin?.trim());
  const code = await runCli(
    argv,
    env,
    {
      readStdin: async () => {
        if (options.stdin === undefined) throw new Error(`tessera ${argv.join(' ')} read stdin unasked`);
        return options.stdin;
      },
      stdout: (text) => (stdout += text),
      stderr: (text) => (stderr += text),
    },
    options.clock,
  );
  return { code, stdout, stderr };
}
