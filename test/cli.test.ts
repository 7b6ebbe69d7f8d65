import { createHash, randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/run.js';
import type { Env } from '../src/config.js';
import type { User } from '../src/db/schema.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { watchLogOutput } from './helpers/logs.js';
import { noteSecret } from './helpers/secrets.js';
import { basicAuth as basic, createTestUser, startTestService, type TestService } from './helpers/service.js';

let database: TestDatabase;
let service: TestService;
let env: Env;

beforeAll(async () => {
  database = await createTestDatabase();
  env = { DATABASE_URL: database.url, KEY_ENCRYPTION_KEYS: randomBytes(32).toString('base64') };
  service = await startTestService(database);
});
afterAll(async () => {
  await service?.close();
  await database?.drop();
});

interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * `tessera <argv>` in-process, as bin/main.js runs it. Without `stdin` the command must not read
 * standard input at all: readStdin then fails the test.
 */
async function cli(argv: readonly string[], options: { stdin?: string; env?: Env } = {}): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  // One-shot commands log to stderr: it joins the file's logs for the secrets check (test/logs.setup.ts),
  // with what came in on stdin (a password, a client secret) among the secrets. Stdout is output, not a log.
  watchLogOutput(`tessera ${argv.join(' ')}`, () => stderr);
  noteSecret('stdin of a tessera command', options.stdin?.trim());
  const code = await runCli(argv, options.env ?? env, {
    readStdin: async () => {
      if (options.stdin === undefined) throw new Error(`tessera ${argv.join(' ')} read stdin unasked`);
      return options.stdin;
    },
    stdout: (text) => {
      stdout += text;
    },
    stderr: (text) => {
      stderr += text;
    },
  }, service.clock); // the service's clock: one host's time for both, as on one machine
  return { code, stdout, stderr };
}

/** How a usage error ends: a pointer to the command's own help. */
const hint = (command: string) => `(see tessera ${command} --help)\n`;
const strongPassword = () => `Tessera-${randomBytes(8).toString('hex')}`;
const sha256 = (text: string) => `sha256:${createHash('sha256').update(text, 'utf8').digest('hex')}`;
const token = () => request(service.app).post('/token').type('form');

async function findUser(username: string): Promise<User | undefined> {
  return database.db.selectFrom('users').selectAll().where('username', '=', username).executeTakeFirst();
}

async function requireUser(username: string): Promise<User> {
  const user = await findUser(username);
  if (user === undefined) throw new Error(`expected user ${username} in the database`);
  return user;
}

async function directScopes(userId: string): Promise<string[]> {
  const rows = await database.db.selectFrom('user_scopes').select('scope').where('user_id', '=', userId).orderBy('scope').execute();
  return rows.map((row) => row.scope);
}

async function userRoles(userId: string): Promise<string[]> {
  const rows = await database.db.selectFrom('user_roles').select('role_name').where('user_id', '=', userId).orderBy('role_name').execute();
  return rows.map((row) => row.role_name);
}

async function roleScopes(role: string): Promise<string[]> {
  const rows = await database.db.selectFrom('role_scopes').select('scope').where('role_name', '=', role).orderBy('scope').execute();
  return rows.map((row) => row.scope);
}

/** Creates a user through the CLI with a known password. */
async function createUser(username: string, extra: string[] = []): Promise<User & { password: string }> {
  const password = strongPassword();
  const result = await cli(['users', 'create', username, '--password-stdin', ...extra], { stdin: `${password}\n` });
  expect(result).toMatchObject({ code: 0, stderr: '' });
  return { ...(await requireUser(username)), password };
}

/**
 * A user for a test that is about something else: made directly with the service's (cheap) hasher,
 * not through the CLI at its production Argon2 parameters.
 */
async function fixtureUser(username: string, scopes: string[] = []): Promise<User & { password: string }> {
  const user = await createTestUser(service, { username, password: strongPassword(), scopes });
  return { ...(await requireUser(user.username)), password: user.password };
}

/** Creates a client through the CLI and returns the secret it printed (confidential clients). */
async function createClient(id: string, extra: string[] = []): Promise<string | undefined> {
  const result = await cli(['clients', 'create', '--id', id, ...extra, '--json']);
  expect(result).toMatchObject({ code: 0, stderr: '' });
  return (JSON.parse(result.stdout) as { client_secret?: string }).client_secret;
}

/** The `key: value` lines that `print` writes, as a record. */
function parseRecord(stdout: string): Record<string, string> {
  return Object.fromEntries(
    stdout
      .trimEnd()
      .split('\n')
      .map((line) => {
        const colon = line.indexOf(': ');
        return [line.slice(0, colon), line.slice(colon + 2)];
      }),
  );
}

function occurrences(haystack: string, needle: string): number {
  return haystack.split(needle).length - 1;
}

