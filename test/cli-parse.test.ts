import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMANDS } from '../src/cli/commands.js';
import { type ControlRequest, listenControlSocket } from '../src/embedded/control-socket.js';
import { createLogger } from '../src/logger.js';
import { runCliWithoutDatabase } from './helpers/cli.js';

/**
 * A command line its command does not take is refused from the command table alone, before
 * anything runs. Every case runs without DATABASE_URL: had runCli gone on, it would have read the
 * configuration and opened, that is created, the embedded database (pgdata and a key-encryption
 * key) in DATA_DIR, inside a directory that must stay empty; or, with a server on DATA_DIR, sent
 * the line to it over the control socket. The lines are made from each command's usage, as its
 * --help prints it.
 */
const SECRET = 'Zq8-never-echo-this-7Kp';
/** Every command but `help`, whose words readCommandLine reads itself (test/cli-help.test.ts). */
const NAMES = [...COMMANDS.keys()].filter((name) => name !== 'help');
const hint = (name: string) => `(see tessera ${name} --help)\n`;
const TOO_MANY = 'too many arguments (passwords and secrets are read from standard input, never from arguments)';

/** A valid value for each argument and option value, by the name the usage gives it. */
const VALID: Readonly<Record<string, string>> = {
  username: 'alice',
  USERNAME: 'alice',
  scope: 'profile',
  S: 'profile',
  role: 'support',
  R: 'support',
  client_id: 'web',
  ID: 'web',
  NAME: 'Web',
  TYPE: 'password',
  AUD: 'https://orders.example',
  TEXT: 'Support desk',
  N: '10',
  'N|off': 'off',
  URI: 'https://app.example.com/callback',
  EMAIL: 'alice@example.com',
  'NAME=PATH': 'tenant=attributes.tenant',
  'on|off': 'on',
  'NAME=VALUE': 'tenant=acme',
  JSON: '{"tenant":"acme"}',
  EVENT: 'login_failed',
  KIND: 'cli',
  TIME: '2026-01-02T03:04:05Z',
  CURSOR: 'opaque',
};

function valid(name: string): string {
  const value = VALID[name];
  if (value === undefined) throw new Error(`give ${name} a valid value in VALID`);
  return value;
}

const temporary: string[] = [];
async function fresh(): Promise<string> {
  const path = await mkdtemp(join(tmpdir(), 'tessera-parse-'));
  temporary.push(path);
  return path;
}
afterAll(async () => {
  await Promise.all(temporary.map((path) => rm(path, { recursive: true, force: true })));
});

const cli = runCliWithoutDatabase;

interface Usage {
  /** Its arguments, valid (`alice`). */
  readonly args: readonly string[];
  /** How the usage names its last argument: `<username>`, `<scope>...`. */
  readonly last: string | undefined;
  /** Its required options and every option that reads standard input, valid: a refusal then also shows stdin was left unread. */
  readonly options: readonly string[];
  /** Every option its help lists, each with a valid value. */
  readonly listed: readonly (readonly string[])[];
}

/** What `tessera <name> --help` says the command takes. */
async function usageOf(name: string): Promise<Usage> {
  const { stdout } = await cli(await fresh(), [...name.split(' '), '--help']);
  const line = stdout.slice(`Usage: tessera ${name}`.length, stdout.indexOf('\n\n')).replace(/\s+/g, ' ');
  const words = [...line.matchAll(/(\[)?(--[a-z-]+|<([a-z_]+)>)(?: ([A-Z|a-z]+))?\]?(\.\.\.)?/g)];
  const args = words.filter(([, , , arg]) => arg !== undefined);
  const options = words.filter(([, optional, word]) => word!.startsWith('--') && (optional === undefined || word!.endsWith('-stdin')));
  const withValue = (flag: string, value: string | undefined) => (value === undefined ? [flag] : [flag, valid(value)]);
  return {
    args: args.map(([, , , arg]) => valid(arg!)),
    last: args.at(-1)?.[0].trim(),
    options: options.flatMap(([, , flag, , value]) => withValue(flag!, value)),
    listed: stdout
      .slice(stdout.indexOf('\nOptions:\n'))
      .split('\n')
      .map((text) => /^ {2}(--[a-z-]+)(?: (\S+))?/.exec(text))
      .filter((match) => match !== null)
      .map(([, flag, value]) => withValue(flag!, value)),
  };
}

