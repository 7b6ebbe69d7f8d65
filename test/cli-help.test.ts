import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMANDS } from '../src/cli/commands.js';
import { runCliWithoutDatabase } from './helpers/cli.js';
import { freePort, MAIN, runTessera, stopAll } from './helpers/process.js';

/**
 * `--help` is always safe: it answers from the command table and does nothing else. Every case
 * runs without DATABASE_URL, so anything that went further would create the embedded database
 * (and its key-encryption key) in DATA_DIR, inside a directory that must stay empty.
 */
const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
const NAMES = [...COMMANDS.keys()];
const GROUPS = [...new Set(NAMES.filter((name) => name.includes(' ')).map((name) => name.split(' ')[0]!))];

let dir: string;
const temporary: string[] = [];

beforeAll(async () => {
  dir = await fresh();
});
afterAll(async () => {
  await stopAll();
  await Promise.all(temporary.map((path) => rm(path, { recursive: true, force: true })));
});

async function fresh(): Promise<string> {
  const path = await mkdtemp(join(tmpdir(), 'tessera-help-'));
  temporary.push(path);
  return path;
}

interface Result {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `tessera <argv>` in-process; it must not read stdin, and must leave `dir` as empty as it found it. */
async function cli(argv: readonly string[]): Promise<Result> {
  const result = await runCliWithoutDatabase(dir, argv);
  expect(await readdir(dir)).toEqual([]);
  return result;
}

/** The start of the usage of `name` ('' for tessera itself): its words, then its arguments or the end of the line. */
function usageOf(name: string): RegExp {
  const words = name === '' ? ' <command>' : ` ${name}`;
  return new RegExp(`^Usage: tessera${words.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}[ \\n]`);
}

describe('--help on every command, in-process', () => {
  const cases = [
    ...NAMES.map((name) => ({ name, words: name.split(' ') })),
    ...GROUPS.map((group) => ({ name: group, words: [group] })),
    { name: '', words: [] },
  ];

  it.each(cases)('tessera $name: every way of asking prints the same usage on stdout and exits 0', async ({ name, words }) => {
    const help = await cli([...words, '--help']);
    expect(help.code).toBe(0);
    expect(help.stderr).toBe('');
    expect(help.stdout).toMatch(usageOf(name));
    for (const line of help.stdout.split('\n')) expect(line.length, line).toBeLessThanOrEqual(80);
    const askings = [
      [...words, '-h'],
      ['--help', ...words],
      ['help', ...words],
      [...words, '--json', '-h', '--', 'after'],
      // After a command's words, --help wins over anything wrong that follows them.
      ...(COMMANDS.has(name) ? [[...words, 'alice', 'S3cret', '--bogus', '--help']] : []),
    ];
    for (const argv of askings) expect(await cli(argv), argv.join(' ')).toEqual(help);
  });

  it('a --help after `--` is an argument, not a question', async () => {
    // An option after the terminator: serve still refuses it, and nothing starts.
    expect(await cli(['serve', '--', '--help'])).toEqual({ code: 2, stdout: '', stderr: 'error: too many arguments\n(see tessera serve --help)\n' });
  });

  it('--version and -V print the version of package.json', async () => {
    expect(await cli(['--version'])).toEqual({ code: 0, stdout: `${VERSION}\n`, stderr: '' });
    expect(await cli(['-V'])).toEqual({ code: 0, stdout: `${VERSION}\n`, stderr: '' });
  });

  it('without a command, or a group without a subcommand, the usage goes to stderr with exit 2', async () => {
    expect(await cli([])).toEqual({ code: 2, stdout: '', stderr: (await cli(['--help'])).stdout });
    expect(await cli(['users'])).toEqual({ code: 2, stdout: '', stderr: (await cli(['users', '--help'])).stdout });
  });

  it.each([
    [['bogus'], 'unknown command "bogus"', 'tessera --help'],
    [['bogus', '--help'], 'unknown command "bogus"', 'tessera --help'],
    [['help', 'bogus'], 'unknown command "bogus"', 'tessera --help'],
    [['constructor'], 'unknown command "constructor"', 'tessera --help'],
    [['--bogus=S3cret'], 'unknown option --bogus', 'tessera --help'],
    [['users', 'bogus'], 'unknown command "users bogus"', 'tessera users --help'],
    [['users', 'bogus', '-h'], 'unknown command "users bogus"', 'tessera users --help'],
    [['help', 'users', 'bogus'], 'unknown command "users bogus"', 'tessera users --help'],
    [['users', '__proto__', 'S3cret'], 'unknown command "users __proto__"', 'tessera users --help'],
    [['help', 'users', 'create', 'alice'], 'help takes a command and at most one subcommand', 'tessera help --help'],
    [['serve', '--bogus'], 'unknown or malformed option --bogus', 'tessera serve --help'],
    [['serve', 'extra'], 'too many arguments', 'tessera serve --help'],
    [['serve', '--json'], 'unknown or malformed option --json', 'tessera serve --help'],
    [['migrate', 'extra'], 'too many arguments', 'tessera migrate --help'],
    [['migrate', '--bogus'], 'unknown or malformed option --bogus', 'tessera migrate --help'],
  ])('%j: exit 2, pointing to the help, nothing read or created', async (argv, message, help) => {
    const result = await cli(argv);
    expect(result).toEqual({ code: 2, stdout: '', stderr: `error: ${message}\n(see ${help})\n` });
    expect(result.stderr).not.toContain('S3cret');
  });
});

describe('the built tessera', () => {
  let port: number;
  let holder: Server;

  // A serve that started anyway would fail to listen here (and it would have made DATA_DIR first).
  beforeAll(async () => {
    port = await freePort();
    holder = createServer();
    await new Promise<void>((resolve) => holder.listen(port, '127.0.0.1', resolve));
  });
  afterAll(async () => {
    await new Promise((resolve) => holder?.close(resolve));
  });

  /** `tessera <argv>` in a fresh empty directory, without DATABASE_URL; the directory stays empty. */
  async function run(argv: readonly string[]): Promise<Result> {
    const cwd = await fresh();
    const env = { PATH: process.env['PATH'] ?? '', DATA_DIR: join(cwd, 'data'), PORT: String(port), HOST: '127.0.0.1' };
    const result = await runTessera(argv, env, undefined, cwd);
    expect(await readdir(cwd)).toEqual([]);
    return result;
  }

  describe.concurrent('answers without doing anything else', () => {
    it.each([
      [['serve', '--help'], 'serve'],
      [['serve', '-h'], 'serve'],
      [['migrate', '--help'], 'migrate'],
      [['users', 'create', 'alice', '--help'], 'users create'],
      [['help', 'serve'], 'serve'],
      [['--help'], ''],
    ])('%j: its usage on stdout, exit 0', async (argv, name) => {
      const result = await run(argv);
      expect(result).toMatchObject({ code: 0, stderr: '' });
      expect(result.stdout).toMatch(usageOf(name));
    });

    it('--version', async () => {
      expect(await run(['--version'])).toEqual({ code: 0, stdout: `${VERSION}\n`, stderr: '' });
    });

    it.each([
      [['serve', '--bogus'], 'unknown or malformed option --bogus', 'serve'],
      [['migrate', 'extra'], 'too many arguments', 'migrate'],
      // A database command refuses a line it does not take before it opens (creates) the embedded database.
      [['users', 'create', 'alice', '--password-stdin', '--scopes', 'x'], 'unknown or malformed option --scopes', 'users create'],
      [['clients', 'update'], 'missing <client_id>', 'clients update'],
    ])('%j: exit 2, nothing started', async (argv, message, name) => {
      expect(await run(argv)).toEqual({ code: 2, stdout: '', stderr: `error: ${message}\n(see tessera ${name} --help)\n` });
    });
  });

  it('is executable after the build (npm test builds first), so it runs without `node` in front', async () => {
    expect((await stat(MAIN)).mode & 0o111).toBe(0o111);
    const { stdout } = await promisify(execFile)(MAIN, ['--version'], { cwd: await fresh() });
    expect(stdout).toBe(`${VERSION}\n`);
  });
});