describe('tessera users create', () => {
  it('reads the password from stdin and stores only an Argon2id hash of it', async () => {
    const password = strongPassword();
    const result = await cli(['users', 'create', 'Dora', '--password-stdin', '--scope', 'profile'], { stdin: `${password}\n` });

    const user = await requireUser('dora');
    expect(result).toEqual({ code: 0, stdout: `id: ${user.id}\nusername: dora\n`, stderr: '' });
    expect(user.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(user.disabled).toBe(false);
    // The CLI hashes at the configured (here: default OWASP) parameters, not the cheap test ones.
    expect(user.password_hash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    expect(user.password_hash).not.toContain(password);
    // The newline `echo` adds is not part of the password.
    expect(await service.deps.passwords.verify(user.password_hash, password)).toBe(true);
    expect(await service.deps.passwords.verify(user.password_hash, `${password}\n`)).toBe(false);
    expect(await directScopes(user.id)).toEqual(['profile']);
  });

  it('generates a password when none is given and prints it exactly once', async () => {
    const result = await cli(['users', 'create', 'erin', '--json']);

    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    const printed = JSON.parse(result.stdout) as { id: string; username: string; password: string };
    const user = await requireUser('erin');
    expect(printed).toEqual({ id: user.id, username: 'erin', password: expect.stringMatching(/^[A-Za-z0-9_-]{22}$/) });
    expect(occurrences(result.stdout, printed.password)).toBe(1);
    expect(user.password_hash).toMatch(/^\$argon2id\$/);
    expect(await service.deps.passwords.verify(user.password_hash, printed.password)).toBe(true);
  });

  it('normalises usernames, so a look-alike of an existing user is refused', async () => {
    const created = await cli(['users', 'create', 'Alice', '--password-stdin'], { stdin: strongPassword() });
    const alice = await requireUser('alice');
    expect(created).toEqual({ code: 0, stdout: `id: ${alice.id}\nusername: alice\n`, stderr: '' });

    for (const lookAlike of ['ａｌｉｃｅ', 'ALICE', 'alice']) {
      const result = await cli(['users', 'create', lookAlike, '--password-stdin'], { stdin: strongPassword() });
      expect(result).toEqual({ code: 1, stdout: '', stderr: 'error: a user with this username already exists\n' });
    }
    const rows = await database.db.selectFrom('users').select('id').where('username', '=', 'alice').execute();
    expect(rows).toEqual([{ id: alice.id }]);
  });

  it('refuses weak, common or username-equal passwords and creates nothing', async () => {
    const cases: Array<[string, string]> = [
      ['password123', 'error: the password is too common; choose another\n'],
      ['Iloveyou1', 'error: the password is too common; choose another\n'],
      ['short', 'error: the password must have at least 8 characters\n'],
      ['frankfrank', 'error: the password must not be the username\n'],
      ['        ', 'error: the password must not be only spaces\n'],
    ];
    for (const [password, stderr] of cases) {
      const result = await cli(['users', 'create', 'FrankFrank', '--password-stdin'], { stdin: `${password}\n` });
      expect(result).toEqual({ code: 1, stdout: '', stderr });
    }
    expect(await findUser('frankfrank')).toBeUndefined();
  });

  it('refuses a username that normalises to nothing usable', async () => {
    const result = await cli(['users', 'create', 'gina smith', '--password-stdin'], { stdin: strongPassword() });
    expect(result).toEqual({
      code: 1,
      stdout: '',
      stderr: 'error: the username must have 1 to 64 characters, no spaces or control characters\n',
    });
    expect(await findUser('gina smith')).toBeUndefined();
  });

  it('is a usage error when --password-stdin gets an empty stdin', async () => {
    const result = await cli(['users', 'create', 'hank', '--password-stdin'], { stdin: '\n' });
    expect(result).toEqual({ code: 2, stdout: '', stderr: `error: --password-stdin: standard input was empty\n${hint('users create')}` });
    expect(await findUser('hank')).toBeUndefined();
  });

  it('refuses an invalid --scope as a usage error', async () => {
    const result = await cli(['users', 'create', 'hank', '--password-stdin', '--scope', 'bad"scope'], { stdin: strongPassword() });
    expect(result).toEqual({ code: 2, stdout: '', stderr: `error: not a valid scope: bad"scope\n${hint('users create')}` });
    expect(await findUser('hank')).toBeUndefined();
  });

  it('fails on an unknown --role without leaving a half-created user behind', async () => {
    const result = await cli(['users', 'create', 'ivan', '--password-stdin', '--role', 'nosuchrole'], { stdin: strongPassword() });
    // The user must not exist: nobody was told a password for it (the generated one is never printed on failure).
    expect(await findUser('ivan')).toBeUndefined();
    expect(result).toEqual({ code: 1, stdout: '', stderr: 'error: no such role: nosuchrole\n' });
  });
});

describe('secrets on the command line', () => {
  const SECRET = 'Zq8-never-echo-this-7Kp';
  /** Whose password set-password must leave as it was. */
  beforeAll(async () => {
    await fixtureUser('cmdline');
  });

  it.each([
    [['users', 'create', 'jack', '--password', SECRET], '--password'],
    [['users', 'create', 'jack', `--password=${SECRET}`], '--password'],
    [['users', 'set-password', 'cmdline', '--password', SECRET], '--password'],
    [['users', 'create', 'jack', '-p', SECRET], '-p'],
    [['clients', 'create', '--id', 'jackapp', '--secret', SECRET], '--secret'],
    [['clients', 'create', '--id', 'jackapp', `--client-secret=${SECRET}`], '--client-secret'],
    [['clients', 'rotate-secret', 'jackapp', '--secret', SECRET], '--secret'],
  ])('%j is a usage error that never echoes the secret', async (argv, option) => {
    const before = await requireUser('cmdline');
    const result = await cli(argv);

    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr.startsWith(`error: unknown or malformed option ${option}\n`)).toBe(true);
    expect(result.stderr.endsWith(hint(argv.slice(0, 2).join(' ')))).toBe(true);
    expect(result.stderr).not.toContain(SECRET);
    expect(await findUser('jack')).toBeUndefined();
    expect(await database.db.selectFrom('clients').select('id').where('id', '=', 'jackapp').executeTakeFirst()).toBeUndefined();
    expect((await requireUser('cmdline')).password_hash).toBe(before.password_hash);
  });
});

describe('tessera users list', () => {
  it('lists users with their roles and direct scopes as JSON', async () => {
    const kate = await createUser('kate', ['--scope', 'orders:read', '--scope', 'profile']);
    const result = await cli(['users', 'list', '--json']);

    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    const rows = JSON.parse(result.stdout) as Array<Record<string, unknown>>;
    const usernames = rows.map((row) => row['username']);
    expect(usernames).toEqual([...usernames].sort());
    expect(rows.find((row) => row['username'] === 'kate')).toEqual({
      id: kate.id,
      username: 'kate',
      disabled: false,
      email: null,
      roles: [],
      scopes: ['orders:read', 'profile'],
      created_at: kate.created_at.toISOString(),
    });
    expect(result.stdout).not.toContain('argon2');
    expect(result.stdout).not.toContain('password');
  });

  it('prints an aligned table by default', async () => {
    const kent = await fixtureUser('kent', ['orders:read', 'profile']);
    const result = await cli(['users', 'list']);

    expect(result.code).toBe(0);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID +USERNAME +DISABLED +EMAIL +ROLES +SCOPES +CREATED_AT$/);
    const row = lines.find((line) => line.includes(kent.id));
    expect(row?.split(/ {2,}/)).toEqual([kent.id, 'kent', 'false', '-', '-', 'orders:read,profile', kent.created_at.toISOString()]);
  });

  it('pages with --limit and --after', async () => {
    for (const username of ['page1', 'page2', 'page3']) await fixtureUser(username);
    const all = (JSON.parse((await cli(['users', 'list', '--json'])).stdout) as Array<{ username: string }>).map((row) => row.username);
    expect(all.length).toBeGreaterThanOrEqual(3);
    const first = await cli(['users', 'list', '--json', '--limit', '2']);
    expect((JSON.parse(first.stdout) as Array<{ username: string }>).map((row) => row.username)).toEqual(all.slice(0, 2));
    const next = await cli(['users', 'list', '--json', '--limit', '2', '--after', all[1]!]);
    expect((JSON.parse(next.stdout) as Array<{ username: string }>).map((row) => row.username)).toEqual(all.slice(2, 4));
  });

  it.each(['0', '1001', 'ten', '1.5'])('refuses --limit %s', async (limit) => {
    expect(await cli(['users', 'list', '--limit', limit])).toEqual({
      code: 2,
      stdout: '',
      stderr: `error: --limit must be 1 to 1000\n${hint('users list')}`,
    });
  });
});