/** The lines a command refuses, with what it says: an unknown option, an argument too many, one too few. */
async function refusals(name: string): Promise<[string[], string][]> {
  const words = name.split(' ');
  const { args, last, options, listed } = await usageOf(name);
  const variadic = last?.endsWith('...') ?? false;
  // Commands that take something are reminded where secrets go; serve and migrate take nothing.
  const tooMany = args.length + listed.length > 0 ? TOO_MANY : 'too many arguments';
  return [
    [[...words, ...args, ...options, '--bogus'], 'unknown or malformed option --bogus'],
    // A typo of an option that takes a value (`--scopes profile`); the value may be a secret.
    [[...words, ...args, ...options, `--bogus=${SECRET}`], 'unknown or malformed option --bogus'],
    ...(variadic ? [] : [[[...words, ...args, SECRET, ...options], tooMany] as [string[], string]]),
    ...(last === undefined
      ? []
      : [[[...words, ...args.slice(0, -1), ...options], variadic ? `name at least one ${last.slice(1, -4)}` : `missing ${last}`] as [string[], string]]),
  ];
}

describe.each(NAMES)('tessera %s', (name) => {
  it('refuses an unknown option, an argument too many or too few: exit 2, nothing read, created or started', async () => {
    const dir = await fresh();
    for (const [argv, message] of await refusals(name)) {
      expect(await cli(dir, argv), argv.join(' ')).toEqual({ code: 2, stdout: '', stderr: `error: ${message}\n${hint(name)}` });
      expect(await readdir(dir), argv.join(' ')).toEqual([]);
    }
  });

  it('takes every option its help lists', async () => {
    // Each one with a --bogus after it: the refusal names --bogus, so the listed option was taken.
    const { args, options, listed } = await usageOf(name);
    const dir = await fresh();
    for (const option of listed) {
      const argv = [...name.split(' '), ...args, ...options, ...option, '--bogus'];
      expect(await cli(dir, argv), argv.join(' ')).toEqual({ code: 2, stdout: '', stderr: `error: unknown or malformed option --bogus\n${hint(name)}` });
    }
  });
});

describe('with a server on DATA_DIR', () => {
  let dir: string;
  let control: Server;
  const received: ControlRequest[] = [];

  // The real control socket, as `tessera serve` on the embedded database listens on it; it answers every request with success.
  beforeAll(async () => {
    dir = await fresh();
    await mkdir(join(dir, 'data'));
    control = await listenControlSocket(
      join(dir, 'data'),
      async (request) => {
        received.push(request);
        return { exitCode: 0, stdout: 'done by the server\n', stderr: '' };
      },
      createLogger('silent'),
    );
  });
  afterAll(async () => {
    await new Promise((resolve) => control?.close(resolve));
  });

  it('is sent only a line its command takes', async () => {
    for (const name of NAMES) {
      for (const [argv, message] of await refusals(name)) {
        expect(await cli(dir, argv), argv.join(' ')).toEqual({ code: 2, stdout: '', stderr: `error: ${message}\n${hint(name)}` });
      }
    }
    expect(received).toEqual([]);
    expect(await readdir(join(dir, 'data'))).toEqual(['control.sock']);

    // Not a server that is never asked: a good line reaches it.
    expect(await cli(dir, ['users', 'list', '--limit', '5'])).toEqual({ code: 0, stdout: 'done by the server\n', stderr: '' });
    expect(received).toEqual([{ argv: ['users', 'list', '--limit', '5'] }]);
  });
});

