import { audit } from '../audit.js';
import { createAccount, setAccountDisabled, setAccountPassword } from '../auth/accounts.js';
import { generatePassword } from '../auth/passwords.js';
import { checkScopeList } from '../auth/scopes.js';
import { normaliseUsername } from '../auth/usernames.js';
import type { User } from '../db/schema.js';
import {
  deleteUser,
  findDirectUserScopes,
  findUserByUsername,
  findUserRoles,
  grantUserScopes,
  listUsers,
  revokeUserScopes,
} from '../db/users.js';
import { revokeUserFamilies } from '../db/refresh-families.js';
import { type Command, type CommandContext, command, CommandError, parse, positional, print, printTable, readSecretFromStdin, UsageError } from './command.js';

// The account rules (src/auth/accounts.ts) are the admin API's too; this file only reads arguments and prints.

const MAX_LIST_LIMIT = 1000;

async function requireUser(ctx: CommandContext, username: string): Promise<User> {
  const normalised = normaliseUsername(username);
  const user = normalised === undefined ? undefined : await findUserByUsername(ctx.db, normalised);
  if (user === undefined) throw new CommandError(`no such user: ${username}`);
  return user;
}

function scopesFrom(values: readonly string[]): string[] {
  const problem = checkScopeList(values);
  if (problem !== undefined) throw new UsageError(problem);
  return [...new Set(values)];
}

const now = (ctx: CommandContext) => new Date(ctx.clock.now());

const SUPPLIED_OR_GENERATED = 'The password is read from standard input with --password-stdin; otherwise one is generated and printed once.';

const create = command(
  {
    usage: '<username> [--password-stdin] [--scope S]... [--role R]...',
    summary: 'create a user with a generated or supplied password',
    details: SUPPLIED_OR_GENERATED,
    options: {
      '--password-stdin': 'read the password from standard input',
      '--scope S': 'grant scope S to the user directly (repeatable)',
      '--role R': 'give the user role R (repeatable)',
    },
  },
  async (args, ctx) => {
    const { values, positionals } = parse(args, {
      'password-stdin': { type: 'boolean' },
      scope: { type: 'string', multiple: true },
      role: { type: 'string', multiple: true },
    }, 1);
    const generated = values['password-stdin'] ? undefined : generatePassword();
    const password = generated ?? readSecretFromStdin(ctx, '--password-stdin');
    const scopes = [...new Set(values.scope ?? [])];
    const roles = [...new Set(values.role ?? [])];
    const user = await createAccount(ctx.db, ctx.passwords, { username: positional(positionals, 0, 'username'), password, scopes, roles }, now(ctx));
    audit(ctx.log, 'user_created', { user_id: user.id, actor: 'cli', scopes, roles });
    print(ctx, values.json, { id: user.id, username: user.username, ...(generated ? { password: generated } : {}) });
  },
);

const list = command(
  {
    usage: '[--limit N] [--after USERNAME]',
    summary: 'list users with their roles and direct scopes',
    details: 'In username order, a page at a time.',
    options: {
      '--limit N': `at most N users, 1 to ${MAX_LIST_LIMIT} (default 100)`,
      '--after USERNAME': 'start after this username (the last one of the previous page)',
    },
  },
  async (args, ctx) => {
    const { values } = parse(args, { limit: { type: 'string' }, after: { type: 'string' } });
    const limit = Number(values.limit ?? 100);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) throw new UsageError(`--limit must be 1 to ${MAX_LIST_LIMIT}`);
    const users = await listUsers(ctx.db, { limit, after: values.after });
    const rows = await Promise.all(
      users.map(async (user) => ({
        id: user.id,
        username: user.username,
        disabled: user.disabled,
        roles: await findUserRoles(ctx.db, user.id),
        scopes: await findDirectUserScopes(ctx.db, user.id),
        created_at: user.created_at,
      })),
    );
    printTable(ctx, values.json, rows);
  },
);