describe('tessera users disable|enable|delete', () => {
  it('disables and enables a user', async () => {
    const lena = await createUser('lena');
    const disabled = await cli(['users', 'disable', 'LENA']);
    expect(disabled).toEqual({ code: 0, stdout: `id: ${lena.id}\nusername: lena\ndisabled: true\nsessions_ended: 0\n`, stderr: '' });
    expect((await requireUser('lena')).disabled).toBe(true);

    const enabled = await cli(['users', 'enable', 'lena', '--json']);
    expect(enabled).toEqual({ code: 0, stdout: `${JSON.stringify({ id: lena.id, username: 'lena', disabled: false })}\n`, stderr: '' });
    expect((await requireUser('lena')).disabled).toBe(false);
  });

  it('deletes a user and their direct scopes', async () => {
    const mona = await createUser('mona', ['--scope', 'profile']);
    const result = await cli(['users', 'delete', 'mona']);
    expect(result).toEqual({ code: 0, stdout: `id: ${mona.id}\nusername: mona\ndeleted: true\n`, stderr: '' });
    expect(await findUser('mona')).toBeUndefined();
    expect(await directScopes(mona.id)).toEqual([]);

    expect(await cli(['users', 'delete', 'mona'])).toEqual({ code: 1, stdout: '', stderr: 'error: no such user: mona\n' });
  });

  it.each(['disable', 'enable', 'delete', 'set-password'])('users %s of an unknown user fails with exit 1', async (command) => {
    expect(await cli(['users', command, 'nobody'])).toEqual({ code: 1, stdout: '', stderr: 'error: no such user: nobody\n' });
  });

  it('needs a username', async () => {
    expect(await cli(['users', 'disable'])).toEqual({ code: 2, stdout: '', stderr: `error: missing <username>\n${hint('users disable')}` });
  });
});

describe('tessera users set-password', () => {
  it('sets a password from stdin', async () => {
    const nina = await createUser('nina');
    const password = strongPassword();
    service.clock.advance(1000);
    const result = await cli(['users', 'set-password', 'nina', '--password-stdin'], { stdin: `${password}\r\n` });

    expect(result).toEqual({ code: 0, stdout: `id: ${nina.id}\nusername: nina\nsessions_ended: 0\n`, stderr: '' });
    const after = await requireUser('nina');
    expect(after.password_hash).toMatch(/^\$argon2id\$/);
    expect(after.password_hash).not.toBe(nina.password_hash);
    expect(await service.deps.passwords.verify(after.password_hash, password)).toBe(true);
    expect(await service.deps.passwords.verify(after.password_hash, nina.password)).toBe(false);
    expect(after.password_changed_at.getTime()).toBeGreaterThan(nina.password_changed_at.getTime());
  });

  it('generates a password when none is given and prints it once', async () => {
    const nils = await fixtureUser('nils');
    const result = await cli(['users', 'set-password', 'nils', '--json']);

    expect(result.code).toBe(0);
    const printed = JSON.parse(result.stdout) as { id: string; username: string; password: string };
    expect(printed).toEqual({ id: nils.id, username: 'nils', sessions_ended: 0, password: expect.stringMatching(/^[A-Za-z0-9_-]{22}$/) });
    expect(occurrences(result.stdout, printed.password)).toBe(1);
    const after = await requireUser('nils');
    expect(await service.deps.passwords.verify(after.password_hash, printed.password)).toBe(true);
    expect(await service.deps.passwords.verify(after.password_hash, nils.password)).toBe(false);
  });

  it('refuses a common password and keeps the old one', async () => {
    const before = await fixtureUser('nora');
    const result = await cli(['users', 'set-password', 'nora', '--password-stdin'], { stdin: 'qwertyuiop\n' });
    expect(result).toEqual({ code: 1, stdout: '', stderr: 'error: the password is too common; choose another\n' });
    expect((await requireUser('nora')).password_hash).toBe(before.password_hash);
  });
});

describe('tessera users grant|revoke', () => {
  it('grants and revokes direct scopes', async () => {
    const olga = await createUser('olga', ['--scope', 'profile']);
    const granted = await cli(['users', 'grant', 'olga', 'orders:read', 'orders:write', 'orders:read']);
    expect(granted).toEqual({ code: 0, stdout: `id: ${olga.id}\nusername: olga\nscopes: orders:read orders:write profile\n`, stderr: '' });
    expect(await directScopes(olga.id)).toEqual(['orders:read', 'orders:write', 'profile']);

    const revoked = await cli(['users', 'revoke', 'olga', 'orders:write', 'never-granted', '--json']);
    expect(revoked).toEqual({
      code: 0,
      stdout: `${JSON.stringify({ id: olga.id, username: 'olga', scopes: ['orders:read', 'profile'] })}\n`,
      stderr: '',
    });
    expect(await directScopes(olga.id)).toEqual(['orders:read', 'profile']);
  });

  it('needs at least one valid scope', async () => {
    const oscar = await fixtureUser('oscar', ['profile']);
    expect(await cli(['users', 'grant', 'oscar'])).toEqual({ code: 2, stdout: '', stderr: `error: name at least one scope\n${hint('users grant')}` });
    expect(await cli(['users', 'revoke', 'oscar', 'a b'])).toEqual({ code: 2, stdout: '', stderr: `error: not a valid scope: a b\n${hint('users revoke')}` });
    expect(await cli(['users', 'grant', 'nobody', 'profile'])).toEqual({ code: 1, stdout: '', stderr: 'error: no such user: nobody\n' });
    expect(await directScopes(oscar.id)).toEqual(['profile']);
  });
});

