import { join } from 'node:path';
import { runCli } from '../../src/cli/run.js';

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