const setDisabled = (disabled: boolean): Command =>
  command(
    { usage: '<username>', summary: disabled ? "disable a user and end the user's sessions" : 'enable a disabled user again' },
    async (args, ctx) => {
      const { values, positionals } = parse(args, {}, 1);
      const user = await requireUser(ctx, positional(positionals, 0, 'username'));
      const sessionsEnded = await setAccountDisabled(ctx.db, user.id, disabled, now(ctx));
      audit(ctx.log, 'user_updated', { user_id: user.id, actor: 'cli', disabled, sessions_ended: sessionsEnded });
      print(ctx, values.json, { id: user.id, username: user.username, disabled, ...(disabled ? { sessions_ended: sessionsEnded } : {}) });
    },
  );

const remove = command({ usage: '<username>', summary: 'delete a user' }, async (args, ctx) => {
  const { values, positionals } = parse(args, {}, 1);
  const user = await requireUser(ctx, positional(positionals, 0, 'username'));
  await deleteUser(ctx.db, user.id);
  audit(ctx.log, 'user_deleted', { user_id: user.id, actor: 'cli' });
  print(ctx, values.json, { id: user.id, username: user.username, deleted: true });
});

const setPassword = command(
  {
    usage: '<username> [--password-stdin]',
    summary: "set a user's password and end the user's sessions",
    details: SUPPLIED_OR_GENERATED,
    options: { '--password-stdin': 'read the new password from standard input' },
  },
  async (args, ctx) => {
    const { values, positionals } = parse(args, { 'password-stdin': { type: 'boolean' } }, 1);
    const user = await requireUser(ctx, positional(positionals, 0, 'username'));
    const generated = values['password-stdin'] ? undefined : generatePassword();
    const sessionsEnded = await setAccountPassword(ctx.db, ctx.passwords, user, generated ?? readSecretFromStdin(ctx, '--password-stdin'), now(ctx));
    audit(ctx.log, 'user_updated', { user_id: user.id, actor: 'cli', password_changed: true, sessions_ended: sessionsEnded });
    print(ctx, values.json, { id: user.id, username: user.username, sessions_ended: sessionsEnded, ...(generated ? { password: generated } : {}) });
  },
);

/** Logout everywhere: every session of the user ends; its access tokens stop working at Tessera at once, elsewhere within ACCESS_TOKEN_TTL. */
const logout = command(
  {
    usage: '<username>',
    summary: 'end every session of the user',
    details: 'Its access tokens stop working at once at Tessera itself; services that verify them offline accept them until they expire (ACCESS_TOKEN_TTL).',
  },
  async (args, ctx) => {
    const { values, positionals } = parse(args, {}, 1);
    const user = await requireUser(ctx, positional(positionals, 0, 'username'));
    const sessionsEnded = await revokeUserFamilies(ctx.db, user.id, 'logout', now(ctx));
    audit(ctx.log, 'user_logged_out', { user_id: user.id, actor: 'cli', sessions_ended: sessionsEnded });
    print(ctx, values.json, { id: user.id, username: user.username, sessions_ended: sessionsEnded });
  },
);

const changeScopes = (grant: boolean): Command =>
  command(
    { usage: '<username> <scope>...', summary: grant ? 'grant scopes to a user directly' : 'revoke scopes granted to a user directly' },
    async (args, ctx) => {
      const { values, positionals } = parse(args, {}, Infinity);
      const user = await requireUser(ctx, positional(positionals, 0, 'username'));
      const scopes = scopesFrom(positionals.slice(1));
      if (scopes.length === 0) throw new UsageError('name at least one scope');
      await (grant ? grantUserScopes : revokeUserScopes)(ctx.db, user.id, scopes);
      audit(ctx.log, 'user_updated', { user_id: user.id, actor: 'cli', [grant ? 'scopes_granted' : 'scopes_revoked']: scopes });
      print(ctx, values.json, { id: user.id, username: user.username, scopes: await findDirectUserScopes(ctx.db, user.id) });
    },
  );

export const userCommands: Record<string, Command> = {
  create,
  list,
  disable: setDisabled(true),
  enable: setDisabled(false),
  delete: remove,
  'set-password': setPassword,
  logout,
  grant: changeScopes(true),
  revoke: changeScopes(false),
};