describe('tessera roles', () => {
  /** A role for a test that is about something else. */
  async function createRole(name: string, scopes: string[], description?: string): Promise<void> {
    const args = ['roles', 'create', name, ...scopes.flatMap((scope) => ['--scope', scope]), ...(description === undefined ? [] : ['--description', description])];
    expect(await cli(args)).toMatchObject({ code: 0, stderr: '' });
  }

  it('creates a role with scopes and a description', async () => {
    const result = await cli(['roles', 'create', 'support', '--scope', 'tickets:read', '--scope', 'tickets:write', '--description', 'Support desk']);
    expect(result).toEqual({ code: 0, stdout: 'role: support\nscopes: tickets:read tickets:write\n', stderr: '' });
    expect(await database.db.selectFrom('roles').select(['name', 'description']).where('name', '=', 'support').execute()).toEqual([
      { name: 'support', description: 'Support desk' },
    ]);
    expect(await roleScopes('support')).toEqual(['tickets:read', 'tickets:write']);
  });

  it('refuses a duplicate, a bad name and a bad scope', async () => {
    await createRole('taken', ['tickets:read'], 'Taken');
    expect(await cli(['roles', 'create', 'taken'])).toEqual({ code: 1, stdout: '', stderr: 'error: the role taken already exists\n' });
    expect(await database.db.selectFrom('roles').select('description').where('name', '=', 'taken').execute()).toEqual([{ description: 'Taken' }]);
    expect(await roleScopes('taken')).toEqual(['tickets:read']);
    expect(await cli(['roles', 'create', 'bad role'])).toEqual({
      code: 2,
      stdout: '',
      stderr: `error: a role name has 1 to 64 letters, digits or . _ : -\n${hint('roles create')}`,
    });
    expect(await cli(['roles', 'create', 'billing', '--scope', 'ok', '--scope', 'no\\pe'])).toEqual({
      code: 2,
      stdout: '',
      stderr: `error: not a valid scope: no\\pe\n${hint('roles create')}`,
    });
    expect(await database.db.selectFrom('roles').select('name').where('name', '=', 'billing').executeTakeFirst()).toBeUndefined();
  });

  it('lists roles with their scopes', async () => {
    await createRole('helpdesk', ['tickets:read', 'tickets:write'], 'Help desk');
    const result = await cli(['roles', 'list', '--json']);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toContainEqual({ name: 'helpdesk', description: 'Help desk', scopes: ['tickets:read', 'tickets:write'] });

    const table = await cli(['roles', 'list']);
    expect(table.stdout.split('\n')[0]).toMatch(/^NAME +DESCRIPTION +SCOPES$/);
    expect(table.stdout).toMatch(/^helpdesk +Help desk +tickets:read,tickets:write$/m);
  });

  it('grants a role to a user and revokes it', async () => {
    await createRole('granted', ['tickets:read']);
    const paul = await fixtureUser('paul');
    const granted = await cli(['roles', 'grant', 'granted', 'Paul']);
    expect(granted).toEqual({ code: 0, stdout: 'role: granted\nusername: paul\ngranted: true\n', stderr: '' });
    expect(await userRoles(paul.id)).toEqual(['granted']);

    const listed = JSON.parse((await cli(['users', 'list', '--json'])).stdout) as Array<{ username: string; roles: string[] }>;
    expect(listed.find((row) => row.username === 'paul')?.roles).toEqual(['granted']);

    const revoked = await cli(['roles', 'revoke', 'granted', 'paul', '--json']);
    expect(revoked).toEqual({ code: 0, stdout: `${JSON.stringify({ role: 'granted', username: 'paul', revoked: true })}\n`, stderr: '' });
    expect(await userRoles(paul.id)).toEqual([]);
  });

  it('refuses an unknown role or user', async () => {
    await createRole('refusing', ['tickets:read']);
    const percy = await fixtureUser('percy');
    expect(await cli(['roles', 'grant', 'nosuchrole', 'percy'])).toEqual({ code: 1, stdout: '', stderr: 'error: no such role: nosuchrole\n' });
    expect(await cli(['roles', 'grant', 'refusing', 'nobody'])).toEqual({ code: 1, stdout: '', stderr: 'error: no such user: nobody\n' });
    expect(await cli(['roles', 'grant', 'refusing'])).toEqual({ code: 2, stdout: '', stderr: `error: missing <username>\n${hint('roles grant')}` });
    expect(await userRoles(percy.id)).toEqual([]);
  });

  it('adds and removes scopes of a role', async () => {
    await createRole('scoped', ['tickets:read', 'tickets:write']);
    const added = await cli(['roles', 'add-scope', 'scoped', 'refunds', 'tickets:read']);
    expect(added).toEqual({ code: 0, stdout: 'role: scoped\nscopes: refunds tickets:read tickets:write\n', stderr: '' });
    expect(await roleScopes('scoped')).toEqual(['refunds', 'tickets:read', 'tickets:write']);

    const removed = await cli(['roles', 'remove-scope', 'scoped', 'tickets:write', '--json']);
    expect(removed).toEqual({ code: 0, stdout: `${JSON.stringify({ role: 'scoped', scopes: ['refunds', 'tickets:read'] })}\n`, stderr: '' });
    expect(await roleScopes('scoped')).toEqual(['refunds', 'tickets:read']);

    expect(await cli(['roles', 'add-scope', 'scoped'])).toEqual({ code: 2, stdout: '', stderr: `error: name at least one scope\n${hint('roles add-scope')}` });
    expect(await cli(['roles', 'add-scope', 'nosuchrole', 'x'])).toEqual({ code: 1, stdout: '', stderr: 'error: no such role: nosuchrole\n' });
  });

  it('gives a user the role at creation with users create --role', async () => {
    await createRole('onboarding', ['tickets:read']);
    const quinn = await createUser('quinn', ['--role', 'onboarding']);
    expect(await userRoles(quinn.id)).toEqual(['onboarding']);
  });

  it('deletes a role, and with it its scopes and assignments', async () => {
    await createRole('retired', ['tickets:read', 'tickets:write']);
    const quincy = await fixtureUser('quincy');
    expect((await cli(['roles', 'grant', 'retired', 'quincy'])).code).toBe(0);
    expect(await userRoles(quincy.id)).toEqual(['retired']);

    const result = await cli(['roles', 'delete', 'retired']);
    expect(result).toEqual({ code: 0, stdout: 'role: retired\ndeleted: true\n', stderr: '' });
    expect(await database.db.selectFrom('roles').select('name').where('name', '=', 'retired').executeTakeFirst()).toBeUndefined();
    expect(await roleScopes('retired')).toEqual([]);
    expect(await userRoles(quincy.id)).toEqual([]);
    expect(await requireUser('quincy')).toMatchObject({ id: quincy.id });

    expect(await cli(['roles', 'delete', 'retired'])).toEqual({ code: 1, stdout: '', stderr: 'error: no such role: retired\n' });
  });
});