describe('values checked before anything runs', () => {
  it.each([
    [['users', 'list', '--limit', '0'], '--limit must be 1 to 1000'],
    [['users', 'list', '--limit', '1001'], '--limit must be 1 to 1000'],
    [['users', 'list', '--limit', 'abc'], '--limit must be 1 to 1000'],
    [['users', 'list', '--limit', '1e2'], '--limit must be 1 to 1000'],
    [['users', 'list', '--limit'], 'unknown or malformed option --limit'],
    [['users', 'create', '--password-stdin'], 'missing <username>'],
    [['users', 'create', '', '--password-stdin'], 'missing <username>'],
    [['users', 'create', 'alice', '--password-stdin', '--scope', 'bad"scope'], 'not a valid scope: bad"scope'],
    [['users', 'create', 'alice', '--password-stdin', '--scopes', 'profile'], 'unknown or malformed option --scopes'],
    [['users', 'set-password', 'alice', SECRET, '--password-stdin'], TOO_MANY],
    [['users', 'grant', 'alice', 'bad scope'], 'not a valid scope: bad scope'],
    [['users', 'grant', 'alice', 'profile', ''], 'not a valid scope: '],
    [['users', 'revoke', 'alice'], 'name at least one scope'],
    [['roles', 'create', 'bad role'], 'a role name has 1 to 64 letters, digits or . _ : -'],
    [['roles', 'create', 'support', '--description', 'two\nlines'], 'a role description has at most 500 characters and no control characters'],
    [['roles', 'add-scope', 'support', 'no\\pe'], 'not a valid scope: no\\pe'],
    [['roles', 'grant', 'support'], 'missing <username>'],
    [['clients', 'create', '--rate-limit=-5'], '--rate-limit takes a whole number of requests per CLIENT_RATE_WINDOW, or off'],
    [['clients', 'create', '--rate-limit', '-5'], 'unknown or malformed option --rate-limit'],
    [['clients', 'create', '--rate-limit', '0'], 'a rate limit is a whole number of requests from 1 to 1000000000, or none'],
    [['clients', 'create', '--secret-stdin', '--id', 'has space'], 'a client id has 1 to 64 letters, digits or . _ ~ - and is not shaped like a uuid'],
    [['clients', 'create', '--grant', 'implicit'], 'unknown grant type: implicit (known: password, refresh_token, client_credentials, authorization_code)'],
    [['clients', 'create', '--audience', 'two words'], 'an audience is 1 to 255 printable characters without spaces'],
    [['clients', 'create', '--name', 'two\nlines'], 'a client name has at most 200 characters and no control characters'],
    [['clients', 'create', '--default-scope', 'a"b'], 'not a valid scope: a"b'],
    [['clients', 'create', '--public'], 'a public client needs its grant types named explicitly (authorization_code, refresh_token, password)'],
    [['clients', 'create', '--public', '--grant', 'refresh_token', '--secret-stdin'], 'a public client has no secret'],
    [['clients', 'create', '--scope', 'profile', '--default-scope', 'orders:read'], 'default scopes must be allowed scopes too: orders:read'],
    [['clients', 'update', 'web'], 'nothing to change: give --rate-limit, --roles-claim, --claim, --remove-claim, --redirect-uri or --post-logout-redirect-uri'],
    [['clients', 'update', '--rate-limit', 'off'], 'missing <client_id>'],
    [['clients', 'update', 'web', '--rate-limit', 'none'], '--rate-limit takes a whole number of requests per CLIENT_RATE_WINDOW, or off'],
    [['clients', 'rotate-secret', '--secret-stdin'], 'missing <client_id>'],
    [['keys', 'rotate', 'extra'], TOO_MANY],
  ])('%j: exit 2, nothing read or created', async (argv, message) => {
    const dir = await fresh();
    expect(await cli(dir, argv)).toEqual({ code: 2, stdout: '', stderr: `error: ${message}\n${hint(argv.slice(0, 2).join(' '))}` });
    expect(await readdir(dir)).toEqual([]);
  });
});