describe('tessera clients create', () => {
  it('creates a confidential client whose generated secret is stored only as a SHA-256 hash and works at /token', async () => {
    const rita = await createUser('rita', ['--scope', 'profile', '--scope', 'orders:read']);
    const result = await cli(['clients', 'create', '--id', 'gateway', '--name', 'Edge gateway', '--scope', 'profile', '--scope', 'orders:read', '--json']);

    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    const printed = JSON.parse(result.stdout) as Record<string, unknown>;
    const secret = printed['client_secret'] as string;
    expect(printed).toEqual({
      client_id: 'gateway',
      type: 'confidential',
      grant_types: ['password', 'refresh_token'],
      scopes: ['profile', 'orders:read'],
      client_secret: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
    });
    expect(occurrences(result.stdout, secret)).toBe(1);

    const row = await database.db.selectFrom('clients').selectAll().where('id', '=', 'gateway').executeTakeFirstOrThrow();
    expect(row).toMatchObject({
      name: 'Edge gateway',
      type: 'confidential',
      secret_hash: sha256(secret),
      grant_types: ['password', 'refresh_token'],
      allowed_scopes: ['profile', 'orders:read'],
      default_scopes: ['profile', 'orders:read'],
      audience: [],
    });
    const stored = JSON.stringify(await database.db.selectFrom('clients').selectAll().execute());
    expect(stored).not.toContain(secret);

    const res = await token()
      .set('Authorization', basic('gateway', secret))
      .send({ grant_type: 'password', username: 'rita', password: rita.password, scope: 'orders:read' });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ token_type: 'Bearer', expires_in: 900, scope: 'orders:read' });

    const wrong = await token()
      .set('Authorization', basic('gateway', `${secret.slice(0, -1)}x`))
      .send({ grant_type: 'password', username: 'rita', password: rita.password });
    expect(wrong.status).toBe(401);
    expect(wrong.headers['www-authenticate']).toBe('Basic realm="tessera", charset="UTF-8"');
    expect(wrong.body).toEqual({ error: 'invalid_client', error_description: 'client authentication failed' });
  });

  it('generates a URL-safe id when none is given', async () => {
    const result = await cli(['clients', 'create']);
    expect(result.code).toBe(0);
    const printed = parseRecord(result.stdout);
    expect(Object.keys(printed)).toEqual(['client_id', 'type', 'grant_types', 'scopes', 'client_secret']);
    expect(printed['client_id']).toMatch(/^[A-Za-z0-9_-]{16}$/);
    expect(printed).toMatchObject({ type: 'confidential', grant_types: 'password refresh_token', scopes: '' });
    const row = await database.db.selectFrom('clients').selectAll().where('id', '=', printed['client_id']!).executeTakeFirstOrThrow();
    expect(row.secret_hash).toBe(sha256(printed['client_secret']!));
  });

  it('creates a public client with no secret', async () => {
    const result = await cli(['clients', 'create', '--id', 'spa', '--public', '--grant', 'password', '--grant', 'refresh_token', '--scope', 'profile']);
    expect(result).toEqual({ code: 0, stdout: 'client_id: spa\ntype: public\ngrant_types: password refresh_token\nscopes: profile\n', stderr: '' });
    const row = await database.db.selectFrom('clients').selectAll().where('id', '=', 'spa').executeTakeFirstOrThrow();
    expect(row).toMatchObject({ type: 'public', secret_hash: null, grant_types: ['password', 'refresh_token'] });
  });

  it('registers a browser client with --redirect-uri and --post-logout-redirect-uri (repeatable), and update replaces them', async () => {
    const result = await cli([
      'clients', 'create', '--id', 'native-app', '--public', '--grant', 'authorization_code', '--grant', 'refresh_token',
      '--redirect-uri', 'com.example.app:/callback', '--redirect-uri', 'http://127.0.0.1:8400/cb',
      '--post-logout-redirect-uri', 'com.example.app:/signed-out', '--json',
    ]);
    expect(result.stderr).toBe('');
    expect(JSON.parse(result.stdout)).toEqual({
      client_id: 'native-app',
      type: 'public',
      grant_types: ['authorization_code', 'refresh_token'],
      scopes: [],
      redirect_uris: ['com.example.app:/callback', 'http://127.0.0.1:8400/cb'],
      post_logout_redirect_uris: ['com.example.app:/signed-out'],
    });
    const updated = await cli(['clients', 'update', 'native-app', '--redirect-uri', 'com.example.app:/new', '--json']);
    expect(updated.stderr).toBe('');
    expect(JSON.parse(updated.stdout)).toEqual({
      client_id: 'native-app',
      rate_limit: 'off',
      redirect_uris: ['com.example.app:/new'],
      post_logout_redirect_uris: ['com.example.app:/signed-out'],
    });
    const refused = await cli(['clients', 'create', '--id', 'web-x', '--grant', 'authorization_code', '--redirect-uri', 'http://app.example.com/cb']);
    expect(refused).toEqual({
      code: 2,
      stdout: '',
      stderr: `error: an http redirect URI must be on a loopback host (127.0.0.1, [::1], localhost); use https: http://app.example.com/cb\n${hint('clients create')}`,
    });
  });

  it('takes --grant and --default-scope', async () => {
    const result = await cli([
      'clients', 'create', '--id', 'reporting', '--grant', 'client_credentials',
      '--scope', 'orders:read', '--scope', 'orders:write', '--default-scope', 'orders:read', '--audience', 'https://orders.example',
    ]);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    const row = await database.db.selectFrom('clients').selectAll().where('id', '=', 'reporting').executeTakeFirstOrThrow();
    expect(row).toMatchObject({
      grant_types: ['client_credentials'],
      allowed_scopes: ['orders:read', 'orders:write'],
      default_scopes: ['orders:read'],
      audience: ['https://orders.example'],
    });
  });

  it.each([
    [['--grant', 'implicit'], 'unknown grant type: implicit (known: password, refresh_token, client_credentials, authorization_code)'],
    [['--public', '--grant', 'client_credentials'], 'a public client cannot use client_credentials: it has no secret'],
    // DESIGN.md: the password grant is for confidential clients unless the operator says otherwise.
    [['--public'], 'a public client needs its grant types named explicitly (authorization_code, refresh_token, password)'],
    [['--scope', 'bad"scope'], 'not a valid scope: bad"scope'],
    [['--scope', 'profile', '--default-scope', 'orders:read'], 'default scopes must be allowed scopes too: orders:read'],
    [['--default-scope', 'profile'], 'default scopes must be allowed scopes too: profile'],
    [['--id', 'has space'], 'a client id has 1 to 64 letters, digits or . _ ~ - and is not shaped like a uuid'],
    [['--id', 'x'.repeat(65)], 'a client id has 1 to 64 letters, digits or . _ ~ - and is not shaped like a uuid'],
  ])('refuses %j as a usage error and creates nothing', async (extra, message) => {
    const before = await database.db.selectFrom('clients').select('id').execute();
    expect(await cli(['clients', 'create', '--id', 'badapp', ...extra])).toEqual({ code: 2, stdout: '', stderr: `error: ${message}\n${hint('clients create')}` });
    expect(await database.db.selectFrom('clients').select('id').execute()).toEqual(before);
  });

  it('refuses a duplicate id', async () => {
    await createClient('twice');
    const before = await database.db.selectFrom('clients').select('secret_hash').where('id', '=', 'twice').executeTakeFirstOrThrow();
    expect(await cli(['clients', 'create', '--id', 'twice'])).toEqual({ code: 1, stdout: '', stderr: 'error: a client with id twice already exists\n' });
    expect(await database.db.selectFrom('clients').select('secret_hash').where('id', '=', 'twice').executeTakeFirstOrThrow()).toEqual(before);
  });

  it('takes a strong secret from stdin and never prints it', async () => {
    const secret = randomBytes(30).toString('base64url'); // 40 characters
    const result = await cli(['clients', 'create', '--id', 'legacy', '--scope', 'profile', '--secret-stdin'], { stdin: `${secret}\n` });
    expect(result).toEqual({ code: 0, stdout: 'client_id: legacy\ntype: confidential\ngrant_types: password refresh_token\nscopes: profile\n', stderr: '' });
    const row = await database.db.selectFrom('clients').selectAll().where('id', '=', 'legacy').executeTakeFirstOrThrow();
    expect(row.secret_hash).toBe(sha256(secret));

    const sam = await createUser('sam', ['--scope', 'profile']);
    const res = await token().set('Authorization', basic('legacy', secret)).send({ grant_type: 'password', username: 'sam', password: sam.password });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ token_type: 'Bearer', scope: 'profile' });
  });

  it('refuses a short secret from stdin without echoing it', async () => {
    const secret = 'S'.repeat(31);
    const result = await cli(['clients', 'create', '--id', 'weak', '--secret-stdin'], { stdin: `${secret}\n` });
    expect(result).toEqual({ code: 1, stdout: '', stderr: 'error: a client secret must have at least 32 characters\n' });
    expect(await database.db.selectFrom('clients').select('id').where('id', '=', 'weak').executeTakeFirst()).toBeUndefined();
  });

  it('refuses --secret-stdin for a public client', async () => {
    const result = await cli(['clients', 'create', '--id', 'pubsecret', '--public', '--grant', 'refresh_token', '--secret-stdin'], { stdin: `${'s'.repeat(40)}\n` });
    expect(result).toEqual({ code: 2, stdout: '', stderr: `error: a public client has no secret\n${hint('clients create')}` });
  });
});

describe('tessera clients list|rotate-secret|delete', () => {
  it('lists clients without secrets or hashes', async () => {
    await createClient('listed', ['--name', 'Edge gateway', '--scope', 'profile', '--scope', 'orders:read']);
    await createClient('listed-spa', ['--public', '--grant', 'password', '--grant', 'refresh_token', '--scope', 'profile']);
    const result = await cli(['clients', 'list', '--json']);
    expect(result.code).toBe(0);
    const rows = JSON.parse(result.stdout) as Array<{ id: string }>;
    expect(rows.map((row) => row.id)).toEqual([...rows.map((row) => row.id)].sort());
    expect(rows).toContainEqual({
      id: 'listed',
      name: 'Edge gateway',
      type: 'confidential',
      grant_types: ['password', 'refresh_token'],
      scopes: ['profile', 'orders:read'],
      default_scopes: ['profile', 'orders:read'],
      audience: [],
      rate_limit: null,
      roles_claim: false,
      token_claims: {},
      redirect_uris: [],
      post_logout_redirect_uris: [],
    });
    expect(rows).toContainEqual(expect.objectContaining({ id: 'listed-spa', type: 'public' }));
    expect(result.stdout).not.toContain('sha256');
    expect(result.stdout).not.toContain('secret');

    const table = await cli(['clients', 'list']);
    expect(table.stdout.split('\n')[0]).toMatch(/^ID +NAME +TYPE +GRANT_TYPES +SCOPES +DEFAULT_SCOPES +AUDIENCE +RATE_LIMIT +ROLES_CLAIM +TOKEN_CLAIMS +REDIRECT_URIS +POST_LOGOUT_REDIRECT_URIS$/);
    expect(table.stdout).toMatch(/^listed-spa +listed-spa +public +password,refresh_token +profile +profile +- +- +false +- +- +-$/m);
  });

  it('rotates a secret: the new one works at /token and the old one no longer does', async () => {
    const rosa = await fixtureUser('rosa', ['profile', 'orders:read']);
    const oldSecret = await createClient('rotated', ['--scope', 'profile', '--scope', 'orders:read']);
    expect(oldSecret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const login = (secret: string) => token().set('Authorization', basic('rotated', secret)).send({ grant_type: 'password', username: 'rosa', password: rosa.password });
    expect((await login(oldSecret!)).status).toBe(200);
    const before = await database.db.selectFrom('clients').select('secret_hash').where('id', '=', 'rotated').executeTakeFirstOrThrow();

    const result = await cli(['clients', 'rotate-secret', 'rotated']);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    const printed = parseRecord(result.stdout);
    expect(Object.keys(printed)).toEqual(['client_id', 'client_secret']);
    expect(printed['client_id']).toBe('rotated');
    const secret = printed['client_secret']!;
    expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const after = await database.db.selectFrom('clients').select('secret_hash').where('id', '=', 'rotated').executeTakeFirstOrThrow();
    expect(after.secret_hash).toBe(sha256(secret));
    expect(after.secret_hash).not.toBe(before.secret_hash);

    const ok = await login(secret);
    expect(ok.status).toBe(200);
    expect(ok.body.scope).toBe('orders:read profile');

    const stale = await login(oldSecret!);
    expect(stale.status).toBe(401);
    expect(stale.body).toEqual({ error: 'invalid_client', error_description: 'client authentication failed' });
  });

  it('rotates to a secret from stdin and does not print it', async () => {
    await createClient('restocked');
    const secret = randomBytes(32).toString('hex');
    const result = await cli(['clients', 'rotate-secret', 'restocked', '--secret-stdin'], { stdin: `${secret}\n` });
    expect(result).toEqual({ code: 0, stdout: 'client_id: restocked\nrotated: true\n', stderr: '' });
    const row = await database.db.selectFrom('clients').select('secret_hash').where('id', '=', 'restocked').executeTakeFirstOrThrow();
    expect(row.secret_hash).toBe(sha256(secret));

    const short = await cli(['clients', 'rotate-secret', 'restocked', '--secret-stdin'], { stdin: 'too-short\n' });
    expect(short).toEqual({ code: 1, stdout: '', stderr: 'error: a client secret must have at least 32 characters\n' });
    expect(await database.db.selectFrom('clients').select('secret_hash').where('id', '=', 'restocked').executeTakeFirstOrThrow()).toEqual(row);
  });

  it('refuses to rotate a public or unknown client', async () => {
    await createClient('unrotatable', ['--public', '--grant', 'refresh_token']);
    expect(await cli(['clients', 'rotate-secret', 'unrotatable'])).toEqual({ code: 1, stdout: '', stderr: 'error: client unrotatable is public and has no secret\n' });
    expect(await database.db.selectFrom('clients').select('secret_hash').where('id', '=', 'unrotatable').executeTakeFirstOrThrow()).toEqual({ secret_hash: null });
    expect(await cli(['clients', 'rotate-secret', 'nosuch'])).toEqual({ code: 1, stdout: '', stderr: 'error: no such client: nosuch\n' });
    expect(await cli(['clients', 'rotate-secret'])).toEqual({ code: 2, stdout: '', stderr: `error: missing <client_id>\n${hint('clients rotate-secret')}` });
  });

  it('deletes a client, after which its secret is refused', async () => {
    const created = parseRecord((await cli(['clients', 'create', '--id', 'doomed'])).stdout);
    const secret = created['client_secret']!;
    const attempt = () => token().set('Authorization', basic('doomed', secret)).send({ grant_type: 'password', username: 'nobody', password: 'x' });
    // Before: the client authenticates, and only the login fails.
    const before = await attempt();
    expect({ status: before.status, body: before.body }).toEqual({ status: 400, body: { error: 'invalid_grant', error_description: 'the username or password is incorrect' } });
    const result = await cli(['clients', 'delete', 'doomed']);
    expect(result).toEqual({ code: 0, stdout: 'client_id: doomed\ndeleted: true\n', stderr: '' });
    expect(await database.db.selectFrom('clients').select('id').where('id', '=', 'doomed').executeTakeFirst()).toBeUndefined();

    // The service forgets the client when PostgreSQL's notification of the change arrives
    // (src/auth/client-cache.ts): within milliseconds, later on a loaded machine. Polled with a
    // request that authenticates and then fails without a login, so no login limit counts it.
    const refresh = () => token().set('Authorization', basic('doomed', secret)).send({ grant_type: 'refresh_token', refresh_token: 'not-a-token' });
    await expect.poll(async () => (await refresh()).status, { interval: 50, timeout: 5000 }).toBe(401);
    const res = await attempt();
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: 'invalid_client', error_description: 'client authentication failed' });

    expect(await cli(['clients', 'delete', 'doomed'])).toEqual({ code: 1, stdout: '', stderr: 'error: no such client: doomed\n' });
  });
});

describe('tessera users logout|set-password|disable end sessions', () => {
  it("ends the user's refresh-token families, so their refresh tokens stop working", async () => {
    const tina = await createUser('tina', ['--scope', 'profile']);
    const client = JSON.parse((await cli(['clients', 'create', '--id', 'sessions', '--scope', 'profile', '--json'])).stdout) as { client_secret: string };
    const auth = basic('sessions', client.client_secret);
    let password = tina.password;
    const login = async (): Promise<string> => {
      const res = await token().set('Authorization', auth).send({ grant_type: 'password', username: 'tina', password });
      expect(res.status).toBe(200);
      expect(res.body.refresh_token).toEqual(expect.any(String));
      return res.body.refresh_token as string;
    };
    const expectRefused = async (refreshToken: string) => {
      const res = await token().set('Authorization', auth).send({ grant_type: 'refresh_token', refresh_token: refreshToken });
      expect(res.status).toBe(400);
      expect(res.body).toEqual({ error: 'invalid_grant', error_description: 'the refresh token is invalid, expired or revoked' });
    };

    const first = await login();
    await login();
    expect(await cli(['users', 'logout', 'tina'])).toEqual({ code: 0, stdout: `id: ${tina.id}\nusername: tina\nsessions_ended: 2\n`, stderr: '' });
    await expectRefused(first);
    expect(await cli(['users', 'logout', 'tina'])).toEqual({ code: 0, stdout: `id: ${tina.id}\nusername: tina\nsessions_ended: 0\n`, stderr: '' });

    const second = await login();
    password = strongPassword();
    expect(await cli(['users', 'set-password', 'tina', '--password-stdin'], { stdin: password })).toEqual({
      code: 0,
      stdout: `id: ${tina.id}\nusername: tina\nsessions_ended: 1\n`,
      stderr: '',
    });
    await expectRefused(second);

    const third = await login();
    expect(await cli(['users', 'disable', 'tina'])).toEqual({
      code: 0,
      stdout: `id: ${tina.id}\nusername: tina\ndisabled: true\nsessions_ended: 1\n`,
      stderr: '',
    });
    await expectRefused(third);
    // A disabled user cannot log in either, and gets the same answer as a wrong password.
    const res = await token().set('Authorization', auth).send({ grant_type: 'password', username: 'tina', password });
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: 'invalid_grant', error_description: 'the username or password is incorrect' });
  });
});

describe('stray arguments', () => {
  const SECRET = 'Zq8-never-echo-this-7Kp';
  /** A user and a client that the commands below name, and must leave as they were. */
  beforeAll(async () => {
    await fixtureUser('stray');
    await createClient('strayapp');
  });

  it.each([
    [['users', 'create', 'jack', SECRET]],
    [['users', 'set-password', 'stray', SECRET]],
    [['clients', 'rotate-secret', 'strayapp', SECRET]],
  ])('%j: a stray argument that may be a secret is a usage error, not silently ignored', async (argv) => {
    const stray = await requireUser('stray');
    const users = await database.db.selectFrom('users').select('id').orderBy('id').execute();
    const client = await database.db.selectFrom('clients').select('secret_hash').where('id', '=', 'strayapp').executeTakeFirstOrThrow();
    const result = await cli(argv);

    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^error: .+\n/);
    expect(result.stderr.endsWith(hint(argv.slice(0, 2).join(' ')))).toBe(true);
    expect(result.stderr).not.toContain(SECRET);
    expect(await database.db.selectFrom('users').select('id').orderBy('id').execute()).toEqual(users);
    expect((await requireUser('stray')).password_hash).toBe(stray.password_hash);
    expect(await database.db.selectFrom('clients').select('secret_hash').where('id', '=', 'strayapp').executeTakeFirstOrThrow()).toEqual(client);
  });
});

describe('tessera command line', () => {
  it.each([
    [['frobnicate'], 'frobnicate', 'tessera --help'],
    [['users', 'frobnicate'], 'users frobnicate', 'tessera users --help'],
    [['clients', 'frobnicate', '--password', 'Zq8-never-echo-this-7Kp'], 'clients frobnicate', 'tessera clients --help'],
  ])('%j is an unknown command: exit 2 with a pointer to the help', async (argv, shown, help) => {
    // No configuration at all: a typo is reported as a typo, not as a configuration problem.
    const result = await cli(argv, { env: {} });
    expect(result).toEqual({ code: 2, stdout: '', stderr: `error: unknown command "${shown}"\n(see ${help})\n` });
  });

  it('prints the usage on stdout for --help and on stderr without a command', async () => {
    const help = await cli(['--help'], { env: {} });
    expect(help.code).toBe(0);
    expect(help.stderr).toBe('');
    expect(help.stdout.startsWith('Usage: tessera <command> [options]\n')).toBe(true);

    expect(await cli([], { env: {} })).toEqual({ code: 2, stdout: '', stderr: help.stdout });
  });

  it('reports every configuration problem at once with exit 78', async () => {
    const result = await cli(['users', 'list'], { env: { DATABASE_URL: database.url, PORT: '99999', TRUST_PROXY: 'true', LOG_LEVEL: 'chatty' } });
    expect(result).toEqual({
      code: 78,
      stdout: '',
      stderr: [
        'Invalid configuration:',
        '  - PORT must be a whole number from 0 to 65535 (got "99999")',
        '  - KEY_ENCRYPTION_KEYS is required when DATABASE_URL is set (generate one with: openssl rand -base64 32)',
        '  - LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent (got "chatty")',
        '  - TRUST_PROXY=true is refused: it trusts any X-Forwarded-For; give a hop count or a CIDR list',
        '',
      ].join('\n'),
    });
  });
});

describe('tessera migrate', () => {
  let fresh: TestDatabase;
  beforeAll(async () => {
    fresh = await createTestDatabase({ migrate: false });
  });
  afterAll(async () => {
    await fresh?.drop();
  });

  it('applies the migrations to a fresh database, then has nothing to do', async () => {
    const migrations = (await readdir(new URL('../migrations/', import.meta.url)))
      .filter((file) => file.endsWith('.ts'))
      .map((file) => file.slice(0, -'.ts'.length))
      .sort();
    expect(migrations[0]).toBe('20261122000000_initial_schema');
    const freshEnv = { ...env, DATABASE_URL: fresh.url };
    const first = await cli(['migrate'], { env: freshEnv });
    expect(first).toEqual({ code: 0, stdout: `applied: ${migrations.join(', ')}\n`, stderr: '' });
    expect(await fresh.db.selectFrom('users').select('id').execute()).toEqual([]);

    expect(await cli(['migrate'], { env: freshEnv })).toEqual({ code: 0, stdout: 'no pending migrations\n', stderr: '' });
    expect(await cli(['users', 'list', '--json'], { env: freshEnv })).toEqual({ code: 0, stdout: '[]\n', stderr: '' });
  });
});
